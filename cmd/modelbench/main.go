// Command modelbench runs the GPT-2 workloads of ../shared/bench/torch_gpt2.py (the PyTorch CPU
// anchor) in-process on a modeld backend, with random weights, and prints the same JSON lines, so
// that the two can be set side by side (scripts/bench-vs-torch does it):
//
//	go run ./cmd/modelbench                        # everything, GPT-2 124M, fast CPU backend
//	go run ./cmd/modelbench --only decode_b1,decode_b8 --weights bf16
//	go run ./cmd/modelbench --config tiny          # smoke test, a few seconds
//
// Each line is one JSON object with torch_gpt2.py's "bench" names and fields: "env" (versions,
// CPU, GOMAXPROCS, backend, the matmul kernels CPUID chose, the config), then in torch_gpt2.py's
// order "prefill" and "prefill_last" (B=1, T=512; median_ms), "decode_b1" and "decode_b8" (a
// 16-token prompt, 64 greedy tokens through the KV cache after an 8-token warm-up generation;
// ms_per_token is the median step, tok_per_s = B / median), "train_step" (B=4, T=64, forward,
// cross-entropy, backward and AdamW; median_ms) and "peak_rss" (peak_rss_mb, the process's
// ru_maxrss, as torch_gpt2.py reads it; every workload line also has peak_rss_mb_so_far). Like
// torch_gpt2.py, the workloads run in one process, inference first, so their peak RSS does not
// include the optimizer state. generate_nocache is not implemented.
//
// Every workload line also carries self_cpu_util, others_cpu_pct and contended, computed from
// /proc/stat as torch_gpt2.py does: on a shared machine, figures from a contended line mean little.
//
// The CPU backend runs on GOMAXPROCS cores (all of them by default); set GOMAXPROCS to
// torch_gpt2.py's --threads to compare like with like, as scripts/bench-vs-torch does.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/backend/cpu" // registers "cpu"
	"github.com/modeld-dev/modeld/model"
)

// benches are the workloads in torch_gpt2.py's order (without generate_nocache).
var benches = []string{"prefill", "prefill_last", "decode_b1", "decode_b8", "train_step"}

// configs are torch_gpt2.py's presets.
var configs = map[string]model.Config{
	// GPT-2 small: 124,439,808 parameters with the tied lm_head.
	"124m": {VocabSize: 50257, NPositions: 1024, NEmbd: 768, NLayer: 12, NHead: 12, BOSTokenID: 50256, EOSTokenID: 50256},
	// For smoke tests; n_ctx stays 1024 so that the T=512 prefill fits.
	"tiny": {VocabSize: 1024, NPositions: 1024, NEmbd: 128, NLayer: 2, NHead: 4, BOSTokenID: 1023, EOSTokenID: 1023},
}

type options struct {
	backend, config, weights string
	only                     []string
	seed                     uint64
	trainWarmup, trainSteps  int
	prefillWarmup            int
	prefillReps              int
	maxOthersPct             float64
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("modelbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.backend, "backend", "cpu", "backend to run on: "+strings.Join(backend.Names(), ", ")+" or auto")
	fs.StringVar(&o.config, "config", "124m", "model size: 124m or tiny")
	fs.StringVar(&o.weights, "weights", "f32", "dtype of the matmul weights in the decode workloads: f32 or bf16 (needs a backend with backend.BF16Weights)")
	only := fs.String("only", "", "comma-separated subset of: "+strings.Join(benches, ","))
	fs.Uint64Var(&o.seed, "seed", 1234, "seed of the weights and the inputs")
	fs.IntVar(&o.trainWarmup, "train-warmup", 2, "untimed training steps before the timed ones")
	fs.IntVar(&o.trainSteps, "train-steps", 5, "timed training steps")
	fs.IntVar(&o.prefillWarmup, "prefill-warmup", 2, "untimed prefills before the timed ones")
	fs.IntVar(&o.prefillReps, "prefill-reps", 5, "timed prefills")
	fs.Float64Var(&o.maxOthersPct, "max-others-pct", 5, "a workload during which other processes used more than this share of the CPUs is marked \"contended\"")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if _, ok := configs[o.config]; !ok {
		return o, fmt.Errorf("--config %q: want 124m or tiny", o.config)
	}
	if o.weights != "f32" && o.weights != "bf16" {
		return o, fmt.Errorf("--weights %q: want f32 or bf16", o.weights)
	}
	for _, s := range strings.Split(*only, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !slices.Contains(benches, s) {
			return o, fmt.Errorf("--only: unknown workload %q; choose from %s", s, strings.Join(benches, ","))
		}
		o.only = append(o.only, s)
	}
	if len(o.only) == 0 {
		o.only = benches
	}
	if o.trainSteps < 1 || o.prefillReps < 1 || o.trainWarmup < 0 || o.prefillWarmup < 0 {
		return o, errors.New("--train-steps and --prefill-reps must be >= 1, the warm-ups >= 0")
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "modelbench:", err)
		os.Exit(2)
	}
	if err := run(context.Background(), o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "modelbench:", err)
		os.Exit(1)
	}
}

