package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/backend/cpu"
	"github.com/modeld-dev/modeld/internal/engine"
	"github.com/modeld-dev/modeld/internal/oracletest"
	"github.com/modeld-dev/modeld/internal/registry"
	"github.com/modeld-dev/modeld/internal/server"
	"github.com/modeld-dev/modeld/internal/train"
	modeldv1 "github.com/modeld-dev/modeld/proto/modeld/v1"
)

// logBuffer collects a server's JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the log lines that contain every one of subs.
func (b *logBuffer) lines(subs ...string) []string {
	var out []string
	for line := range strings.Lines(b.String()) {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			out = append(out, line)
		}
	}
	return out
}

// secured is a server started by startWith.
type secured struct {
	conn    *grpc.ClientConn // a plaintext client connection
	addr    string
	dataDir string
	logs    *logBuffer
}

// startWith starts a real server on 127.0.0.1:0 with opt (its security and limit fields),
// serving the oracle model as "tiny" (the default) with training enabled, and logging JSON at
// debug level into logs.
func startWith(t *testing.T, opt server.Options) secured {
	t.Helper()
	return serveOracle(t, opt, engine.Config{})
}

// serveOracle is startWith with the engines configured by cfg; every test server of this
// package starts here.
func serveOracle(t *testing.T, opt server.Options, cfg engine.Config) secured {
	t.Helper()
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dir := oracletest.ModelsDir(t)
	reg, err := registry.New(registry.Options{Dir: dir, Backend: func() (backend.Backend, error) { return cpu.New(), nil }, Engine: cfg, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	jobs, err := train.Open(train.Options{DataDir: dataDir, Registry: reg,
		Backend: func() (backend.Backend, error) { return cpu.New(), nil }, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	opt.Registry, opt.Train, opt.DefaultModel, opt.Log = reg, jobs, "tiny", log
	g := server.New(opt).GRPCServer()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- g.Serve(lis) }()
	conn := dial(t, lis.Addr().String())
	t.Cleanup(func() {
		g.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		jobs.Close()
		reg.Close()
	})
	return secured{conn: conn, addr: lis.Addr().String(), dataDir: dataDir, logs: logs}
}

// dial returns a new plaintext connection to addr, closed when the test ends.
func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// bearer returns ctx carrying the metadata "authorization: value".
func bearer(ctx context.Context, value string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", value)
}

// drain reads a Generate stream to its end and returns its error (nil at io.EOF) and the number
// of token ids received.
func drain(stream grpc.ServerStreamingClient[modeldv1.GenerateResponse], err error) (int, error) {
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n += len(resp.GetTokenIds())
	}
}

// upload sends an UploadDataset stream: the info, then chunks; it returns the server's answer.
func upload(ctx context.Context, c modeldv1.TrainServiceClient, name string, chunks ...[]byte) (*modeldv1.UploadDatasetResponse, error) {
	up, err := c.UploadDataset(ctx)
	if err != nil {
		return nil, err
	}
	msgs := []*modeldv1.UploadDatasetRequest{{Part: &modeldv1.UploadDatasetRequest_Info{Info: &modeldv1.DatasetInfo{Name: name}}}}
	for _, ch := range chunks {
		msgs = append(msgs, &modeldv1.UploadDatasetRequest{Part: &modeldv1.UploadDatasetRequest_Chunk{Chunk: ch}})
	}
	for _, m := range msgs {
		if err := up.Send(m); err != nil {
			break // io.EOF: the server has answered; CloseAndRecv says how
		}
	}
	return up.CloseAndRecv()
}

const (
	tokenA = "token-a-0123456789abcdef"
	tokenB = "token-b-0123456789abcdef"
)

func TestAuth(t *testing.T) {
	s := startWith(t, server.Options{AuthTokens: []string{tokenA, tokenB}})
	gen := modeldv1.NewGenerateServiceClient(s.conn)
	trainc := modeldv1.NewTrainServiceClient(s.conn)
	for _, tc := range []struct {
		name, header string
		want         codes.Code
	}{
		{"none", "", codes.Unauthenticated},
		{"wrong", "Bearer token-c-0123456789abcdef", codes.Unauthenticated},
		{"prefix_of_right", "Bearer " + tokenA[:len(tokenA)-1], codes.Unauthenticated},
		{"right_plus_byte", "Bearer " + tokenA + "x", codes.Unauthenticated},
		{"empty", "Bearer ", codes.Unauthenticated},
		{"no_scheme", tokenA, codes.Unauthenticated},
		{"basic_scheme", "Basic " + tokenA, codes.Unauthenticated},
		{"right", "Bearer " + tokenA, codes.OK},
		{"second_token", "Bearer " + tokenB, codes.OK},
		{"lower_case_scheme", "bearer " + tokenA, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			if tc.header != "" {
				ctx = bearer(ctx, tc.header)
			}
			_, err := gen.Tokenize(ctx, &modeldv1.TokenizeRequest{Text: "hello"})
			if status.Code(err) != tc.want {
				t.Errorf("Tokenize: %v, want %v", err, tc.want)
			}
			n, err := drain(gen.Generate(ctx, &modeldv1.GenerateRequest{Prompt: "a", MaxNewTokens: 2, IgnoreEos: true}))
			if status.Code(err) != tc.want || (tc.want == codes.OK && n != 2) {
				t.Errorf("Generate: %v after %d tokens, want %v", err, n, tc.want)
			}
			_, err = upload(ctx, trainc, "d.txt", []byte("some text"))
			if status.Code(err) != tc.want {
				t.Errorf("UploadDataset: %v, want %v", err, tc.want)
			}
		})
	}
	// Health and reflection answer without a token.
	h, err := healthpb.NewHealthClient(s.conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health without token: %v, %v; want SERVING", h, err)
	}
	refl, err := reflectionpb.NewServerReflectionClient(s.conn).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := refl.Recv()
	if err != nil {
		t.Fatalf("reflection without token: %v", err)
	}
	var services []string
	for _, svc := range resp.GetListServicesResponse().GetService() {
		services = append(services, svc.GetName())
	}
	if !strings.Contains(strings.Join(services, " "), "modeld.v1.GenerateService") {
		t.Errorf("reflection lists %v, want modeld.v1.GenerateService among them", services)
	}
	refl.CloseSend()
	// No token reaches the log.
	if log := s.logs.String(); strings.Contains(log, tokenA) || strings.Contains(log, tokenB) {
		t.Errorf("a token is in the log:\n%s", log)
	}
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestRequestID(t *testing.T) {
	s := startWith(t, server.Options{AuthTokens: []string{tokenA}})
	gen := modeldv1.NewGenerateServiceClient(s.conn)
	authed := bearer(t.Context(), "Bearer "+tokenA)
	tokenize := func(ctx context.Context) (string, error) {
		var md metadata.MD
		_, err := gen.Tokenize(ctx, &modeldv1.TokenizeRequest{Text: "hi"}, grpc.Header(&md))
		if got := md.Get(server.RequestIDHeader); len(got) == 1 {
			return got[0], err
		}
		return "", err
	}
	id, err := tokenize(metadata.AppendToOutgoingContext(authed, "x-request-id", "req-42.a:b/c+d=e_f"))
	if err != nil || id != "req-42.a:b/c+d=e_f" {
		t.Errorf("sane id: got %q, %v; want it echoed", id, err)
	}
	for _, bad := range []string{"has space", "semi;colon", "quote\"", "<b>", strings.Repeat("x", 129), ""} {
		id, err := tokenize(metadata.AppendToOutgoingContext(authed, "x-request-id", bad))
		if err != nil || !hexID.MatchString(id) {
			t.Errorf("id %q: got %q, %v; want a generated one", bad, id, err)
		}
	}
	id1, _ := tokenize(authed)
	id2, _ := tokenize(authed)
	if !hexID.MatchString(id1) || id1 == id2 {
		t.Errorf("generated ids %q, %q: want two different 32-hex-digit ids", id1, id2)
	}
	// Refused calls get their id too.
	id, err = tokenize(metadata.AppendToOutgoingContext(t.Context(), "x-request-id", "refused-1"))
	if status.Code(err) != codes.Unauthenticated || id != "refused-1" {
		t.Errorf("without token: id %q, %v; want refused-1 and Unauthenticated", id, err)
	}
	// Streams return it in their header.
	stream, err := gen.Generate(metadata.AppendToOutgoingContext(authed, "x-request-id", "stream-7"), &modeldv1.GenerateRequest{Prompt: "a", MaxNewTokens: 1})
	if err != nil {
		t.Fatal(err)
	}
	md, err := stream.Header()
	if err != nil || strings.Join(md.Get(server.RequestIDHeader), ",") != "stream-7" {
		t.Errorf("stream header %v, %v; want x-request-id stream-7", md, err)
	}
	if _, err := drain(stream, nil); err != nil {
		t.Fatal(err)
	}
	// The log line of each call carries its id, and the client's token identity when it has one.
	if l := s.logs.lines(`"request_id":"req-42.a:b/c+d=e_f"`, `"grpc.method":"Tokenize"`, `"client":"token:`, `"grpc.code":"OK"`); len(l) != 1 {
		t.Errorf("log lines of req-42: %q, want one finished call with its client\n%s", l, s.logs)
	}
	if l := s.logs.lines(`"request_id":"refused-1"`, `"grpc.code":"Unauthenticated"`); len(l) != 1 || strings.Contains(l[0], `"client"`) {
		t.Errorf("log lines of refused-1: %q, want one Unauthenticated call without a client", l)
	}
	if l := s.logs.lines(`"request_id":"stream-7"`, `"grpc.method":"Generate"`); len(l) != 1 {
		t.Errorf("log lines of stream-7: %q, want one", l)
	}
}

func TestLogPayloads(t *testing.T) {
	const prompt, data = "SECRET-PROMPT-1729", "SECRET-TRAINING-DATA-4104"
	for _, on := range []bool{false, true} {
		s := startWith(t, server.Options{LogPayloads: on})
		if _, err := drain(modeldv1.NewGenerateServiceClient(s.conn).Generate(t.Context(), &modeldv1.GenerateRequest{Prompt: prompt, MaxNewTokens: 1})); err != nil {
			t.Fatal(err)
		}
		if _, err := upload(t.Context(), modeldv1.NewTrainServiceClient(s.conn), "d.txt", []byte(data)); err != nil {
			t.Fatal(err)
		}
		if len(s.logs.lines(`"grpc.method":"Generate"`)) == 0 || len(s.logs.lines(`"grpc.method":"UploadDataset"`)) == 0 {
			t.Fatalf("log-payloads=%v: no log line of the calls:\n%s", on, s.logs)
		}
		// The JSON handler writes bytes fields (an upload's chunk) in base64.
		for _, secret := range []string{prompt, data, base64.StdEncoding.EncodeToString([]byte(data))} {
			if in := len(s.logs.lines(secret)) > 0; in != (on && secret != data) {
				t.Errorf("log-payloads=%v: %s in the log = %v\n%s", on, secret, in, s.logs)
			}
		}
	}
}

// sized returns the message make(n) built for the largest n whose wire size is exactly size
// bytes; it fails the test if none is.
func sized(t *testing.T, size int, make func(n int) proto.Message) proto.Message {
	t.Helper()
	for n := size; n >= 0; n-- {
		if m := make(n); proto.Size(m) == size {
			return m
		}
	}
	t.Fatalf("no message of %d bytes", size)
	return nil
}

// TestMaxMessageSize sends requests of exactly the limit (accepted) and one byte more
// (ResourceExhausted) on a unary call, a server stream's request and a client stream's chunk.
func TestMaxMessageSize(t *testing.T) {
	const limit = 3000
	s := startWith(t, server.Options{MaxRecvMsgBytes: limit})
	gen := modeldv1.NewGenerateServiceClient(s.conn)
	trainc := modeldv1.NewTrainServiceClient(s.conn)
	for _, size := range []int{limit, limit + 1} {
		want := codes.OK
		if size > limit {
			want = codes.ResourceExhausted
		}
		tok := sized(t, size, func(n int) proto.Message {
			return &modeldv1.TokenizeRequest{Text: strings.Repeat("a", n)}
		}).(*modeldv1.TokenizeRequest)
		if _, err := gen.Tokenize(t.Context(), tok); status.Code(err) != want {
			t.Errorf("Tokenize of %d bytes: %v, want %v", size, err, want)
		}
		// Generate: pad with stop strings (at most 256 bytes each), which do not lengthen the prompt.
		req := sized(t, size, func(n int) proto.Message {
			r := &modeldv1.GenerateRequest{Prompt: "a", MaxNewTokens: 1}
			for ; n > 0; n -= 256 {
				r.Stop = append(r.Stop, strings.Repeat("z", min(n, 256)))
			}
			return r
		}).(*modeldv1.GenerateRequest)
		if n, err := drain(gen.Generate(t.Context(), req)); status.Code(err) != want || (want == codes.OK && n != 1) {
			t.Errorf("Generate of %d bytes: %v after %d tokens, want %v", size, err, n, want)
		}
		chunk := sized(t, size, func(n int) proto.Message {
			return &modeldv1.UploadDatasetRequest{Part: &modeldv1.UploadDatasetRequest_Chunk{Chunk: bytes.Repeat([]byte("x"), n)}}
		}).(*modeldv1.UploadDatasetRequest).GetChunk()
		resp, err := upload(t.Context(), trainc, "d.txt", chunk)
		if status.Code(err) != want || (want == codes.OK && resp.GetSizeBytes() != uint64(len(chunk))) {
			t.Errorf("UploadDataset chunk in a message of %d bytes: %v, %v; want %v", size, resp, err, want)
		}
	}
}

func TestRateLimit(t *testing.T) {
	const perSecond = 1e-6 // no token comes back during the test
	t.Run("by_ip", func(t *testing.T) {
		s := startWith(t, server.Options{RateLimit: perSecond, RateBurst: 3})
		gen := modeldv1.NewGenerateServiceClient(s.conn)
		other := modeldv1.NewGenerateServiceClient(dial(t, s.addr)) // another connection, the same IP
		if _, err := gen.Tokenize(t.Context(), &modeldv1.TokenizeRequest{Text: "a"}); err != nil {
			t.Fatal(err)
		}
		// A stream of many messages counts once.
		if n, err := drain(gen.Generate(t.Context(), &modeldv1.GenerateRequest{Prompt: "a", MaxNewTokens: 5, IgnoreEos: true})); err != nil || n != 5 {
			t.Fatalf("Generate: %d tokens, %v", n, err)
		}
		if _, err := other.Tokenize(t.Context(), &modeldv1.TokenizeRequest{Text: "a"}); err != nil {
			t.Fatal(err)
		}
		_, err := other.Tokenize(t.Context(), &modeldv1.TokenizeRequest{Text: "a"})
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "requests/s") {
			t.Errorf("4th call of the IP: %v, want ResourceExhausted", err)
		}
		if _, err := drain(gen.Generate(t.Context(), &modeldv1.GenerateRequest{Prompt: "a", MaxNewTokens: 1})); status.Code(err) != codes.ResourceExhausted {
			t.Errorf("5th call (a stream): %v, want ResourceExhausted", err)
		}
		if _, err := healthpb.NewHealthClient(s.conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Errorf("health above the rate limit: %v, want no limit", err)
		}
	})
	t.Run("by_token", func(t *testing.T) {
		s := startWith(t, server.Options{AuthTokens: []string{tokenA, tokenB}, RateLimit: perSecond, RateBurst: 1})
		gen := modeldv1.NewGenerateServiceClient(s.conn)
		a, b := bearer(t.Context(), "Bearer "+tokenA), bearer(t.Context(), "Bearer "+tokenB)
		for i, tc := range []struct {
			ctx  context.Context
			want codes.Code
		}{{a, codes.OK}, {a, codes.ResourceExhausted}, {b, codes.OK}, {b, codes.ResourceExhausted}} {
			if _, err := gen.Tokenize(tc.ctx, &modeldv1.TokenizeRequest{Text: "a"}); status.Code(err) != tc.want {
				t.Errorf("call %d: %v, want %v", i, err, tc.want)
			}
		}
	})
}

// TestPathTraversal sends model names and data paths that point outside the models and data
// directories; each is refused with InvalidArgument (or NotFound for a malformed dataset id),
// although the file they point at exists.
func TestPathTraversal(t *testing.T) {
	s := startWith(t, server.Options{})
	outside := filepath.Join(filepath.Dir(s.dataDir), "outside.txt")
	if err := os.WriteFile(outside, []byte(strings.Repeat("outside text. ", 200)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(s.dataDir, "link.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dataDir, "inside.txt"), []byte(strings.Repeat("inside text. ", 200)), 0o644); err != nil {
		t.Fatal(err)
	}
	models := modeldv1.NewModelServiceClient(s.conn)
	for _, name := range []string{"../tiny", "..", "tiny/../tiny", "/etc", `..\tiny`, "%2e%2e", "tiny\x00"} {
		if _, err := models.GetModel(t.Context(), &modeldv1.GetModelRequest{Name: name}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("GetModel(%q): %v, want InvalidArgument", name, err)
		}
		if _, err := models.LoadModel(t.Context(), &modeldv1.LoadModelRequest{Name: name}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("LoadModel(%q): %v, want InvalidArgument", name, err)
		}
		if _, err := models.UnloadModel(t.Context(), &modeldv1.UnloadModelRequest{Name: name}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("UnloadModel(%q): %v, want InvalidArgument", name, err)
		}
	}
	for _, req := range []*modeldv1.PullModelRequest{
		{Repo: "org/repo", Name: "../evil"},
		{Repo: "../../etc"},
		{Repo: "org/repo", Revision: ".."},
	} {
		stream, err := models.PullModel(t.Context(), req)
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("PullModel(%v): %v, want InvalidArgument", req, err)
		}
	}
	trainc := modeldv1.NewTrainServiceClient(s.conn)
	// Each request is valid but for the one field under test (the last one, a control, is valid).
	base := func(r *modeldv1.CreateTrainingJobRequest) *modeldv1.CreateTrainingJobRequest {
		if r.Base == nil {
			r.Base = &modeldv1.CreateTrainingJobRequest_BaseModel{BaseModel: "tiny"}
		}
		if r.OutputModel == "" {
			r.OutputModel = "out"
		}
		if r.DataPaths == nil && r.DatasetIds == nil {
			r.DataPaths = []string{"inside.txt"}
		}
		r.Hyperparameters = &modeldv1.Hyperparameters{MaxSteps: proto.Uint32(1), BatchSize: 1, SeqLen: 8}
		return r
	}
	for _, tc := range []struct {
		req  *modeldv1.CreateTrainingJobRequest
		want codes.Code
	}{
		{&modeldv1.CreateTrainingJobRequest{DataPaths: []string{"../outside.txt"}}, codes.InvalidArgument},
		{&modeldv1.CreateTrainingJobRequest{DataPaths: []string{outside}}, codes.InvalidArgument},
		{&modeldv1.CreateTrainingJobRequest{DataPaths: []string{"datasets/../../outside.txt"}}, codes.InvalidArgument},
		{&modeldv1.CreateTrainingJobRequest{DataPaths: []string{"link.txt"}}, codes.InvalidArgument}, // a symlink out of the data directory
		{&modeldv1.CreateTrainingJobRequest{EvalDataPaths: []string{"../outside.txt"}}, codes.InvalidArgument},
		{&modeldv1.CreateTrainingJobRequest{DatasetIds: []string{"../outside.txt"}}, codes.NotFound},
		{&modeldv1.CreateTrainingJobRequest{DatasetIds: []string{"ds-../../../../etc/passwd"}}, codes.NotFound},
		{&modeldv1.CreateTrainingJobRequest{OutputModel: "../evil"}, codes.InvalidArgument},
		{&modeldv1.CreateTrainingJobRequest{Base: &modeldv1.CreateTrainingJobRequest_BaseModel{BaseModel: "../tiny"}}, codes.InvalidArgument},
		{&modeldv1.CreateTrainingJobRequest{TokenizerModel: "../tiny"}, codes.InvalidArgument},
		{&modeldv1.CreateTrainingJobRequest{OutputModel: "control"}, codes.OK},
	} {
		req := base(tc.req)
		if _, err := trainc.CreateTrainingJob(t.Context(), req); status.Code(err) != tc.want {
			t.Errorf("CreateTrainingJob(%v): %v, want %v", req, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(s.dataDir), "evil")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused output model left %v", err)
	}
}

// TestDefaultMaxNewTokensAtContext checks the default max_new_tokens near the context's end: what
// the context leaves, and for a prompt that fills it the error that names the context (not a
// max_new_tokens the client never sent).
func TestDefaultMaxNewTokensAtContext(t *testing.T) {
	s := startWith(t, server.Options{})
	gen := modeldv1.NewGenerateServiceClient(s.conn)
	prompt := func(n int) []int32 { return make([]int32, n) } // the tiny model's context is 64
	got, err := drain(gen.Generate(t.Context(), &modeldv1.GenerateRequest{PromptTokenIds: prompt(60), IgnoreEos: true}))
	if err != nil {
		t.Fatal(err)
	}
	if got != 4 {
		t.Errorf("a 60-token prompt in a 64-token context generated %d tokens by default, want 4", got)
	}
	for _, n := range []int{64, 100} {
		_, err := drain(gen.Generate(t.Context(), &modeldv1.GenerateRequest{PromptTokenIds: prompt(n)}))
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "exceeds the model's context of 64 tokens") {
			t.Errorf("a %d-token prompt with the default max_new_tokens: %v, want InvalidArgument naming the context", n, err)
		}
	}
}

// TestRequestLimits checks the per-request limits of Options.MaxPromptTokens and MaxNewTokens
// (the --max-prompt-tokens and --max-new-tokens flags) at and one above each limit.
func TestRequestLimits(t *testing.T) {
	s := startWith(t, server.Options{MaxPromptTokens: 4, MaxNewTokens: 3})
	gen := modeldv1.NewGenerateServiceClient(s.conn)
	for _, tc := range []struct {
		prompt    []int32
		maxTokens uint32
		want      codes.Code
	}{
		{[]int32{1, 2, 3, 4}, 3, codes.OK},
		{[]int32{1, 2, 3, 4, 5}, 3, codes.InvalidArgument},
		{[]int32{1}, 4, codes.InvalidArgument},
	} {
		_, err := drain(gen.Generate(t.Context(), &modeldv1.GenerateRequest{PromptTokenIds: tc.prompt, MaxNewTokens: tc.maxTokens}))
		if status.Code(err) != tc.want || (err != nil && !strings.Contains(err.Error(), "this server's limit")) {
			t.Errorf("%d prompt tokens, max_new_tokens %d: %v, want %v", len(tc.prompt), tc.maxTokens, err, tc.want)
		}
	}
}
