package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/modeld-dev/modeld/backend/cpu"
	"github.com/modeld-dev/modeld/internal/engine"
	"github.com/modeld-dev/modeld/model"
	"github.com/modeld-dev/modeld/sampling"
	"github.com/modeld-dev/modeld/tokenizer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The oracle model of ../../testdata/gpt2-tiny (see its README.md), with its 500-token BPE.
const oracle = "../../testdata/gpt2-tiny"

func newEngine(t *testing.T, cfg engine.Config) *engine.Engine {
	t.Helper()
	fsys := os.DirFS(filepath.Join(oracle, "hf"))
	m, err := model.Load(t.Context(), cpu.New(), fsys)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(fsys)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(m, tok, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// output is what a stream yielded for one sequence.
type output struct {
	tokens []int32
	text   string
	chunks []string
	finish *engine.Finish
	prompt []float32
}

// collect reads a stream to its end.
func collect(t *testing.T, ctx context.Context, s *engine.Stream, n int) []output {
	t.Helper()
	out := make([]output, n)
	for {
		chunks, err := s.Recv(ctx)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		for _, c := range chunks {
			o := &out[c.Index]
			if o.finish != nil {
				t.Errorf("sequence %d: chunk after the finish", c.Index)
			}
			for _, r := range c.Tokens {
				o.tokens = append(o.tokens, r.Token)
			}
			if !utf8.ValidString(c.Text) {
				t.Errorf("chunk text %q is not valid UTF-8", c.Text)
			}
			o.text += c.Text
			o.chunks = append(o.chunks, c.Text)
			if c.PromptLogprobs != nil {
				o.prompt = c.PromptLogprobs
			}
			o.finish = c.Finish
		}
	}
}

func generate(t *testing.T, e *engine.Engine, r engine.Request) []output {
	t.Helper()
	s, err := e.Submit(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	n := max(r.N, 1)
	out := collect(t, t.Context(), s, n)
	for i, o := range out {
		if o.finish == nil {
			t.Fatalf("sequence %d has no finish", i)
		}
	}
	return out
}

func greedy() sampling.Params {
	p := sampling.DefaultParams()
	p.Temperature = 0
	return p
}

func seeded(seed uint64) sampling.Params {
	p := sampling.DefaultParams()
	p.Seed = &seed
	return p
}

func TestGreedyMatchesOracle(t *testing.T) {
	var g struct {
		Gen1 struct {
			Prompt    []int32
			NewTokens []int32 `json:"new_tokens"`
		}
	}
	data, err := os.ReadFile(filepath.Join(oracle, "refs/greedy/greedy.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	// A budget of 3 tokens a step prefills the 5-token prompt in two chunks.
	for _, budget := range []int{512, 3} {
		e := newEngine(t, engine.Config{MaxBatchTokens: budget, MaxRunning: 2})
		out := generate(t, e, engine.Request{Prompt: g.Gen1.Prompt, MaxNewTokens: len(g.Gen1.NewTokens), Sampling: greedy(), IgnoreEOS: true})
		if diff := cmp.Diff(g.Gen1.NewTokens, out[0].tokens); diff != "" {
			t.Errorf("budget %d: greedy tokens (-oracle +got):\n%s", budget, diff)
		}
		if f := out[0].finish; f.Reason != engine.FinishLength || f.CompletionTokens != 20 || f.PromptTokens != 5 {
			t.Errorf("finish = %+v, want length with 5 prompt and 20 completion tokens", f)
		}
	}
}

func TestPromptLogprobsMatchOracle(t *testing.T) {
	var in struct {
		Case1 struct{ Stream []int32 }
	}
	var summary struct {
		PerPositionLoss [][]float64 `json:"per_position_loss"`
	}
	for name, v := range map[string]any{"refs/inputs.json": &in, "refs/case1/summary.json": &summary} {
		data, err := os.ReadFile(filepath.Join(oracle, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatal(err)
		}
	}
	prompt := in.Case1.Stream[:17] // row 0 of case1: 16 inputs and the last target
	for _, budget := range []int{512, 5} {
		e := newEngine(t, engine.Config{MaxBatchTokens: budget, MaxRunning: 4})
		out := generate(t, e, engine.Request{Prompt: prompt, MaxNewTokens: 1, Sampling: greedy(), PromptLogprobs: true})
		if len(out[0].prompt) != 16 {
			t.Fatalf("budget %d: %d prompt logprobs, want 16", budget, len(out[0].prompt))
		}
		for i, lp := range out[0].prompt {
			if want := -summary.PerPositionLoss[0][i]; math.Abs(float64(lp)-want) > 5e-5 {
				t.Errorf("budget %d: prompt logprob %d = %v, want %v", budget, i, lp, want)
			}
		}
	}
}

func TestStreamedTextEqualsDecode(t *testing.T) {
	e := newEngine(t, engine.Config{})
	tok := e.Tokenizer()
	prompt := tok.Encode("The quick brown fox")
	out := generate(t, e, engine.Request{Prompt: prompt, MaxNewTokens: 40, Sampling: seeded(7), N: 3})
	for i, o := range out {
		// The text a fresh streaming decoder makes of the same tokens (EOS has no text).
		gen := o.tokens
		if o.finish.Reason == engine.FinishStop {
			gen = gen[:len(gen)-1]
		}
		dec := tok.NewStreamDecoder()
		var want string
		for _, id := range gen {
			s, err := dec.Add(id)
			if err != nil {
				t.Fatal(err)
			}
			want += s
		}
		want += dec.Flush()
		if b, _ := tok.DecodeBytes(gen); utf8.Valid(b) && string(b) != want {
			t.Fatalf("stream decoder %q differs from Decode %q", want, b)
		}
		if o.text != want {
			t.Errorf("sequence %d: streamed text %q, decoded %q", i, o.text, want)
		}
	}
}

func TestSeededIsReproducibleUnderLoad(t *testing.T) {
	e := newEngine(t, engine.Config{MaxBatchTokens: 64, MaxRunning: 16})
	prompt := e.Tokenizer().Encode("Once upon a time")
	req := engine.Request{Prompt: prompt, MaxNewTokens: 24, Sampling: seeded(42), IgnoreEOS: true}
	alone := generate(t, e, req)[0].tokens

	var wg sync.WaitGroup
	results := make([][]int32, 8)
	errs := make([]error, 8)
	for i := range 8 {
		wg.Go(func() {
			r := req
			if i > 0 { // seven others with other prompts and seeds
				r = engine.Request{Prompt: e.Tokenizer().Encode(strings.Repeat("abc ", i)), MaxNewTokens: 30, Sampling: seeded(uint64(i))}
			}
			s, err := e.Submit(t.Context(), r)
			if err != nil {
				errs[i] = err
				return
			}
			for {
				chunks, err := s.Recv(t.Context())
				if err == io.EOF {
					return
				}
				if err != nil {
					errs[i] = err
					return
				}
				for _, c := range chunks {
					for _, tr := range c.Tokens {
						results[i] = append(results[i], tr.Token)
					}
				}
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if diff := cmp.Diff(alone, results[0]); diff != "" {
		t.Errorf("seeded tokens alone vs beside 7 others (-alone +batched):\n%s", diff)
	}
}

func TestNSharesPrefillAndMatchesSeparateRequests(t *testing.T) {
	e := newEngine(t, engine.Config{})
	prompt := e.Tokenizer().Encode("In the beginning was the word")
	together := generate(t, e, engine.Request{Prompt: prompt, MaxNewTokens: 16, Sampling: seeded(100), N: 3, IgnoreEOS: true})
	for i := range 3 {
		alone := generate(t, e, engine.Request{Prompt: prompt, MaxNewTokens: 16, Sampling: seeded(100 + uint64(i)), IgnoreEOS: true})
		if diff := cmp.Diff(alone[0].tokens, together[i].tokens); diff != "" {
			t.Errorf("sequence %d of n=3 vs alone with seed+%d (-alone +n3):\n%s", i, i, diff)
		}
	}
	if slices.Equal(together[0].tokens, together[1].tokens) {
		t.Errorf("sequences 0 and 1 drew the same tokens: %v", together[0].tokens)
	}
}

func TestStopStringSpanningTokens(t *testing.T) {
	e := newEngine(t, engine.Config{})
	tok := e.Tokenizer()
	prompt := tok.Encode("Hello there")
	base := generate(t, e, engine.Request{Prompt: prompt, MaxNewTokens: 40, Sampling: seeded(3), IgnoreEOS: true})[0]
	// Pick a stop string that starts inside one token's text and ends inside a later one.
	var bounds []int
	n := 0
	for _, id := range base.tokens {
		b, _ := tok.TokenBytes(id)
		n += len(b)
		bounds = append(bounds, n)
	}
	text := base.text
	if len(bounds) < 6 || !utf8.ValidString(text) {
		t.Fatalf("generated text too short or not UTF-8: %q", text)
	}
	start, end := bounds[2]-1, bounds[4]+1
	for start > 0 && !utf8.RuneStart(text[start]) {
		start--
	}
	for end < len(text) && !utf8.RuneStart(text[end]) {
		end++
	}
	stop := text[start:end]
	want := text[:strings.Index(text, stop)]
	got := generate(t, e, engine.Request{Prompt: prompt, MaxNewTokens: 40, Sampling: seeded(3), IgnoreEOS: true, Stop: []string{stop, "\x00never"}})[0]
	if got.text != want {
		t.Errorf("text with stop %q = %q, want %q", stop, got.text, want)
	}
	if got.finish.Reason != engine.FinishStop || got.finish.StopReason != stop {
		t.Errorf("finish = %+v, want stop with stop_reason %q", got.finish, stop)
	}
	for _, c := range got.chunks {
		if strings.Contains(c, stop) {
			t.Errorf("a chunk holds the stop string: %q", c)
		}
	}
}

func TestStopTokenAndMinNewTokens(t *testing.T) {
	e := newEngine(t, engine.Config{})
	prompt := e.Tokenizer().Encode("a b c")
	base := generate(t, e, engine.Request{Prompt: prompt, MaxNewTokens: 10, Sampling: greedy(), IgnoreEOS: true})[0]
	stopID := base.tokens[3]
	first := slices.Index(base.tokens, stopID)
	got := generate(t, e, engine.Request{Prompt: prompt, MaxNewTokens: 10, Sampling: greedy(), IgnoreEOS: true, StopTokenIDs: []int32{stopID}})[0]
	if diff := cmp.Diff(base.tokens[:first+1], got.tokens); diff != "" {
		t.Errorf("tokens with stop token %d (-want +got):\n%s", stopID, diff)
	}
	if got.finish.StopReason != itoa(stopID) {
		t.Errorf("stop_reason = %q, want %q", got.finish.StopReason, itoa(stopID))
	}
	// min_new_tokens bans the stop token until reached.
	banned := generate(t, e, engine.Request{Prompt: prompt, MaxNewTokens: 10, MinNewTokens: 10, Sampling: greedy(), IgnoreEOS: true, StopTokenIDs: []int32{stopID}})[0]
	if len(banned.tokens) != 10 || slices.Contains(banned.tokens, stopID) {
		t.Errorf("with min_new_tokens 10: tokens %v, want 10 without %d", banned.tokens, stopID)
	}
}

func itoa(id int32) string {
	b, _ := json.Marshal(id)
	return string(b)
}

func TestCancelFreesTheBatch(t *testing.T) {
	// A model with a long context, so that a 1000-token generation runs long after the
	// cancellation (about a millisecond a token).
	m, err := model.New(cpu.New(), model.Config{VocabSize: 500, NPositions: 1024, NEmbd: 128, NLayer: 4, NHead: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Init(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(m, nil, engine.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithCancel(t.Context())
	s, err := e.Submit(ctx, engine.Request{Prompt: []int32{1, 2, 3}, MaxNewTokens: 1000, Sampling: seeded(1), IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	// The stream stops: Recv reports the cancellation, or the engine's last chunk says it.
	var last *engine.Finish
	for {
		chunks, err := s.Recv(t.Context())
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Recv after cancel: %v", err)
		}
		for _, c := range chunks {
			if c.Finish != nil {
				last = c.Finish
			}
		}
	}
	if last == nil || last.Reason != engine.FinishCancelled || last.CompletionTokens >= 1000 {
		t.Fatalf("stream ended with finish %+v, want cancelled before 1000 tokens", last)
	}
	if st := e.Stats(); st.KVBlocksUsed != 0 || st.Running != 0 {
		t.Errorf("stats after the cancelled stream ended: %+v, want no blocks used", st)
	}
	// The engine goes on serving.
	s, err = e.Submit(t.Context(), engine.Request{Prompt: []int32{4}, MaxNewTokens: 2, Sampling: greedy(), IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	if out := collect(t, t.Context(), s, 1); len(out[0].tokens) != 2 {
		t.Fatalf("tokens after cancel: %v", out[0].tokens)
	}
}

func TestSubmitErrors(t *testing.T) {
	e := newEngine(t, engine.Config{MaxN: 4, KVCacheBytes: model.Config{NLayer: 2, NEmbd: 64}.KVCacheBytes(8, 16)})
	ok := engine.Request{Prompt: []int32{1, 2}, MaxNewTokens: 4, Sampling: greedy()}
	for _, tc := range []struct {
		name string
		edit func(r *engine.Request)
		want error
	}{
		{"empty_prompt", func(r *engine.Request) { r.Prompt = nil }, engine.ErrInvalid},
		{"unknown_token", func(r *engine.Request) { r.Prompt = []int32{1, 500} }, engine.ErrInvalid},
		{"beyond_context", func(r *engine.Request) { r.MaxNewTokens = 63 }, engine.ErrInvalid},
		{"zero_max_new", func(r *engine.Request) { r.MaxNewTokens = 0 }, engine.ErrInvalid},
		{"n_above_limit", func(r *engine.Request) { r.N = 5 }, engine.ErrInvalid},
		{"top_p", func(r *engine.Request) { r.Sampling.TopP = 1.5 }, engine.ErrInvalid},
		{"negative_temperature", func(r *engine.Request) { r.Sampling.Temperature = -1 }, engine.ErrInvalid},
		{"empty_stop", func(r *engine.Request) { r.Stop = []string{""} }, engine.ErrInvalid},
		{"kv_cache", func(r *engine.Request) { r.N, r.MaxNewTokens = 4, 40 }, engine.ErrOverloaded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			tc.edit(&r)
			_, err := e.Submit(t.Context(), r)
			if !errors.Is(err, tc.want) {
				t.Errorf("Submit error = %v, want %v", err, tc.want)
			}
		})
	}
}