// run runs the selected workloads and writes one JSON line per workload to w.
func run(ctx context.Context, o options, w io.Writer) error {
	b, _, err := backend.Open(o.backend)
	if err != nil {
		return err // names the backend
	}
	defer b.Close()
	if _, ok := b.(backend.BF16Weights); !ok && o.weights == "bf16" {
		return fmt.Errorf("--weights bf16: backend %s does not offer bf16 weights", b.Name())
	}
	cfg := configs[o.config]
	t0 := time.Now()
	m, err := model.New(b, cfg)
	if err != nil {
		return fmt.Errorf("build the %s model: %w", o.config, err)
	}
	defer m.Close()
	if err := m.Init(ctx, o.seed); err != nil {
		return fmt.Errorf("initialise the weights: %w", err)
	}
	enc := json.NewEncoder(w)
	env := obj{
		"bench": "env", "date_utc": time.Now().UTC().Format("2006-01-02T15:04:05Z"),
		"go": runtime.Version(), "goos": runtime.GOOS, "goarch": runtime.GOARCH,
		"cpu": cpuModel(), "cpus_online": runtime.NumCPU(), "gomaxprocs": runtime.GOMAXPROCS(0),
		"backend": b.Name(), "backends_registered": backend.Names(),
		"config": o.config, "vocab_size": cfg.VocabSize, "n_ctx": cfg.NPositions, "n_layer": cfg.NLayer,
		"n_head": cfg.NHead, "n_embd": cfg.NEmbd, "params": cfg.NumParams(),
		"dtype": "float32", "decode_weights": o.weights,
		"seed": o.seed, "model_build_s": round(time.Since(t0).Seconds(), 2), "loadavg": loadavg(),
	}
	if b.Name() == "cpu" {
		mk, bk := cpu.KernelSets()
		env["matmul_kernels"], env["bf16_kernels"] = mk, bk
	}
	if err := enc.Encode(env); err != nil {
		return err
	}
	wall0 := time.Now()
	for i, name := range benches {
		if !slices.Contains(o.only, name) {
			continue
		}
		// Inputs of each workload depend only on the seed and its name, as torch_gpt2.py's.
		rng := rand.New(rand.NewPCG(o.seed*1000+uint64(i)+1, 0))
		before := sampleCPU()
		var res obj
		switch name {
		case "prefill", "prefill_last":
			res, err = benchPrefill(ctx, m, o, rng, name == "prefill")
		case "decode_b1":
			res, err = benchDecode(ctx, m, o, rng, 1)
		case "decode_b8":
			res, err = benchDecode(ctx, m, o, rng, 8)
		case "train_step":
			res, err = benchTrain(ctx, m, o, rng)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		util, others := cpuUsage(before, sampleCPU())
		res["self_cpu_util"], res["others_cpu_pct"] = util, others
		res["contended"] = others > o.maxOthersPct
		res["backend"], res["gomaxprocs"] = b.Name(), runtime.GOMAXPROCS(0)
		res["peak_rss_mb_so_far"] = round(peakRSSMB(), 1)
		if err := enc.Encode(res); err != nil {
			return err
		}
		// The workload's buffers are garbage now; PyTorch frees its tensors when their last
		// reference goes, so collect them before the next workload adds to the peak RSS.
		debug.FreeOSMemory()
	}
	return enc.Encode(obj{"bench": "peak_rss", "peak_rss_mb": round(peakRSSMB(), 1),
		"bench_wall_s": round(time.Since(wall0).Seconds(), 2), "loadavg": loadavg()})
}

// obj is one JSON line; encoding/json writes its keys sorted.
type obj map[string]any

func randomTokens(rng *rand.Rand, vocab, n int) []int32 {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(rng.IntN(vocab))
	}
	return ids
}

// stats returns the median, minimum and maximum of ts, in seconds.
func stats(ts []float64) (med, lo, hi float64) {
	s := slices.Sorted(slices.Values(ts))
	n := len(s)
	med = s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return med, s[0], s[n-1]
}

func mean(ts []float64) float64 {
	var s float64
	for _, t := range ts {
		s += t
	}
	return s / float64(len(ts))
}

