package model_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/backend/backendtest"
	"github.com/modeld-dev/modeld/backend/cpu"
	_ "github.com/modeld-dev/modeld/backend/cuda" // registers "cuda"
	"github.com/modeld-dev/modeld/model"
)

// The oracle is ../testdata/gpt2-tiny (see its README.md): values from llm.c's fp32 CPU
// reference, cross-checked against PyTorch. Tolerances are the README's.
const oracle = "../testdata/gpt2-tiny"

// backends are the backends every oracle test runs on: the CPU variants, where "cpu+flash"
// runs the trainer's backend.FlashAttention path through backendtest.FlashShim, and "cuda",
// whose subtests skip with the reason on a machine without a usable GPU.
var backends = []struct {
	name string
	open func() backend.Backend
}{
	{"cpu", func() backend.Backend { return cpu.New() }},
	{"cpu-reference", func() backend.Backend { return cpu.NewReference() }},
	{"cpu+flash", func() backend.Backend { return backendtest.FlashShim(cpu.New()) }},
	{"cuda", openCUDA},
}

// cudaErr is why the cuda backend does not open on this machine; nil where it does.
var cudaErr error

// openCUDA opens the registry's "cuda" (fp32 GEMMs unless MODELD_CUDA_TF32=1, which these
// tolerances do not allow), or returns nil and sets cudaErr where it is unavailable, and
// loadModel then skips the subtest.
func openCUDA() backend.Backend {
	b, _, err := backend.Open("cuda")
	if err != nil {
		cudaErr = err
		return nil
	}
	return b
}

func readBin(t *testing.T, rel string) []float32 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(oracle, rel))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
	}
	return out
}

func readJSON(t *testing.T, rel string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(oracle, rel))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

type case1 struct {
	B, T            int
	Inputs, Targets [][]int32
}

func loadCase1(t *testing.T) (inputs, targets []int32, c case1) {
	var in struct{ Case1 case1 }
	readJSON(t, "refs/inputs.json", &in)
	c = in.Case1
	for b := range c.B {
		inputs = append(inputs, c.Inputs[b]...)
		targets = append(targets, c.Targets[b]...)
	}
	return inputs, targets, c
}

