package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/modeld-dev/modeld/backend"
	modeldv1 "github.com/modeld-dev/modeld/proto/modeld/v1"
)

func TestFlagsFromEnv(t *testing.T) {
	t.Setenv("MODELD_MAX_RUNNING", "7")
	t.Setenv("MODELD_ADDR", "127.0.0.1:1")
	c, err := parseFlags([]string{"--addr", "127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	if c.engine.MaxRunning != 7 || c.addr != "127.0.0.1:2" {
		t.Errorf("max running %d, addr %s; want 7 from the environment and the flag's address", c.engine.MaxRunning, c.addr)
	}
	t.Setenv("MODELD_MAX_N", "many")
	if _, err := parseFlags(nil); err == nil || !strings.Contains(err.Error(), "MODELD_MAX_N") {
		t.Errorf("bad env value: %v", err)
	}
}

// records is a slog handler that keeps every record and signals the one that says the server
// is serving.
type records struct {
	mu      sync.Mutex
	lines   []string
	serving chan string
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Message)
	addr := ""
	rec.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.Key + "=" + a.Value.String())
		if a.Key == "addr" {
			addr = a.Value.String()
		}
		return true
	})
	r.mu.Lock()
	r.lines = append(r.lines, b.String())
	r.mu.Unlock()
	if rec.Message == "modeld serving" {
		r.serving <- addr
	}
	return nil
}

// TestServesBuiltin runs modeld with no flags but its directories: --backend auto serves the
// built-in model, on a machine without CUDA on the CPU, logging why.
func TestServesBuiltin(t *testing.T) {
	dir := t.TempDir()
	c, err := parseFlags([]string{"--addr", "127.0.0.1:0", "--models-dir", dir + "/models", "--data-dir", dir + "/data"})
	if err != nil {
		t.Fatal(err)
	}
	rec := &records{serving: make(chan string, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- run(ctx, c, slog.New(rec)) }()
	var addr string
	select {
	case addr = <-rec.serving:
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := modeldv1.NewGenerateServiceClient(conn).Generate(t.Context(), &modeldv1.GenerateRequest{Prompt: "package main\n", MaxNewTokens: 8})
	if err != nil {
		t.Fatal(err)
	}
	tokens := 0
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		tokens += len(resp.GetTokenIds())
	}
	if tokens != 8 {
		t.Errorf("%d tokens from the built-in model, want 8", tokens)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run after cancel: %v", err)
	}
	rec.mu.Lock()
	log := strings.Join(rec.lines, "\n")
	rec.mu.Unlock()
	wants := []string{"built-in model installed", "draining"}
	if b, _, err := backend.Open("cuda"); err != nil {
		wants = append(wants, "backend selected backend=cpu", "backend skipped reason=backend: cuda: ")
	} else {
		b.Close()
		wants = append(wants, "backend selected backend=cuda") // a machine with a GPU
	}
	for _, want := range wants {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}
