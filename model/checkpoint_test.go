package model_test

import (
	"bufio"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/modeld-dev/modeld/backend/cpu"
	"github.com/modeld-dev/modeld/model"
	"github.com/modeld-dev/modeld/model/safetensors"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	ctx := t.Context()
	m := loadModel(t, cpu.New(), "hf")
	dir := filepath.Join(t.TempDir(), "out")
	if err := m.Save(ctx, dir); err != nil {
		t.Fatal(err)
	}
	back, err := model.Load(ctx, cpu.New(), os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m.Config, back.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	want, _ := m.Params(ctx)
	got, _ := back.Params(ctx)
	for i := range want {
		if math.Float32bits(want[i]) != math.Float32bits(got[i]) {
			t.Fatalf("parameter %d = %v after the round trip, want %v (bit-identical)", i, got[i], want[i])
		}
	}
	// The saved tensors are the oracle file's tensors, bit for bit: names, Conv1D layout and
	// values survive a load and a save.
	orig, err := safetensors.Open(os.DirFS(filepath.Join(oracle, "hf")), "model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	saved, err := safetensors.Open(os.DirFS(dir), "model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer saved.Close()
	for _, info := range orig.Tensors() {
		if strings.HasSuffix(info.Name, ".attn.bias") {
			continue
		}
		s, ok := saved.Info(info.Name)
		if !ok {
			t.Errorf("saved file lacks %s", info.Name)
			continue
		}
		if diff := cmp.Diff(info.Shape, s.Shape); diff != "" {
			t.Errorf("%s shape (-want +got):\n%s", info.Name, diff)
		}
		a, _ := orig.Float32(info.Name)
		b, _ := saved.Float32(info.Name)
		if diff := cmp.Diff(a, b); diff != "" {
			t.Errorf("%s values differ (-want +got):\n%s", info.Name, diff)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("saved folder holds %d entries, want config.json, generation_config.json and model.safetensors", len(entries))
	}
}

// oracleFS returns the oracle folder as a MapFS whose model.safetensors is rewritten by edit.
func oracleFS(t *testing.T, config string, edit func([]safetensors.Tensor) []safetensors.Tensor) fstest.MapFS {
	t.Helper()
	dir := filepath.Join(oracle, "hf")
	f, err := safetensors.Open(os.DirFS(dir), "model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ts []safetensors.Tensor
	for _, info := range f.Tensors() {
		data, err := f.Float32(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.Tensor{Name: info.Name, Shape: info.Shape, Data: data})
	}
	if edit != nil {
		ts = edit(ts)
	}
	var sb strings.Builder
	w := bufio.NewWriter(&sb)
	if err := safetensors.Write(w, ts, nil); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	if config == "" {
		cfg, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		config = string(cfg)
	}
	return fstest.MapFS{
		"config.json":       {Data: []byte(config)},
		"model.safetensors": {Data: []byte(sb.String())},
	}
}

func TestLoadVariants(t *testing.T) {
	ctx := t.Context()
	want, err := loadModel(t, cpu.New(), "hf").Params(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func([]safetensors.Tensor) []safetensors.Tensor{
		"no_prefix": func(ts []safetensors.Tensor) []safetensors.Tensor {
			for i := range ts {
				ts[i].Name = strings.TrimPrefix(ts[i].Name, "transformer.")
			}
			return ts
		},
		"tied_lm_head_and_mask_buffers": func(ts []safetensors.Tensor) []safetensors.Tensor {
			wte := ts[0]
			return append(ts,
				safetensors.Tensor{Name: "lm_head.weight", Shape: wte.Shape, Data: wte.Data},
				safetensors.Tensor{Name: "transformer.h.0.attn.masked_bias", Shape: []int{}, Data: []float32{-1e4}},
				safetensors.Tensor{Name: "transformer.h.1.attn.bias", Shape: []int{1, 1, 2, 2}, Data: []float32{1, 0, 1, 1}})
		},
		"f16": func(ts []safetensors.Tensor) []safetensors.Tensor {
			for i := range ts {
				ts[i].DType = safetensors.F16
			}
			return ts
		},
	} {
		t.Run("variant="+name, func(t *testing.T) {
			m, err := model.Load(ctx, cpu.New(), oracleFS(t, "", edit))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := m.Params(ctx)
			tol := 0.0
			if name == "f16" {
				tol = 1e-3 // binary16 keeps 11 significant bits; the oracle weights are below 4 in magnitude
			}
			for i := range want {
				if math.Abs(float64(got[i]-want[i])) > tol*math.Max(1, math.Abs(float64(want[i]))) {
					t.Fatalf("parameter %d = %v, want %v", i, got[i], want[i])
				}
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	cfg, err := os.ReadFile(filepath.Join(oracle, "hf", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	withConfig := func(old, new string) string {
		if !strings.Contains(string(cfg), old) {
			t.Fatalf("config.json lacks %q", old)
		}
		return strings.Replace(string(cfg), old, new, 1)
	}
	for _, tc := range []struct {
		name   string
		config string
		edit   func([]safetensors.Tensor) []safetensors.Tensor
		want   string
	}{
		{"activation", withConfig(`"gelu_new"`, `"relu"`), nil, "activation_function"},
		{"model_type", withConfig(`"model_type": "gpt2"`, `"model_type": "llama"`), nil, "model_type"},
		{"epsilon", withConfig(`1e-05`, `1e-06`), nil, "layer_norm_epsilon"},
		{"untied", withConfig(`"tie_word_embeddings": true`, `"tie_word_embeddings": false`), nil, "tie_word_embeddings"},
		{"heads", withConfig(`"n_head": 4`, `"n_head": 5`), nil, "n_head"},
		{"json", `{"model_type": "gpt2",`, nil, "config.json"},
		{"missing_tensor", "", func(ts []safetensors.Tensor) []safetensors.Tensor { return ts[:len(ts)-1] }, `missing tensor "transformer.ln_f.bias"`},
		{"wrong_shape", "", func(ts []safetensors.Tensor) []safetensors.Tensor {
			ts[1].Shape = []int{32, 128}
			return ts
		}, `"transformer.wpe.weight": shape [32 128]`},
		{"unknown_tensor", "", func(ts []safetensors.Tensor) []safetensors.Tensor {
			return append(ts, safetensors.Tensor{Name: "transformer.h.9.mlp.gate", Shape: []int{1}, Data: []float32{0}})
		}, `"transformer.h.9.mlp.gate": not a GPT-2 parameter`},
		{"untied_lm_head", "", func(ts []safetensors.Tensor) []safetensors.Tensor {
			d := append([]float32(nil), ts[0].Data...)
			d[7]++
			return append(ts, safetensors.Tensor{Name: "lm_head.weight", Shape: ts[0].Shape, Data: d})
		}, "lm_head.weight differs from wte"},
	} {
		t.Run("case="+tc.name, func(t *testing.T) {
			_, err := model.Load(t.Context(), cpu.New(), oracleFS(t, tc.config, tc.edit))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	t.Run("case=unsupported_is_typed", func(t *testing.T) {
		_, err := model.Load(t.Context(), cpu.New(), oracleFS(t, withConfig(`"gelu_new"`, `"relu"`), nil))
		if !errors.Is(err, model.ErrUnsupported) {
			t.Errorf("error %v does not wrap ErrUnsupported", err)
		}
	})
	t.Run("case=truncated", func(t *testing.T) {
		fsys := oracleFS(t, "", nil)
		data := fsys["model.safetensors"].Data
		for _, n := range []int{0, 7, 8, 100, len(data) / 2, len(data) - 1} {
			fsys["model.safetensors"] = &fstest.MapFile{Data: data[:n]}
			if _, err := model.Load(t.Context(), cpu.New(), fsys); err == nil || !strings.Contains(err.Error(), "model.safetensors") {
				t.Errorf("truncated to %d bytes: error %v, want one naming model.safetensors", n, err)
			}
		}
	})
}
