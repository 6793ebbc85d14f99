package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/modeld-dev/modeld/internal/engine"
	"github.com/modeld-dev/modeld/internal/server"
	modeldv1 "github.com/modeld-dev/modeld/proto/modeld/v1"
	"github.com/modeld-dev/modeld/tokenizer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const oracle = "../../testdata/gpt2-tiny"

// client is a real client of a real server on 127.0.0.1:0 serving the oracle model as "tiny"
// (the default model) and, without tokenizer files, as "ids".
type client struct {
	train  modeldv1.TrainServiceClient
	gen    modeldv1.GenerateServiceClient
	models modeldv1.ModelServiceClient
	health healthpb.HealthClient
	tok    *tokenizer.Tokenizer
}

func start(t *testing.T, cfg engine.Config) client {
	t.Helper()
	s := serveOracle(t, server.Options{}, cfg)
	tok, err := tokenizer.Load(os.DirFS(filepath.Join(oracle, "hf")))
	if err != nil {
		t.Fatal(err)
	}
	return client{modeldv1.NewTrainServiceClient(s.conn), modeldv1.NewGenerateServiceClient(s.conn), modeldv1.NewModelServiceClient(s.conn), healthpb.NewHealthClient(s.conn), tok}
}

// result is one sequence of a Generate call.
type result struct {
	tokens []int32
	text   string
	last   *modeldv1.GenerateResponse
}

func (c client) generate(ctx context.Context, req *modeldv1.GenerateRequest) ([]result, []*modeldv1.PromptLogprob, error) {
	stream, err := c.gen.Generate(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	out := make([]result, max(req.GetN(), 1))
	var prompt []*modeldv1.PromptLogprob
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return out, prompt, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if !utf8.ValidString(resp.GetText()) {
			return nil, nil, errors.New("chunk text is not valid UTF-8")
		}
		if resp.GetPromptLogprobs() != nil {
			prompt = resp.GetPromptLogprobs()
		}
		r := &out[resp.GetIndex()]
		r.tokens = append(r.tokens, resp.GetTokenIds()...)
		r.text += resp.GetText()
		if resp.GetFinishReason() != modeldv1.FinishReason_FINISH_REASON_UNSPECIFIED {
			r.last = resp
		}
	}
}

