package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"math"
	"runtime"
	"slices"
	"testing"
	"time"
)

// TestRunTiny runs every workload on the tiny config and checks that each line has the fields
// that torch_gpt2.py's has and scripts/bench-vs-torch reads, and that their values agree with
// one another.
func TestRunTiny(t *testing.T) {
	for _, weights := range []string{"f32", "bf16"} {
		t.Run("weights="+weights, func(t *testing.T) {
			o, err := parseFlags([]string{"--config", "tiny", "--weights", weights, "--train-warmup", "1", "--train-steps", "1",
				"--prefill-warmup", "0", "--prefill-reps", "1"}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := run(t.Context(), o, &out); err != nil {
				t.Fatal(err)
			}
			want := map[string][]string{
				"env":          {"backend", "matmul_kernels", "gomaxprocs", "params"},
				"prefill":      {"median_ms", "peak_rss_mb_so_far", "contended"},
				"prefill_last": {"median_ms"},
				"decode_b1":    {"ms_per_token", "tok_per_s", "first_tokens", "weights"},
				"decode_b8":    {"ms_per_token", "tok_per_s", "weights"},
				"train_step":   {"median_ms", "loss_first", "loss_last"},
				"peak_rss":     {"peak_rss_mb"},
			}
			var seen []string
			sc := bufio.NewScanner(&out)
			for sc.Scan() {
				var line map[string]any
				if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
					t.Fatalf("%q: %v", sc.Text(), err)
				}
				name, _ := line["bench"].(string)
				seen = append(seen, name)
				for _, f := range want[name] {
					if _, ok := line[f]; !ok {
						t.Errorf("%s line has no %q: %s", name, f, sc.Text())
					}
				}
				if name == "decode_b1" && line["weights"] != weights {
					t.Errorf("decode_b1 ran with %v weights, want %s", line["weights"], weights)
				}
				checkValues(t, name, line)
			}
			wantOrder := []string{"env", "prefill", "prefill_last", "decode_b1", "decode_b8", "train_step", "peak_rss"}
			if !slices.Equal(seen, wantOrder) {
				t.Errorf("lines %v, want %v", seen, wantOrder)
			}
		})
	}
}

// checkValues checks one line's figures against each other and against what the tiny config
// implies.
func checkValues(t *testing.T, name string, line map[string]any) {
	t.Helper()
	num := func(k string) float64 {
		v, ok := line[k].(float64)
		if !ok {
			t.Errorf("%s: %q = %v, want a number", name, k, line[k])
		}
		return v
	}
	// rate reports whether got, printed with 1 decimal, is n / (ms/1000) for the time ms that was
	// printed rounded to half a unit of ±halfULP.
	rate := func(got, n, ms, halfULP float64) bool {
		lo, hi := n/((ms+halfULP)/1e3), n/(max(ms-halfULP, 1e-9)/1e3)
		return got >= lo-0.05 && got <= hi+0.05
	}
	switch name {
	case "env":
		cfg := configs["tiny"]
		if got := num("params"); got != float64(cfg.NumParams()) {
			t.Errorf("env: params = %v, want %d", got, cfg.NumParams())
		}
		if got := num("gomaxprocs"); got != float64(runtime.GOMAXPROCS(0)) {
			t.Errorf("env: gomaxprocs = %v, want %d", got, runtime.GOMAXPROCS(0))
		}
	case "prefill", "prefill_last", "train_step":
		med, lo, hi := num("median_ms"), num("min_ms"), num("max_ms")
		if med <= 0 || lo > med || med > hi {
			t.Errorf("%s: min %v, median %v, max %v ms: want 0 < min <= median <= max", name, lo, med, hi)
		}
		tokens := num("batch") * num("seq")
		if got := num("tok_per_s"); !rate(got, tokens, med, 0.005) {
			t.Errorf("%s: tok_per_s = %v, want %v tokens / %v ms", name, got, tokens, med)
		}
		if name == "train_step" {
			// Random init: the logits are close to zero, so the loss is close to ln(vocab).
			if got, want := num("loss_first"), math.Log(1024); math.Abs(got-want) > 0.1 {
				t.Errorf("train_step: loss_first = %v, want ln(1024) = %.3f ± 0.1", got, want)
			}
		}
	case "decode_b1", "decode_b8":
		ms, batch := num("ms_per_token"), num("batch")
		if ms <= 0 {
			t.Errorf("%s: ms_per_token = %v, want > 0", name, ms)
		}
		if got := num("tok_per_s"); !rate(got, batch, ms, 0.0005) {
			t.Errorf("%s: tok_per_s = %v, want batch %v / %v ms", name, got, batch, ms)
		}
		if got, n, total := num("e2e_tok_per_s"), batch*num("new_tokens"), num("total_ms"); !rate(got, n, total, 0.005) {
			t.Errorf("%s: e2e_tok_per_s = %v, want %v tokens / %v ms", name, got, n, total)
		}
		toks, _ := line["first_tokens"].([]any)
		if len(toks) != 8 {
			t.Errorf("%s: first_tokens = %v, want 8 tokens", name, line["first_tokens"])
		}
		for _, tok := range toks {
			if id, ok := tok.(float64); !ok || id < 0 || id >= 1024 || id != math.Trunc(id) {
				t.Errorf("%s: first_tokens = %v, want token ids in [0, 1024)", name, toks)
				break
			}
		}
	case "peak_rss":
		if got := num("peak_rss_mb"); got <= 0 {
			t.Errorf("peak_rss: peak_rss_mb = %v, want > 0", got)
		}
	}
}

func TestStats(t *testing.T) {
	for _, tc := range []struct {
		name        string
		ts          []float64
		med, lo, hi float64
	}{
		{"n=1", []float64{3}, 3, 3, 3},
		{"n=3", []float64{5, 1, 3}, 3, 1, 5},
		{"n=4", []float64{4, 1, 3, 2}, 2.5, 1, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.ts)
			med, lo, hi := stats(in)
			if med != tc.med || lo != tc.lo || hi != tc.hi {
				t.Errorf("stats(%v) = %v, %v, %v; want %v, %v, %v", tc.ts, med, lo, hi, tc.med, tc.lo, tc.hi)
			}
			if !slices.Equal(in, tc.ts) {
				t.Errorf("stats reordered its input: %v, want %v", in, tc.ts)
			}
		})
	}
}

// TestCPUUsage checks cpu_usage's arithmetic: over 2 s of wall time on a 2-CPU machine (4 CPU
// seconds), this process used 1.5 s and the machine was busy for 2.5 s, so others used 1 s.
func TestCPUUsage(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := cpuSample{wall: t0, busy: 10, total: 100, own: 1}
	b := cpuSample{wall: t0.Add(2 * time.Second), busy: 12.5, total: 104, own: 2.5}
	if util, others := cpuUsage(a, b); util != 0.75 || others != 25 {
		t.Errorf("cpuUsage = %v, %v%%; want 0.75, 25%%", util, others)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	for _, args := range [][]string{{"--only", "nope"}, {"--weights", "f16"}, {"--config", "xl"}, {"--train-steps", "0"}, {"extra"}} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) = nil error, want one", args)
		}
	}
}
