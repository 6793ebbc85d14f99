package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"testing"
)

// TestRunTiny runs every workload on the tiny config and checks that each line has the fields
// that torch_gpt2.py's has and scripts/bench-vs-torch reads.
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
			}
			wantOrder := []string{"env", "prefill", "prefill_last", "decode_b1", "decode_b8", "train_step", "peak_rss"}
			if !slices.Equal(seen, wantOrder) {
				t.Errorf("lines %v, want %v", seen, wantOrder)
			}
		})
	}
}

func TestParseFlagsErrors(t *testing.T) {
	for _, args := range [][]string{{"--only", "nope"}, {"--weights", "f16"}, {"--config", "xl"}, {"--train-steps", "0"}, {"extra"}} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) = nil error, want one", args)
		}
	}
}