func readJSON(t *testing.T, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(oracle, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
}

func greedy() *modeldv1.SamplingParams {
	return &modeldv1.SamplingParams{Temperature: proto.Float32(0)}
}

func TestGreedyAndPromptLogprobsMatchOracle(t *testing.T) {
	c := start(t, engine.Config{})
	var g struct {
		Gen1 struct {
			Prompt    []int32
			NewTokens []int32 `json:"new_tokens"`
		}
	}
	readJSON(t, "refs/greedy/greedy.json", &g)
	out, _, err := c.generate(t.Context(), &modeldv1.GenerateRequest{
		PromptTokenIds: g.Gen1.Prompt, MaxNewTokens: 20, Sampling: greedy(), IgnoreEos: true})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(g.Gen1.NewTokens, out[0].tokens); diff != "" {
		t.Errorf("greedy tokens (-oracle +got):\n%s", diff)
	}
	last := out[0].last
	if last.GetFinishReason() != modeldv1.FinishReason_FINISH_REASON_LENGTH || last.GetUsage().GetPromptTokens() != 5 || last.GetUsage().GetCompletionTokens() != 20 {
		t.Errorf("last message = %v", last)
	}
	if last.GetTimings().GetTotal().AsDuration() <= 0 {
		t.Errorf("timings = %v, want a positive total", last.GetTimings())
	}

	var in struct{ Case1 struct{ Stream []int32 } }
	var summary struct {
		PerPositionLoss [][]float64 `json:"per_position_loss"`
	}
	readJSON(t, "refs/inputs.json", &in)
	readJSON(t, "refs/case1/summary.json", &summary)
	prompt := in.Case1.Stream[:17]
	_, lps, err := c.generate(t.Context(), &modeldv1.GenerateRequest{PromptTokenIds: prompt, MaxNewTokens: 1, PromptLogprobs: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(lps) != 16 {
		t.Fatalf("%d prompt logprobs, want 16", len(lps))
	}
	for i, lp := range lps {
		if lp.GetTokenId() != prompt[i+1] {
			t.Errorf("prompt logprob %d is for token %d, want %d", i, lp.GetTokenId(), prompt[i+1])
		}
		if want := -summary.PerPositionLoss[0][i]; math.Abs(float64(lp.GetLogprob())-want) > 5e-5 {
			t.Errorf("prompt logprob %d = %v, want %v", i, lp.GetLogprob(), want)
		}
	}
}

func TestStreamedTextAndLogprobs(t *testing.T) {
	c := start(t, engine.Config{})
	seed := uint64(11)
	out, _, err := c.generate(t.Context(), &modeldv1.GenerateRequest{Prompt: "The weather today", MaxNewTokens: 30, N: 2,
		Logprobs: 3, Sampling: &modeldv1.SamplingParams{Seed: &seed, TopK: proto.Uint32(50), TopP: proto.Float32(0.95)}})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range out {
		gen := r.tokens
		if r.last.GetFinishReason() == modeldv1.FinishReason_FINISH_REASON_STOP {
			gen = gen[:len(gen)-1]
		}
		dec := c.tok.NewStreamDecoder()
		var want string
		for _, id := range gen {
			s, err := dec.Add(id)
			if err != nil {
				t.Fatal(err)
			}
			want += s
		}
		want += dec.Flush()
		if r.text != want {
			t.Errorf("sequence %d: streamed text %q, the tokens decode to %q", i, r.text, want)
		}
	}
	// Logprobs come with every token: check one message.
	stream, err := c.gen.Generate(t.Context(), &modeldv1.GenerateRequest{Prompt: "x", MaxNewTokens: 1, Logprobs: 3, Sampling: greedy()})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	lp := resp.GetLogprobs()
	if len(lp) != 1 || len(lp[0].GetTopLogprobs()) != 3 || lp[0].GetTokenId() != resp.GetTokenIds()[0] ||
		lp[0].GetTopLogprobs()[0].GetTokenId() != resp.GetTokenIds()[0] || lp[0].GetLogprob() > 0 {
		t.Errorf("greedy logprobs = %v for token %v: want the token first of 3 alternatives", lp, resp.GetTokenIds())
	}
	for {
		if _, err := stream.Recv(); err != nil {
			break
		}
	}
}

func TestSeededUnderConcurrency(t *testing.T) {
	c := start(t, engine.Config{MaxBatchTokens: 256, MaxRunning: 64})
	seed := uint64(5)
	req := &modeldv1.GenerateRequest{Prompt: "Hello", MaxNewTokens: 24, IgnoreEos: true, Sampling: &modeldv1.SamplingParams{Seed: &seed}}
	alone, _, err := c.generate(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	// The same request beside 7 others, then 64 streams at once.
	for _, n := range []int{8, 64} {
		var wg sync.WaitGroup
		outs := make([][]result, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				r := req
				if i%8 != 0 {
					s := uint64(1000 + i)
					r = &modeldv1.GenerateRequest{Prompt: "Other prompt", MaxNewTokens: uint32(8 + i%13), Sampling: &modeldv1.SamplingParams{Seed: &s}}
				}
				outs[i], _, errs[i] = c.generate(t.Context(), r)
			})
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("n=%d: stream %d: %v", n, i, errs[i])
			}
			if outs[i][0].last == nil {
				t.Fatalf("n=%d: stream %d has no finish", n, i)
			}
			if i%8 == 0 {
				if diff := cmp.Diff(alone[0].tokens, outs[i][0].tokens); diff != "" {
					t.Errorf("n=%d: seeded stream %d differs from alone (-alone +got):\n%s", n, i, diff)
				}
			}
		}
	}
}

func TestCancelMidStream(t *testing.T) {
	c := start(t, engine.Config{})
	ctx, cancel := context.WithCancel(t.Context())
	stream, err := c.gen.Generate(ctx, &modeldv1.GenerateRequest{PromptTokenIds: []int32{1}, MaxNewTokens: 60, IgnoreEos: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	for {
		_, err := stream.Recv()
		if err == nil {
			continue
		}
		if err != io.EOF && status.Code(err) != codes.Canceled {
			t.Fatalf("Recv after cancel: %v", err)
		}
		break
	}
	// The server goes on serving; goleak checks at the end that nothing was left running.
	if _, _, err := c.generate(t.Context(), &modeldv1.GenerateRequest{PromptTokenIds: []int32{1}, MaxNewTokens: 2}); err != nil {
		t.Fatal(err)
	}
}

func TestBadInput(t *testing.T) {
	c := start(t, engine.Config{MaxN: 4})
	long := make([]int32, 60)
	for _, tc := range []struct {
		name string
		req  *modeldv1.GenerateRequest
		want codes.Code
	}{
		{"empty_prompt", &modeldv1.GenerateRequest{}, codes.InvalidArgument},
		{"prompt_and_ids", &modeldv1.GenerateRequest{Prompt: "a", PromptTokenIds: []int32{1}}, codes.InvalidArgument},
		{"unknown_model", &modeldv1.GenerateRequest{Model: "nope", Prompt: "a"}, codes.NotFound},
		{"bad_model_name", &modeldv1.GenerateRequest{Model: "../tiny", Prompt: "a"}, codes.InvalidArgument},
		{"top_p_0", &modeldv1.GenerateRequest{Prompt: "a", Sampling: &modeldv1.SamplingParams{TopP: proto.Float32(0)}}, codes.InvalidArgument},
		{"top_p_1.5", &modeldv1.GenerateRequest{Prompt: "a", Sampling: &modeldv1.SamplingParams{TopP: proto.Float32(1.5)}}, codes.InvalidArgument},
		{"negative_temperature", &modeldv1.GenerateRequest{Prompt: "a", Sampling: &modeldv1.SamplingParams{Temperature: proto.Float32(-1)}}, codes.InvalidArgument},
		{"beyond_context", &modeldv1.GenerateRequest{PromptTokenIds: long, MaxNewTokens: 5}, codes.InvalidArgument},
		{"n_above_limit", &modeldv1.GenerateRequest{Prompt: "a", N: 5}, codes.InvalidArgument},
		{"unknown_token_id", &modeldv1.GenerateRequest{PromptTokenIds: []int32{1, 500}}, codes.InvalidArgument},
		{"logprobs_21", &modeldv1.GenerateRequest{Prompt: "a", Logprobs: 21}, codes.InvalidArgument},
		{"text_without_tokenizer", &modeldv1.GenerateRequest{Model: "ids", Prompt: "a"}, codes.FailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := c.generate(t.Context(), tc.req)
			if status.Code(err) != tc.want {
				t.Errorf("code = %v (%v), want %v", status.Code(err), err, tc.want)
			}
		})
	}
	// Token-ids mode: ids in, ids out, no text.
	out, _, err := c.generate(t.Context(), &modeldv1.GenerateRequest{Model: "ids", PromptTokenIds: []int32{1, 2}, MaxNewTokens: 3, IgnoreEos: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(out[0].tokens) != 3 || out[0].text != "" {
		t.Errorf("token-ids mode gave %v %q", out[0].tokens, out[0].text)
	}
}

func TestModelsAndHealth(t *testing.T) {
	c := start(t, engine.Config{})
	gen := modeldv1.GenerateService_ServiceDesc.ServiceName
	h, err := c.health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: gen})
	if err != nil {
		t.Fatal(err)
	}
	if h.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health before any load = %v, want NOT_SERVING", h.GetStatus())
	}
	list, err := c.models.ListModels(t.Context(), &modeldv1.ListModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetModels()) != 2 || list.GetModels()[1].GetName() != "tiny" || list.GetModels()[1].GetNumParameters() != 136192 {
		t.Fatalf("ListModels = %v", list)
	}
	loaded, err := c.models.LoadModel(t.Context(), &modeldv1.LoadModelRequest{Name: "tiny"})
	if err != nil {
		t.Fatal(err)
	}
	if loaded.GetModel().GetState() != modeldv1.ModelState_MODEL_STATE_LOADED || loaded.GetModel().GetLoadTime() == nil {
		t.Errorf("LoadModel = %v", loaded)
	}
	if h, _ := c.health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: gen}); h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health after load = %v, want SERVING", h.GetStatus())
	}
	un, err := c.models.UnloadModel(t.Context(), &modeldv1.UnloadModelRequest{Name: "tiny"})
	if err != nil {
		t.Fatal(err)
	}
	if un.GetModel().GetState() != modeldv1.ModelState_MODEL_STATE_AVAILABLE {
		t.Errorf("UnloadModel = %v", un)
	}
	for _, tc := range []struct {
		name string
		want codes.Code
	}{{"missing", codes.NotFound}, {"", codes.InvalidArgument}, {"a/b", codes.InvalidArgument}} {
		if _, err := c.models.GetModel(t.Context(), &modeldv1.GetModelRequest{Name: tc.name}); status.Code(err) != tc.want {
			t.Errorf("GetModel(%q) = %v, want %v", tc.name, err, tc.want)
		}
	}
	tok, err := c.gen.Tokenize(t.Context(), &modeldv1.TokenizeRequest{Text: "hello world"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c.tok.Encode("hello world"), tok.GetTokenIds()); diff != "" {
		t.Errorf("Tokenize (-want +got):\n%s", diff)
	}
}