// blocksFor returns a block table of consecutive blocks from first, covering n positions.
func blocksFor(first, n, bs int) []int32 {
	t := make([]int32, (n+bs-1)/bs)
	for i := range t {
		t[i] = int32(first + i)
	}
	return t
}

// benchPrefill is torch_gpt2.py's prefill (all logits) and prefill_last (last position only):
// B=1, T=512, one cached forward per repetition.
func benchPrefill(ctx context.Context, m *model.Model, o options, rng *rand.Rand, all bool) (obj, error) {
	const B, T, bs = 1, 512, 16
	inf, err := m.NewInference(T)
	if err != nil {
		return nil, err
	}
	defer inf.Close()
	kv, err := m.NewKVCache(T/bs, bs)
	if err != nil {
		return nil, err
	}
	defer kv.Close()
	seq := []model.Seq{{Tokens: randomTokens(rng, m.Config.VocabSize, T), Blocks: blocksFor(0, T, bs), AllLogits: all}}
	var times []float64
	for i := range o.prefillWarmup + o.prefillReps {
		t0 := time.Now()
		if _, err := inf.Forward(ctx, kv, seq); err != nil {
			return nil, err
		}
		if dt := time.Since(t0).Seconds(); i >= o.prefillWarmup {
			times = append(times, dt)
		}
	}
	med, lo, hi := stats(times)
	name, logits := "prefill", "all positions"
	if !all {
		name, logits = "prefill_last", "last position"
	}
	return obj{
		"bench": name, "batch": B, "seq": T, "logits": logits,
		"warmup": o.prefillWarmup, "reps": o.prefillReps,
		"median_ms": round(med*1e3, 2), "min_ms": round(lo*1e3, 2), "max_ms": round(hi*1e3, 2),
		"tok_per_s": round(B*T/med, 1), "weights": "f32",
	}, nil
}

// generator runs greedy generation with the KV cache for B sequences, as torch_gpt2.py's
// generate_cached: the prompt's forward gives new token 1, each further step feeds one token.
type generator struct {
	inf *model.Inference
	kv  *model.KVCache
	V   int
}

