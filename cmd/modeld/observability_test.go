package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	modeldv1 "github.com/modeld-dev/modeld/proto/modeld/v1"
)

// noTracing unsets the variables that turn tracing on, for the length of the test.
func noTracing(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"} {
		t.Setenv(k, "")
	}
}

// addrLog is a slog handler that passes on the addr of the "metrics serving" and "modeld
// serving" records.
type addrLog struct{ metrics, grpc chan string }

func (a addrLog) Enabled(context.Context, slog.Level) bool { return true }
func (a addrLog) WithAttrs([]slog.Attr) slog.Handler       { return a }
func (a addrLog) WithGroup(string) slog.Handler            { return a }
func (a addrLog) Handle(_ context.Context, rec slog.Record) error {
	rec.Attrs(func(at slog.Attr) bool {
		if at.Key == "addr" {
			switch rec.Message {
			case "metrics serving":
				a.metrics <- at.Value.String()
			case "modeld serving":
				a.grpc <- at.Value.String()
			}
		}
		return true
	})
	return nil
}

// TestMetricsEndpoint runs modeld with --metrics-addr, generates from the built-in model and
// scrapes /metrics: the serving, training, gRPC, Go and process metrics are there and count the
// call; the endpoint stops with the server.
func TestMetricsEndpoint(t *testing.T) {
	noTracing(t)
	dir := t.TempDir()
	c, err := parseFlags([]string{"--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--models-dir", dir + "/models", "--data-dir", dir + "/data"})
	if err != nil {
		t.Fatal(err)
	}
	log := addrLog{metrics: make(chan string, 1), grpc: make(chan string, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, c, slog.New(log)) }()
	var metricsAddr, addr string
	for metricsAddr == "" || addr == "" {
		select {
		case metricsAddr = <-log.metrics:
		case addr = <-log.grpc:
		case err := <-done:
			t.Fatalf("run: %v", err)
		}
	}

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := modeldv1.NewGenerateServiceClient(conn).Generate(t.Context(), &modeldv1.GenerateRequest{Prompt: "package main\n", MaxNewTokens: 8, IgnoreEos: true})
	if err != nil {
		t.Fatal(err)
	}
	tokens, prompt := 0, uint32(0)
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		tokens += len(resp.GetTokenIds())
		prompt = max(prompt, resp.GetUsage().GetPromptTokens())
	}

	url := "http://" + metricsAddr + "/metrics"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", url, resp.Status, err)
	}
	text := string(body)
	for _, want := range []string{
		`modeld_generation_tokens_total{model_name="gpt2-go"} ` + strconv.Itoa(tokens) + "\n",
		`modeld_prompt_tokens_total{model_name="gpt2-go"} ` + strconv.Itoa(int(prompt)) + "\n",
		`modeld_time_to_first_token_seconds_count{model_name="gpt2-go"} 1` + "\n",
		`modeld_request_success_total{finished_reason="length",model_name="gpt2-go"} 1` + "\n",
		`modeld_num_requests_running{model_name="gpt2-go"} 0` + "\n",
		`modeld_kv_cache_usage_perc{model_name="gpt2-go"} 0` + "\n",
		`modeld_train_jobs{state="running"} 0` + "\n",
		`grpc_server_handled_total{grpc_code="OK",grpc_method="Generate",grpc_service="modeld.v1.GenerateService",grpc_type="server_stream"} 1` + "\n",
		`grpc_server_handling_seconds_count{grpc_method="Generate",grpc_service="modeld.v1.GenerateService",grpc_type="server_stream"} 1` + "\n",
		"go_goroutines ",
		"process_start_time_seconds ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", text)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("run after cancel: %v", err)
	}
	if resp, err := http.Get(url); err == nil {
		resp.Body.Close()
		t.Errorf("GET %s after the server stopped: %s, want no server", url, resp.Status)
	}
}

// TestObservabilityOff checks that without --metrics-addr and OTEL_* variables nothing is
// installed: no observers, interceptors or stats handler.
func TestObservabilityOff(t *testing.T) {
	noTracing(t)
	o, err := startObservability(t.Context(), "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	if o.engineObserver("tiny") != nil || o.trainObserver() != nil || o.unaryInterceptors() != nil ||
		o.streamInterceptors() != nil || o.serverOptions() != nil {
		t.Errorf("observability off installs something: %+v", o)
	}
}