// TestTrainThenGenerate uploads a text in chunks, fine-tunes the oracle model on it, follows the
// job, and generates from the new model at once.
func TestTrainThenGenerate(t *testing.T) {
	c := start(t, engine.Config{})
	up, err := c.train.UploadDataset(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("the cat sat on the mat. ", 60)
	if err := up.Send(&modeldv1.UploadDatasetRequest{Part: &modeldv1.UploadDatasetRequest_Info{Info: &modeldv1.DatasetInfo{Name: "cats.txt"}}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(text); i += 100 {
		if err := up.Send(&modeldv1.UploadDatasetRequest{Part: &modeldv1.UploadDatasetRequest_Chunk{Chunk: []byte(text[i:min(i+100, len(text))])}}); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := up.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	if ds.GetSizeBytes() != uint64(len(text)) || ds.GetNumExamples() != 1 {
		t.Errorf("UploadDataset = %v", ds)
	}
	created, err := c.train.CreateTrainingJob(t.Context(), &modeldv1.CreateTrainingJobRequest{
		Base: &modeldv1.CreateTrainingJobRequest_BaseModel{BaseModel: "tiny"}, OutputModel: "tiny-cats",
		DatasetIds: []string{ds.GetDatasetId()},
		Hyperparameters: &modeldv1.Hyperparameters{MaxSteps: proto.Uint32(30), BatchSize: 4, SeqLen: 32,
			LearningRate: proto.Float64(3e-3), LrScheduler: modeldv1.LrScheduler_LR_SCHEDULER_CONSTANT}})
	if err != nil {
		t.Fatal(err)
	}
	watch, err := c.train.WatchTrainingJob(t.Context(), &modeldv1.WatchTrainingJobRequest{Id: created.GetJob().GetId()})
	if err != nil {
		t.Fatal(err)
	}
	var losses []float32
	var last modeldv1.JobState
	for {
		resp, err := watch.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if s := resp.GetEvent().GetStep(); s != nil {
			losses = append(losses, s.GetLoss())
		}
		if sc := resp.GetEvent().GetStateChange(); sc != nil {
			last = sc.GetState()
		}
	}
	if last != modeldv1.JobState_JOB_STATE_SUCCEEDED || len(losses) != 30 || !(losses[29] < losses[0]-1) {
		t.Fatalf("job ended %v with losses %v, want success and a falling loss", last, losses)
	}
	out, _, err := c.generate(t.Context(), &modeldv1.GenerateRequest{Model: "tiny-cats", Prompt: "the cat", MaxNewTokens: 12, Sampling: greedy(), IgnoreEos: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out[0].text, "sat on the mat") {
		t.Errorf("the fine-tuned model wrote %q, want the text it learned", out[0].text)
	}
	// Bad requests get their codes.
	for _, tc := range []struct {
		req  *modeldv1.CreateTrainingJobRequest
		want codes.Code
	}{
		{&modeldv1.CreateTrainingJobRequest{Base: &modeldv1.CreateTrainingJobRequest_BaseModel{BaseModel: "nope"}, OutputModel: "x", DatasetIds: []string{ds.GetDatasetId()}}, codes.NotFound},
		{&modeldv1.CreateTrainingJobRequest{Base: &modeldv1.CreateTrainingJobRequest_BaseModel{BaseModel: "tiny"}, OutputModel: "tiny-cats", DatasetIds: []string{ds.GetDatasetId()}}, codes.AlreadyExists},
		{&modeldv1.CreateTrainingJobRequest{Base: &modeldv1.CreateTrainingJobRequest_BaseModel{BaseModel: "tiny"}, OutputModel: "y", DataPaths: []string{"../../etc/passwd"}}, codes.InvalidArgument},
	} {
		if _, err := c.train.CreateTrainingJob(t.Context(), tc.req); status.Code(err) != tc.want {
			t.Errorf("CreateTrainingJob(%v) = %v, want %v", tc.req, err, tc.want)
		}
	}
	if _, err := c.train.GetTrainingJob(t.Context(), &modeldv1.GetTrainingJobRequest{Id: "ftjob-nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetTrainingJob(unknown) = %v, want NotFound", err)
	}
	if _, err := c.train.CancelTrainingJob(t.Context(), &modeldv1.CancelTrainingJobRequest{Id: created.GetJob().GetId()}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("CancelTrainingJob(succeeded) = %v, want FailedPrecondition", err)
	}
}
