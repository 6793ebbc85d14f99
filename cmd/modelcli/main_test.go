package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/backend/cpu"
	"github.com/modeld-dev/modeld/internal/engine"
	"github.com/modeld-dev/modeld/internal/oracletest"
	"github.com/modeld-dev/modeld/internal/registry"
	"github.com/modeld-dev/modeld/internal/server"
	modeldv1 "github.com/modeld-dev/modeld/proto/modeld/v1"
	"github.com/modeld-dev/modeld/tokenizer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const oracle = "../../testdata/gpt2-tiny"

// hubRepo is the repository the fake Hub of startServer serves: the oracle model's files.
const hubRepo = "test-org/tiny"

// startServer starts a real server on 127.0.0.1:0 serving the oracle model as "tiny" (the default
// model) and, without tokenizer files, as "ids"; its PullModel downloads from a fake Hub that
// serves the oracle model as hubRepo. It returns the server's address.
func startServer(t *testing.T) string {
	t.Helper()
	dir := oracletest.ModelsDir(t)
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		file, ok := strings.CutPrefix(r.URL.Path, "/"+hubRepo+"/resolve/main/")
		data, err := os.ReadFile(filepath.Join(oracle, "hf", file))
		if !ok || strings.Contains(file, "/") || err != nil {
			w.Header().Set("X-Error-Code", "EntryNotFound")
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, file, time.Time{}, bytes.NewReader(data))
	}))
	t.Cleanup(hub.Close)

	log := slog.New(slog.DiscardHandler)
	reg, err := registry.New(registry.Options{Dir: dir, Backend: func() (backend.Backend, error) { return cpu.New(), nil }, Engine: engine.Config{}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Options{Registry: reg, DefaultModel: "tiny", Log: log,
		Hub: registry.Hub{Endpoint: hub.URL, Client: hub.Client()}})
	// WaitForHandlers: Stop returns only when every handler has, so that none loads a model into
	// the registry after reg.Close (a cancelled bench request's handler may still be starting).
	g := srv.GRPCServer(grpc.WaitForHandlers(true))
	return serve(t, g, reg.Close)
}

// serve serves g on a loopback port until the test ends, then stops it, checks that Serve
// returned cleanly and runs closers in order (a job manager, then its registry); it returns the
// address.
func serve(t *testing.T, g *grpc.Server, closers ...func()) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- g.Serve(lis) }()
	t.Cleanup(func() {
		g.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		for _, c := range closers {
			c()
		}
	})
	return lis.Addr().String()
}