func loadModel(t *testing.T, b backend.Backend, dir string) *model.Model {
	t.Helper()
	if b == nil {
		t.Skipf("backend unavailable: %v", cudaErr)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("closing %s: %v", b.Name(), err)
		}
	})
	m, err := model.Load(t.Context(), b, os.DirFS(filepath.Join(oracle, dir)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// tensorRef is a tensor of a flat reference file (grads.json, params_step*.json).
type tensorRef struct {
	Name   string
	Shape  []int
	Offset int `json:"offset_elements"`
	Numel  int
}

type refSet struct {
	Tensors  []tensorRef
	Unstable struct {
		Indices map[string][]int `json:"flat_indices_by_tensor"`
	} `json:"adam_unstable_elements"`
}

// within reports whether |got-want| <= atol + rtol*|want|, with NaN only matching NaN.
func within(got, want float32, atol, rtol float64) bool {
	if math.IsNaN(float64(got)) || math.IsNaN(float64(want)) {
		return math.IsNaN(float64(got)) && math.IsNaN(float64(want))
	}
	return math.Abs(float64(got)-float64(want)) <= atol+rtol*math.Abs(float64(want))
}

// compare fails the test at the first few elements outside the tolerance.
func compare(t *testing.T, what string, got, want []float32, atol, rtol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	bad := 0
	for i := range got {
		if !within(got[i], want[i], atol, rtol) {
			if bad < 5 {
				t.Errorf("%s[%d] = %v, want %v (atol %g, rtol %g)", what, i, got[i], want[i], atol, rtol)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values outside the tolerance", what, bad, len(got))
	}
}

func TestOracleForward(t *testing.T) {
	inputs, targets, c := loadCase1(t)
	var summary struct {
		MeanLoss        float64     `json:"mean_loss"`
		PerPositionLoss [][]float64 `json:"per_position_loss"`
	}
	readJSON(t, "refs/case1/summary.json", &summary)
	for _, tc := range []struct{ dir, logits string }{
		{"hf", "refs/case1/logits.bin"},
		{"hf-bf16", "refs/case1/logits_bf16_weights.bin"},
	} {
		for _, be := range backends {
			t.Run("weights="+tc.dir+"/backend="+be.name, func(t *testing.T) {
				m := loadModel(t, be.open(), tc.dir)
				tr, err := m.NewTrainer(c.B, c.T)
				if err != nil {
					t.Fatal(err)
				}
				loss, err := tr.Forward(t.Context(), inputs, targets)
				if err != nil {
					t.Fatal(err)
				}
				logits := make([]float32, c.B*c.T*m.Config.VocabSize)
				if err := tr.Logits(t.Context(), logits); err != nil {
					t.Fatal(err)
				}
				compare(t, "logits", logits, readBin(t, tc.logits), 5e-5, 0)
				if tc.dir != "hf" {
					return
				}
				if math.Abs(loss-summary.MeanLoss) > 1e-5*summary.MeanLoss {
					t.Errorf("mean loss = %v, want %v", loss, summary.MeanLoss)
				}
				losses := make([]float32, c.B*c.T)
				tr.Losses(losses)
				var want []float32
				for _, row := range summary.PerPositionLoss {
					for _, l := range row {
						want = append(want, float32(l))
					}
				}
				compare(t, "per-position loss", losses, want, 0, 1e-5)
			})
		}
	}
}

// hfParams converts the model's buffer-layout floats to the flat checkpoint layout of the
// reference files (tensors concatenated in safetensors order, Conv1D weights (in, out)).
func hfParams(m *model.Model, buf []float32) []float32 {
	data, _ := m.HFTensors(buf)
	var flat []float32
	for _, d := range data {
		flat = append(flat, d...)
	}
	return flat
}

func TestOracleGradients(t *testing.T) {
	inputs, targets, c := loadCase1(t)
	var ref refSet
	readJSON(t, "refs/case1/grads.json", &ref)
	want := readBin(t, "refs/case1/grads.bin")
	for _, be := range backends {
		t.Run("backend="+be.name, func(t *testing.T) {
			m := loadModel(t, be.open(), "hf")
			tr, err := m.NewTrainer(c.B, c.T)
			if err != nil {
				t.Fatal(err)
			}
			tr.ZeroGrad()
			if _, err := tr.Forward(t.Context(), inputs, targets); err != nil {
				t.Fatal(err)
			}
			if err := tr.Backward(t.Context(), 1); err != nil {
				t.Fatal(err)
			}
			buf, err := tr.Grads(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			got := hfParams(m, buf)
			if names := m.TensorNames(); len(names) != len(ref.Tensors) {
				t.Fatalf("%d tensors, reference has %d", len(names), len(ref.Tensors))
			}
			for i, tensor := range ref.Tensors {
				if m.TensorNames()[i] != tensor.Name {
					t.Fatalf("tensor %d is %s, reference has %s", i, m.TensorNames()[i], tensor.Name)
				}
				w := want[tensor.Offset : tensor.Offset+tensor.Numel]
				var maxAbs float64
				for _, v := range w {
					maxAbs = max(maxAbs, math.Abs(float64(v)))
				}
				compare(t, tensor.Name, got[tensor.Offset:tensor.Offset+tensor.Numel], w, 1e-5*maxAbs+1e-8, 0)
			}
		})
	}
}

func TestOracleAdamW(t *testing.T) {
	inputs, targets, c := loadCase1(t)
	var summary struct {
		Train map[string]struct {
			LossBeforeStep []float64 `json:"loss_before_step"`
		} `json:"train"`
	}
	readJSON(t, "refs/case1/summary.json", &summary)
	opt := model.Optimizer{LearningRate: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.1}
	for _, be := range backends {
		t.Run("backend="+be.name, func(t *testing.T) {
			m := loadModel(t, be.open(), "hf")
			tr, err := m.NewTrainer(c.B, c.T)
			if err != nil {
				t.Fatal(err)
			}
			for step := 1; step <= 5; step++ {
				tr.ZeroGrad()
				loss, err := tr.Forward(t.Context(), inputs, targets)
				if err != nil {
					t.Fatal(err)
				}
				if losses := summary.Train["wd0.1_2d"].LossBeforeStep; len(losses) == 5 {
					if want := losses[step-1]; math.Abs(loss-want) > 1e-5*want {
						t.Errorf("loss before step %d = %v, want %v", step, loss, want)
					}
				} else {
					t.Fatalf("summary.json has no adamw.wd0.1_2d.loss_before_step")
				}
				if err := tr.Backward(t.Context(), 1); err != nil {
					t.Fatal(err)
				}
				if _, err := tr.Step(t.Context(), opt); err != nil {
					t.Fatal(err)
				}
				if step != 1 && step != 5 {
					continue
				}
				buf, err := m.Params(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				got := hfParams(m, buf)
				name := map[int]string{1: "params_step1", 5: "params_step5"}[step]
				var ref refSet
				readJSON(t, "refs/case1/adamw_wd0.1_2d/"+name+".json", &ref)
				want := readBin(t, "refs/case1/adamw_wd0.1_2d/"+name+".bin")
				tol := map[int]float64{1: 1e-6, 5: 2e-5}[step]
				loose := 2 * opt.LearningRate * float64(step)
				for _, tensor := range ref.Tensors {
					unstable := map[int]bool{}
					for _, i := range ref.Unstable.Indices[tensor.Name] {
						unstable[i] = true
					}
					g := got[tensor.Offset : tensor.Offset+tensor.Numel]
					w := want[tensor.Offset : tensor.Offset+tensor.Numel]
					bad := 0
					for i := range g {
						atol := tol
						if unstable[i] {
							atol = loose
						}
						if !within(g[i], w[i], atol, 0) {
							if bad < 3 {
								t.Errorf("step %d: %s[%d] = %v, want %v (unstable %v)", step, tensor.Name, i, g[i], w[i], unstable[i])
							}
							bad++
						}
					}
				}
			}
		})
	}
}

// argmax returns the first index of the largest value, as torch.argmax.
func argmax(x []float32) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return int32(best)
}

func TestOracleGreedyKVCache(t *testing.T) {
	var g struct {
		Gen1 struct {
			Prompt    []int32
			NewTokens []int32 `json:"new_tokens"`
		}
	}
	readJSON(t, "refs/greedy/greedy.json", &g)
	stepLogits := readBin(t, "refs/greedy/gen1_step_logits.bin")
	for _, be := range backends {
		for _, blockSize := range []int{1, 4, 16} {
			t.Run("backend="+be.name+"/block="+strconv.Itoa(blockSize), func(t *testing.T) {
				m := loadModel(t, be.open(), "hf")
				V := m.Config.VocabSize
				kv, err := m.NewKVCache(64/blockSize+8, blockSize)
				if err != nil {
					t.Fatal(err)
				}
				inf, err := m.NewInference(64)
				if err != nil {
					t.Fatal(err)
				}
				// Blocks in a scrambled order, so the test sees a wrong block lookup.
				blocks := make([]int32, kv.NumBlocks)
				for i := range blocks {
					blocks[i] = int32((i*5 + 3) % kv.NumBlocks)
				}
				if gcd(5, kv.NumBlocks) != 1 {
					t.Fatalf("block permutation is not one: %d blocks", kv.NumBlocks)
				}
				seq := model.Seq{Tokens: g.Gen1.Prompt, Blocks: blocks}
				var got []int32
				for step := range g.Gen1.NewTokens {
					logits, err := inf.Forward(t.Context(), kv, []model.Seq{seq})
					if err != nil {
						t.Fatal(err)
					}
					compare(t, "step "+strconv.Itoa(step)+" logits", logits, stepLogits[step*V:(step+1)*V], 5e-5, 0)
					next := argmax(logits)
					got = append(got, next)
					seq.Pos += len(seq.Tokens)
					seq.Tokens = []int32{next}
				}
				if !slices.Equal(got, g.Gen1.NewTokens) {
					t.Errorf("greedy tokens = %v, want %v", got, g.Gen1.NewTokens)
				}
			})
		}
	}
}

// TestKVCacheBatchEqualsFullForward runs sequences of different lengths through one batched
// step after another (prefills and decodes mixed) and checks every logit row against a full
// re-forward of that sequence's tokens so far.
func TestKVCacheBatchEqualsFullForward(t *testing.T) {
	ctx := t.Context()
	m := loadModel(t, cpu.New(), "hf")
	V := m.Config.VocabSize
	const blockSize = 4
	kv, err := m.NewKVCache(48, blockSize)
	if err != nil {
		t.Fatal(err)
	}
	inf, err := m.NewInference(64)
	if err != nil {
		t.Fatal(err)
	}
	prompts := [][]int32{{499, 17, 42, 311, 7}, {3}, {10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110}}
	seqs := make([]model.Seq, len(prompts))
	histories := make([][]int32, len(prompts))
	next := int32(0)
	for i, p := range prompts {
		for j := range 16 {
			// Sequence i owns blocks i, i+3, i+6, ...: interleaved in memory.
			seqs[i].Blocks = append(seqs[i].Blocks, int32(i+3*j))
		}
		seqs[i].Tokens, seqs[i].AllLogits = p, true
	}
	for step := range 6 {
		logits, err := inf.Forward(ctx, kv, seqs)
		if err != nil {
			t.Fatal(err)
		}
		row := 0
		for i := range seqs {
			histories[i] = append(histories[i], seqs[i].Tokens...)
			full := fullForwardLogits(t, ctx, m, histories[i])
			n := len(seqs[i].Tokens)
			first := len(histories[i]) - n
			compare(t, "step "+strconv.Itoa(step)+" seq "+strconv.Itoa(i), logits[row*V:(row+n)*V], full[first*V:(first+n)*V], 2e-5, 1e-5)
			row += n
			seqs[i].Pos += n
			next = (next*31 + 7) % int32(V)
			seqs[i].Tokens, seqs[i].AllLogits = []int32{next}, false
		}
	}
}

// fullForwardLogits runs the training forward over tokens (B=1) and returns its logits (T, V).
func fullForwardLogits(t *testing.T, ctx context.Context, m *model.Model, tokens []int32) []float32 {
	t.Helper()
	tr, err := m.NewTrainer(1, len(tokens))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	targets := make([]int32, len(tokens))
	if _, err := tr.Forward(ctx, tokens, targets); err != nil {
		t.Fatal(err)
	}
	logits := make([]float32, len(tokens)*m.Config.VocabSize)
	if err := tr.Logits(ctx, logits); err != nil {
		t.Fatal(err)
	}
	return logits
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