// generate returns the B sequences' new tokens (B, n), the prompt forward's seconds and each of
// the n-1 steps' seconds.
func (g *generator) generate(ctx context.Context, prompts [][]int32, n, maxPos, bs int) ([][]int32, float64, []float64, error) {
	seqs := make([]model.Seq, len(prompts))
	for i, p := range prompts {
		seqs[i] = model.Seq{Tokens: p, Blocks: blocksFor(i*maxPos/bs, maxPos, bs)}
	}
	toks := make([][]int32, len(prompts))
	var prefill float64
	var steps []float64
	for step := range n {
		t0 := time.Now()
		logits, err := g.inf.Forward(ctx, g.kv, seqs)
		if err != nil {
			return nil, 0, nil, err
		}
		for i := range seqs {
			next := argmax(logits[i*g.V : (i+1)*g.V])
			toks[i] = append(toks[i], next)
			seqs[i].Pos += len(seqs[i].Tokens)
			seqs[i].Tokens = []int32{next}
		}
		if dt := time.Since(t0).Seconds(); step == 0 {
			prefill = dt
		} else {
			steps = append(steps, dt)
		}
	}
	return toks, prefill, steps, nil
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

// benchDecode is torch_gpt2.py's decode_b1 and decode_b8: B sequences, a 16-token prompt, 64
// greedy tokens through the KV cache, after a warm-up generation of 8 tokens.
func benchDecode(ctx context.Context, m *model.Model, o options, rng *rand.Rand, B int) (obj, error) {
	const promptLen, newTokens, bs = 16, 64, 16
	maxPos := roundUp(promptLen+newTokens, bs)
	inf, err := m.NewInferenceWith(ctx, B*promptLen, model.InferenceOptions{WeightsBF16: o.weights == "bf16"})
	if err != nil {
		return nil, err
	}
	defer inf.Close()
	kv, err := m.NewKVCache(B*maxPos/bs, bs)
	if err != nil {
		return nil, err
	}
	defer kv.Close()
	prompts := make([][]int32, B)
	for i := range prompts {
		prompts[i] = randomTokens(rng, m.Config.VocabSize, promptLen)
	}
	g := &generator{inf: inf, kv: kv, V: m.Config.VocabSize}
	if _, _, _, err := g.generate(ctx, prompts, 8, maxPos, bs); err != nil { // warm-up
		return nil, err
	}
	t0 := time.Now()
	toks, prefill, steps, err := g.generate(ctx, prompts, newTokens, maxPos, bs)
	if err != nil {
		return nil, err
	}
	total := time.Since(t0).Seconds()
	med, _, _ := stats(steps)
	return obj{
		"bench": "decode_b" + strconv.Itoa(B), "batch": B, "prompt": promptLen,
		"new_tokens": newTokens, "kv_cache": true,
		"ms_per_token": round(med*1e3, 3), "mean_ms_per_token": round(mean(steps)*1e3, 3),
		"tok_per_s":         round(float64(B)/med, 1),
		"prompt_prefill_ms": round(prefill*1e3, 2), "total_ms": round(total*1e3, 2),
		"e2e_tok_per_s": round(float64(B*newTokens)/total, 1),
		"first_tokens":  toks[0][:8], "weights": inf.WeightsDType().String(),
	}, nil
}

func roundUp(n, m int) int { return (n + m - 1) / m * m }

// benchTrain is torch_gpt2.py's train_step: B=4, T=64 random inputs and targets drawn anew each
// step, forward, mean cross-entropy, backward, AdamW (lr 1e-4, betas 0.9/0.999, eps 1e-8, weight
// decay 0.1 on 2-D tensors, no clipping).
func benchTrain(ctx context.Context, m *model.Model, o options, rng *rand.Rand) (obj, error) {
	const B, T = 4, 64
	tr, err := m.NewTrainer(B, T)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	opt := model.Optimizer{LearningRate: 1e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.1}
	var times, losses []float64
	for step := range o.trainWarmup + o.trainSteps {
		x := randomTokens(rng, m.Config.VocabSize, B*T)
		y := randomTokens(rng, m.Config.VocabSize, B*T)
		t0 := time.Now()
		tr.ZeroGrad()
		loss, err := tr.Forward(ctx, x, y)
		if err != nil {
			return nil, err
		}
		if err := tr.Backward(ctx, 1); err != nil {
			return nil, err
		}
		if _, err := tr.Step(ctx, opt); err != nil {
			return nil, err
		}
		dt := time.Since(t0).Seconds()
		losses = append(losses, loss)
		if step >= o.trainWarmup {
			times = append(times, dt)
		}
	}
	med, lo, hi := stats(times)
	return obj{
		"bench": "train_step", "batch": B, "seq": T,
		"warmup": o.trainWarmup, "steps": o.trainSteps,
		"median_ms": round(med*1e3, 2), "min_ms": round(lo*1e3, 2), "max_ms": round(hi*1e3, 2),
		"tok_per_s":  round(B*T/med, 1),
		"loss_first": round(losses[0], 4), "loss_last": round(losses[len(losses)-1], 4),
		"optimizer": "AdamW lr=1e-4 wd=0.1 (2-D weights incl. tied embedding; not biases/LN)",
	}, nil
}

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

// peakRSSMB is the process's peak resident set size (ru_maxrss, KiB on Linux) in MB of 2^20
// bytes, as torch_gpt2.py's peak_rss_mb.
func peakRSSMB() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN()
	}
	return float64(ru.Maxrss) / 1024
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for line := range strings.Lines(string(data)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func loadavg() []string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return nil
	}
	f := strings.Fields(string(data))
	return f[:min(3, len(f))]
}

// cpuSample is torch_gpt2.py's cpu_sample: wall time, the machine's busy and total CPU seconds
// (from /proc/stat) and this process's CPU seconds.
type cpuSample struct {
	wall             time.Time
	busy, total, own float64
}

// clkTck is USER_HZ, the unit of /proc/stat, which is 100 on Linux.
const clkTck = 100

func sampleCPU() cpuSample {
	s := cpuSample{wall: time.Now()}
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		f := strings.Fields(line)
		var vals [8]float64
		for i := 1; i < len(f) && i <= 8; i++ {
			vals[i-1], _ = strconv.ParseFloat(f[i], 64)
		}
		for _, v := range vals {
			s.total += v / clkTck
		}
		s.busy = s.total - (vals[3]+vals[4])/clkTck // minus idle and iowait
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.own = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	return s
}

// cpuUsage is torch_gpt2.py's cpu_usage: the cores this process kept busy on average, and the
// share (%) of the machine's CPU time that other processes used, between a and b.
func cpuUsage(a, b cpuSample) (selfUtil, othersPct float64) {
	wall := b.wall.Sub(a.wall).Seconds()
	total := b.total - a.total
	mine := b.own - a.own
	others := max(0, (b.busy-a.busy)-mine)
	if wall > 0 {
		selfUtil = mine / wall
	}
	if total > 0 {
		othersPct = 100 * others / total
	}
	return round(selfUtil, 2), round(othersPct, 1)
}