// cliRun runs modelcli against addr and returns its exit code, stdout and stderr.
func cliRun(t *testing.T, addr string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(t.Context(), append([]string{"--addr", addr}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// mustRun is cliRun that fails the test unless modelcli exits 0.
func mustRun(t *testing.T, addr string, args ...string) (stdout, stderr string) {
	t.Helper()
	code, stdout, stderr := cliRun(t, addr, args...)
	if code != 0 {
		t.Fatalf("modelcli %s: exit %d, stderr:\n%s", strings.Join(args, " "), code, stderr)
	}
	return stdout, stderr
}

// parseLines parses each line of out as protojson into a new M.
func parseLines[M proto.Message](t *testing.T, out string, newM func() M) []M {
	t.Helper()
	var ms []M
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		m := newM()
		if err := protojson.Unmarshal(sc.Bytes(), m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		ms = append(ms, m)
	}
	return ms
}

func newGenerateResponse() *modeldv1.GenerateResponse { return &modeldv1.GenerateResponse{} }

// sequences joins the token ids and text of each sequence of a json-mode generate run.
func sequences(resps []*modeldv1.GenerateResponse) (ids [][]int32, texts []string) {
	for _, r := range resps {
		i := int(r.GetIndex())
		for len(ids) <= i {
			ids, texts = append(ids, nil), append(texts, "")
		}
		ids[i] = append(ids[i], r.GetTokenIds()...)
		texts[i] += r.GetText()
	}
	return ids, texts
}

func TestGenerateGreedyMatchesOracle(t *testing.T) {
	var ref struct {
		Gen1 struct {
			Prompt    []int32 `json:"prompt"`
			NewTokens []int32 `json:"new_tokens"`
		} `json:"gen1"`
	}
	data, err := os.ReadFile(filepath.Join(oracle, "refs/greedy/greedy.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	addr := startServer(t)
	for _, model := range []string{"tiny", "ids"} {
		t.Run("model="+model, func(t *testing.T) {
			out, _ := mustRun(t, addr, "generate", "--model", model, "--prompt-ids", formatIDs(ref.Gen1.Prompt, ","),
				"--temperature", "0", "--ignore-eos", "--max-new-tokens", "20", "--output", "json")
			resps := parseLines(t, out, newGenerateResponse)
			ids, _ := sequences(resps)
			if len(ids) != 1 {
				t.Fatalf("got %d sequences, want 1", len(ids))
			}
			if diff := cmp.Diff(ref.Gen1.NewTokens, ids[0]); diff != "" {
				t.Errorf("greedy tokens (-want +got):\n%s", diff)
			}
			last := resps[len(resps)-1]
			if got := last.GetFinishReason(); got != modeldv1.FinishReason_FINISH_REASON_LENGTH {
				t.Errorf("last finish_reason = %v, want LENGTH", got)
			}
			if got := last.GetUsage().GetCompletionTokens(); got != 20 {
				t.Errorf("completion_tokens = %d, want 20", got)
			}
			// The proto field names, not the JSON camelCase ones.
			if !strings.Contains(out, `"token_ids"`) || !strings.Contains(out, `"finish_reason"`) {
				t.Errorf("json output lacks the proto field names:\n%s", out)
			}
		})
	}
}

func TestGenerateTextMatchesJSON(t *testing.T) {
	addr := startServer(t)
	args := []string{"generate", "--model", "tiny", "--seed", "7", "--top-k", "50", "--max-new-tokens", "24", "--ignore-eos", "The quick", "brown fox"}
	jsonOut, _ := mustRun(t, addr, append(args, "--output", "json")...)
	_, texts := sequences(parseLines(t, jsonOut, newGenerateResponse))
	if len(texts) != 1 || texts[0] == "" {
		t.Fatalf("json mode gave texts %q, want one non-empty", texts)
	}
	out, stderr := mustRun(t, addr, args...)
	if out != texts[0] {
		t.Errorf("text mode printed %q, json mode's text fields join to %q", out, texts[0])
	}
	for _, want := range []string{"finish=length", "prompt_tokens=", "completion_tokens=24", "ttft=", "total="} {
		if !strings.Contains(stderr, want) {
			t.Errorf("summary %q lacks %q", stderr, want)
		}
	}
}

func TestGenerateN(t *testing.T) {
	addr := startServer(t)
	args := []string{"generate", "--model", "tiny", "--seed", "3", "--n", "3", "--max-new-tokens", "10", "--ignore-eos", "Hello"}
	jsonOut, _ := mustRun(t, addr, append(args, "--output", "json")...)
	_, texts := sequences(parseLines(t, jsonOut, newGenerateResponse))
	if len(texts) != 3 {
		t.Fatalf("json mode gave %d sequences, want 3", len(texts))
	}
	var want strings.Builder
	for i, text := range texts {
		want.WriteString("=== sequence " + string(rune('0'+i)) + " ===\n" + text)
		if !strings.HasSuffix(text, "\n") {
			want.WriteString("\n")
		}
	}
	out, stderr := mustRun(t, addr, args...)
	if diff := cmp.Diff(want.String(), out); diff != "" {
		t.Errorf("text mode output (-want +got):\n%s", diff)
	}
	if got := strings.Count(stderr, "finish=length"); got != 3 {
		t.Errorf("stderr has %d summaries, want 3:\n%s", got, stderr)
	}
}

func TestGenerateTokenIDsMode(t *testing.T) {
	addr := startServer(t)
	args := []string{"generate", "--model", "ids", "--prompt-ids", "499,17,42", "--seed", "1", "--max-new-tokens", "5", "--ignore-eos"}
	jsonOut, _ := mustRun(t, addr, append(args, "--output", "json")...)
	ids, _ := sequences(parseLines(t, jsonOut, newGenerateResponse))
	out, _ := mustRun(t, addr, args...)
	if want := formatIDs(ids[0], " ") + "\n"; out != want {
		t.Errorf("token-ids mode printed %q, want %q", out, want)
	}
}

// TestGenerateRequest checks which fields the flags set: proto3 optional fields only when given.
func TestGenerateRequest(t *testing.T) {
	f32, u32 := proto.Float32, proto.Uint32
	for _, tc := range []struct {
		name string
		args []string
		want *modeldv1.GenerateRequest
	}{
		{"defaults", []string{"hi"}, &modeldv1.GenerateRequest{Prompt: "hi"}},
		{"zero values sent when given", []string{"--temperature", "0", "--top-k", "0", "--seed", "0", "hi"},
			&modeldv1.GenerateRequest{Prompt: "hi", Sampling: &modeldv1.SamplingParams{Temperature: f32(0), TopK: u32(0), Seed: proto.Uint64(0)}}},
		{"every flag", []string{"--model", "m", "--max-new-tokens", "9", "--min-new-tokens", "2", "--temperature", "0.5",
			"--top-k", "40", "--top-p", "0.9", "--min-p", "0.05", "--typical-p", "0.95", "--repetition-penalty", "1.2",
			"--presence-penalty", "0.5", "--frequency-penalty", "-0.5", "--logit-bias", "50256=-100,13=2.5", "--logit-bias", "7=1",
			"--seed", "42", "--stop", "\n", "--stop", "END", "--stop-token-ids", "1,2", "--ignore-eos", "--n", "2",
			"--logprobs", "5", "--prompt-logprobs", "--prompt-ids", "1,2", "--prompt-ids", "3"},
			&modeldv1.GenerateRequest{Model: "m", PromptTokenIds: []int32{1, 2, 3}, MaxNewTokens: 9, MinNewTokens: 2,
				Sampling: &modeldv1.SamplingParams{Temperature: f32(0.5), TopK: u32(40), TopP: f32(0.9), MinP: f32(0.05),
					TypicalP: f32(0.95), RepetitionPenalty: f32(1.2), PresencePenalty: 0.5, FrequencyPenalty: -0.5,
					LogitBias: map[int32]float32{50256: -100, 13: 2.5, 7: 1}, Seed: proto.Uint64(42)},
				Stop: []string{"\n", "END"}, StopTokenIds: []int32{1, 2}, IgnoreEos: true, N: 2, Logprobs: 5, PromptLogprobs: true}},
		{"flags after the prompt", []string{"Once", "upon", "--max-new-tokens", "3", "a time"},
			&modeldv1.GenerateRequest{Prompt: "Once upon a time", MaxNewTokens: 3}},
		{"after --", []string{"--max-new-tokens", "3", "--", "--not-a-flag"},
			&modeldv1.GenerateRequest{Prompt: "--not-a-flag", MaxNewTokens: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &cli{globals: globals{output: "text"}, stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
			got, err := c.parseGenerate(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTokenize(t *testing.T) {
	addr := startServer(t)
	tok, err := tokenizer.Load(os.DirFS(filepath.Join(oracle, "hf")))
	if err != nil {
		t.Fatal(err)
	}
	want := tok.Encode("Hello, world of tokens")
	out, _ := mustRun(t, addr, "tokenize", "--model", "tiny", "Hello, world", "of tokens")
	if got := strings.TrimSuffix(out, "\n"); got != formatIDs(want, " ") {
		t.Errorf("tokenize printed %q, want %q", got, formatIDs(want, " "))
	}
	out, _ = mustRun(t, addr, "--output", "json", "tokenize", "Hello, world of tokens")
	resps := parseLines(t, out, func() *modeldv1.TokenizeResponse { return &modeldv1.TokenizeResponse{} })
	if len(resps) != 1 {
		t.Fatalf("json mode printed %d lines, want 1", len(resps))
	}
	if diff := cmp.Diff(want, resps[0].GetTokenIds()); diff != "" {
		t.Errorf("json token_ids (-want +got):\n%s", diff)
	}
}

func TestModels(t *testing.T) {
	addr := startServer(t)
	getState := func() modeldv1.ModelState {
		t.Helper()
		out, _ := mustRun(t, addr, "models", "get", "tiny", "--output", "json")
		resps := parseLines(t, out, func() *modeldv1.GetModelResponse { return &modeldv1.GetModelResponse{} })
		if len(resps) != 1 || resps[0].GetModel().GetName() != "tiny" {
			t.Fatalf("models get tiny --output json printed %q", out)
		}
		return resps[0].GetModel().GetState()
	}
	if got := getState(); got != modeldv1.ModelState_MODEL_STATE_AVAILABLE {
		t.Errorf("state before load = %v, want AVAILABLE", got)
	}

	out, _ := mustRun(t, addr, "models", "load", "tiny")
	if !strings.HasPrefix(out, "tiny: loaded") {
		t.Errorf("models load printed %q", out)
	}
	if got := getState(); got != modeldv1.ModelState_MODEL_STATE_LOADED {
		t.Errorf("state after load = %v, want LOADED", got)
	}

	out, _ = mustRun(t, addr, "models", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("models list printed %d lines, want a header and 2 models:\n%s", len(lines), out)
	}
	for i, want := range [][]string{
		{"NAME", "STATE", "PARAMS", "LAYERS/EMBD", "TOKENIZER", "SIZE"},
		{"ids", "available", "136.2K", "2/64", "no"},
		{"tiny", "loaded", "136.2K", "2/64", "yes"},
	} {
		if got := strings.Fields(lines[i]); len(got) != 6 || !cmp.Equal(got[:len(want)], want) {
			t.Errorf("models list line %d = %q, want fields %q then a size", i, lines[i], want)
		}
	}

	out, _ = mustRun(t, addr, "models", "get", "tiny")
	for _, want := range []string{"name:", "tiny", "state:", "loaded", "n_layer=2 n_head=4 n_embd=64 n_positions=64 vocab_size=500", "tokenizer:", "loaded at:"} {
		if !strings.Contains(out, want) {
			t.Errorf("models get tiny lacks %q:\n%s", want, out)
		}
	}

	out, _ = mustRun(t, addr, "models", "unload", "tiny")
	if out != "tiny: available\n" {
		t.Errorf("models unload printed %q", out)
	}
	if got := getState(); got != modeldv1.ModelState_MODEL_STATE_AVAILABLE {
		t.Errorf("state after unload = %v, want AVAILABLE", got)
	}

	out, _ = mustRun(t, addr, "--output", "json", "models")
	list := parseLines(t, out, func() *modeldv1.ListModelsResponse { return &modeldv1.ListModelsResponse{} })
	if len(list) != 1 || len(list[0].GetModels()) != 2 {
		t.Errorf("models --output json printed %q, want a list of 2 models", out)
	}
}

func TestModelsPull(t *testing.T) {
	addr := startServer(t)
	out, stderr := mustRun(t, addr, "models", "pull", hubRepo, "--name", "pulled")
	if !strings.HasPrefix(out, "pulled "+hubRepo+" as pulled: 136.2K parameters") {
		t.Errorf("models pull printed %q", out)
	}
	for _, file := range []string{"config.json", "model.safetensors", "vocab.json", "merges.txt"} {
		if !strings.Contains(stderr, file) {
			t.Errorf("pull progress lacks %s:\n%s", file, stderr)
		}
	}
	out, _ = mustRun(t, addr, "models", "list")
	if !strings.Contains(out, "pulled") {
		t.Errorf("models list after pull lacks the pulled model:\n%s", out)
	}
	if _, out := mustRun(t, addr, "generate", "--model", "pulled", "--max-new-tokens", "3", "hi"); !strings.Contains(out, "completion_tokens=") {
		t.Errorf("generate with the pulled model: stderr %q", out)
	}

	code, _, stderr := cliRun(t, addr, "models", "pull", hubRepo, "--name", "pulled")
	if code != exitError || !strings.HasPrefix(stderr, "modelcli: AlreadyExists: ") {
		t.Errorf("pull to an existing name: exit %d, stderr %q; want 1 and AlreadyExists", code, stderr)
	}
}

func TestErrors(t *testing.T) {
	addr := startServer(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // prefix of stderr
	}{
		{"generate unknown model", []string{"generate", "--model", "nope", "hi"}, exitError, "modelcli: NotFound: "},
		{"get unknown model", []string{"models", "get", "nope"}, exitError, "modelcli: NotFound: "},
		{"load unknown model", []string{"models", "load", "nope"}, exitError, "modelcli: NotFound: "},
		{"tokenize without tokenizer", []string{"tokenize", "--model", "ids", "hi"}, exitError, "modelcli: FailedPrecondition: "},
		{"bench unknown model", []string{"bench", "--model", "nope"}, exitError, "modelcli: NotFound: "},
		{"invalid argument", []string{"generate", "--logprobs", "21", "hi"}, exitError, "modelcli: InvalidArgument: "},
		{"too long for the context", []string{"generate", "--prompt-ids", "1,2", "--max-new-tokens", "100"}, exitError, "modelcli: InvalidArgument: "},
		{"unknown flag", []string{"generate", "--nope", "hi"}, exitUsage, "flag provided but not defined: -nope"},
		{"bad flag value", []string{"generate", "--top-k", "-1", "hi"}, exitUsage, "invalid value"},
		{"bad logit bias", []string{"generate", "--logit-bias", "50256", "hi"}, exitUsage, "invalid value"},
		{"bad prompt ids", []string{"generate", "--prompt-ids", "1,x"}, exitUsage, "invalid value"},
		{"no prompt", []string{"generate"}, exitUsage, "modelcli: generate: give a PROMPT"},
		{"prompt and ids", []string{"generate", "--prompt-ids", "1", "hi"}, exitUsage, "modelcli: generate: give PROMPT or --prompt-ids, not both"},
		{"bad output", []string{"--output", "yaml", "models", "list"}, exitUsage, `modelcli: --output "yaml": want text or json`},
		{"unknown command", []string{"nope"}, exitUsage, `modelcli: unknown command "nope"`},
		{"no command", nil, exitUsage, "usage: modelcli"},
		{"unknown models action", []string{"models", "nope"}, exitUsage, `modelcli: models: unknown action "nope"`},
		{"models get without a name", []string{"models", "get"}, exitUsage, "modelcli: models get: want 1 argument(s), got 0"},
		{"bench bad concurrency", []string{"bench", "--concurrency", "0"}, exitUsage, "modelcli: bench: --concurrency"},
		{"help", []string{"generate", "-h"}, exitOK, "usage: modelcli generate [flags] PROMPT"},
		{"help command", []string{"help"}, exitOK, "usage: modelcli"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := cliRun(t, addr, tc.args...)
			if code != tc.code || !strings.HasPrefix(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and a stderr starting %q", code, stderr, tc.code, tc.want)
			}
			if tc.code != exitOK && stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
		})
	}
}

func TestUnavailable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	code, _, stderr := cliRun(t, addr, "models", "list")
	if code != exitError || !strings.HasPrefix(stderr, "modelcli: Unavailable: ") {
		t.Errorf("exit %d, stderr %q; want 1 and Unavailable", code, stderr)
	}
}

func TestCancelled(t *testing.T) {
	addr := startServer(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"--addr", addr, "generate", "hi"}, &out, &errb)
	if code != exitInterrupted || !strings.HasPrefix(errb.String(), "modelcli: Canceled: ") {
		t.Errorf("exit %d, stderr %q; want %d and Canceled", code, errb.String(), exitInterrupted)
	}
}

func TestBench(t *testing.T) {
	addr := startServer(t)
	for _, model := range []string{"tiny", "ids"} {
		t.Run("model="+model, func(t *testing.T) {
			out, _ := mustRun(t, addr, "bench", "--model", model, "--concurrency", "4", "--requests", "8", "--max-new-tokens", "8", "--output", "json")
			var r benchReport
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("%v in %q", err, out)
			}
			wantKind := map[string]string{"tiny": "words", "ids": "token_ids"}[model]
			if r.Completed != 8 || r.Failed != 0 || r.Incomplete != 0 || r.PromptKind != wantKind {
				t.Errorf("completed %d, failed %d, incomplete %d, prompts %q; want 8, 0, 0, %q", r.Completed, r.Failed, r.Incomplete, r.PromptKind, wantKind)
			}
			if r.OutputTokens != 8*8 || r.InputTokens != 8*16 {
				t.Errorf("tokens in %d, out %d; want %d and %d", r.InputTokens, r.OutputTokens, 8*16, 8*8)
			}
			if r.OutputThroughput <= 0 || r.RequestThroughput <= 0 || r.DurationS <= 0 {
				t.Errorf("throughput %v tok/s, %v req/s over %vs; want > 0", r.OutputThroughput, r.RequestThroughput, r.DurationS)
			}
			for name, l := range map[string]latency{"ttft": r.TTFT, "itl": r.ITL, "tpot": r.TPOT, "e2e": r.E2E} {
				if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.Mean > 0) {
					t.Errorf("%s: %+v; want 0 < p50 <= p90 <= p99 and mean > 0", name, l)
				}
			}
			if !(r.TTFT.P50 <= r.E2E.P50) {
				t.Errorf("ttft p50 %v > e2e p50 %v", r.TTFT.P50, r.E2E.P50)
			}
		})
	}

	t.Run("text", func(t *testing.T) {
		out, _ := mustRun(t, addr, "bench", "--concurrency", "2", "--requests", "3", "--max-new-tokens", "4", "--prompt", "Hello there")
		for _, want := range []string{"Successful requests:", "Output token throughput (tok/s):", "TTFT", "ITL", "TPOT", "E2E"} {
			if !strings.Contains(out, want) {
				t.Errorf("report lacks %q:\n%s", want, out)
			}
		}
		if !regexp.MustCompile(`Successful requests:\s+3\n`).MatchString(out) {
			t.Errorf("report does not count 3 successful requests:\n%s", out)
		}
	})

	t.Run("duration", func(t *testing.T) {
		start := time.Now()
		out, _ := mustRun(t, addr, "bench", "--requests", "1000000", "--concurrency", "2", "--max-new-tokens", "4", "--duration", "300ms", "--output", "json")
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("bench --duration 300ms took %v", d)
		}
		var r benchReport
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%v in %q", err, out)
		}
		// Every worker starts a request at once; on a loaded machine none may finish in time.
		if r.Completed+r.Incomplete == 0 || r.Completed >= 1000000 || r.Failed != 0 {
			t.Errorf("completed %d, incomplete %d, failed %d; want some but not all, and no failures", r.Completed, r.Incomplete, r.Failed)
		}
	})
}

func TestPercentile(t *testing.T) {
	// numpy.percentile([1, 2, 3, 4, 10], [0, 50, 90, 99, 100]) = [1, 3, 7.6, 9.76, 10]
	sorted := []float64{1, 2, 3, 4, 10}
	for p, want := range map[float64]float64{0: 1, 50: 3, 90: 7.6, 99: 9.76, 100: 10} {
		if got := percentile(sorted, p); got < want-1e-9 || got > want+1e-9 {
			t.Errorf("percentile(%v, %v) = %v, want %v", sorted, p, got, want)
		}
	}
	if got := percentile([]float64{5}, 99); got != 5 {
		t.Errorf("percentile([5], 99) = %v, want 5", got)
	}
}

// TestBenchReport checks the arithmetic of the report on made-up samples.
func TestBenchReport(t *testing.T) {
	ms := time.Millisecond
	samples := []benchSample{
		{ttft: 10 * ms, e2e: 40 * ms, itl: []time.Duration{10 * ms, 10 * ms, 10 * ms}, tokens: 4, promptTokens: 5},
		{ttft: 20 * ms, e2e: 80 * ms, itl: []time.Duration{30 * ms, 15 * ms, 15 * ms}, tokens: 4, promptTokens: 5},
		{err: errIncomplete},
		{err: status.Error(codes.ResourceExhausted, "queue full")},
	}
	r := newBenchReport(benchOptions{model: "m", concurrency: 2, requests: 5, maxNewTokens: 4}, "words", samples, 2*time.Second)
	want := benchReport{Model: "m", PromptKind: "words", Concurrency: 2, MaxNewTokens: 4, Requests: 5,
		Completed: 2, Failed: 1, Incomplete: 1, DurationS: 2, InputTokens: 10, OutputTokens: 8,
		RequestThroughput: 1, OutputThroughput: 4, TotalTokenThroughput: 9,
		TTFT:   latency{Mean: 15, P50: 15, P90: 19, P99: 19.9},
		ITL:    latency{Mean: 15, P50: 12.5, P90: 22.5, P99: 29.25},
		TPOT:   latency{Mean: 15, P50: 15, P90: 19, P99: 19.9},
		E2E:    latency{Mean: 60, P50: 60, P90: 76, P99: 79.6},
		Errors: map[string]int{"ResourceExhausted": 1}, ErrorMessages: map[string]string{"ResourceExhausted": "queue full"}}
	if diff := cmp.Diff(want, r, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	var out bytes.Buffer
	if err := r.print(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Failed requests:", "Incomplete requests:", "Errors: 1 ResourceExhausted, first: queue full"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, out.String())
		}
	}
}
