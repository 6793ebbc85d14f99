package model

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/model/safetensors"
)

// Load reads a Hugging Face GPT-2 folder from fsys (config.json and model.safetensors) into a
// new model on b. Tensors may be F32, BF16 or F16 (upcast to float32), named with or without
// the "transformer." prefix; Conv1D weights are (in, out) as Transformers stores them. The
// attention mask buffers (attn.bias, attn.masked_bias) are skipped, and an lm_head.weight is
// accepted only when it equals wte (GPT-2 ties them). Errors name the file and tensor.
func Load(ctx context.Context, b backend.Backend, fsys fs.FS) (*Model, error) {
	cfg, err := ReadConfig(fsys)
	if err != nil {
		return nil, err
	}
	f, err := safetensors.Open(fsys, "model.safetensors")
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	defer f.Close()
	ts := layout(cfg)
	index := make(map[string]int, len(ts))
	for i, t := range ts {
		index[t.name] = i
	}
	host := make([]float32, cfg.NumParams())
	seen := make([]bool, len(ts))
	var lmHead []float32
	for _, info := range f.Tensors() {
		name := info.Name
		if !strings.HasPrefix(name, "transformer.") && name != "lm_head.weight" {
			name = "transformer." + name
		}
		if strings.HasSuffix(name, ".attn.bias") || strings.HasSuffix(name, ".attn.masked_bias") {
			continue
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("model: model.safetensors: tensor %q: "+format, append([]any{info.Name}, args...)...)
		}
		if name == "lm_head.weight" {
			if want := []int{cfg.VocabSize, cfg.NEmbd}; !slices.Equal(info.Shape, want) {
				return nil, bad("shape %v, want %v", info.Shape, want)
			}
			if lmHead, err = f.Float32(info.Name); err != nil {
				return nil, fmt.Errorf("model: %w", err)
			}
			continue
		}
		i, ok := index[name]
		if !ok {
			return nil, bad("not a GPT-2 parameter: %w", ErrUnsupported)
		}
		t := ts[i]
		if !slices.Equal(info.Shape, t.hfShape()) {
			return nil, bad("shape %v, want %v", info.Shape, t.hfShape())
		}
		if seen[i] {
			return nil, bad("given twice")
		}
		data, err := f.Float32(info.Name)
		if err != nil {
			return nil, fmt.Errorf("model: %w", err)
		}
		t.fromHF(host[t.offset:t.offset+t.numel()], data)
		seen[i] = true
	}
	for i, ok := range seen {
		if !ok {
			return nil, fmt.Errorf("model: model.safetensors: missing tensor %q", ts[i].name)
		}
	}
	if lmHead != nil && !slices.Equal(lmHead, host[:ts[0].numel()]) {
		return nil, fmt.Errorf("model: model.safetensors: lm_head.weight differs from wte (untied embeddings): %w", ErrUnsupported)
	}
	m, err := New(b, cfg)
	if err != nil {
		return nil, err
	}
	if err := m.SetParams(ctx, host); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// Save writes the model into the folder dir as Transformers' save_pretrained would:
// config.json, generation_config.json and model.safetensors (float32, checkpoint names and
// Conv1D layout, lm_head tied and so not written). Each file is written to a temporary file in
// dir and renamed into place, so a reader never sees a partial file. Tokenizer files are the
// caller's to copy.
func (m *Model) Save(ctx context.Context, dir string) error {
	params, err := m.Params(ctx)
	if err != nil {
		return fmt.Errorf("model: save: %w", err)
	}
	data, shapes := m.HFTensors(params)
	tensors := make([]safetensors.Tensor, len(data))
	for i, name := range m.TensorNames() {
		tensors[i] = safetensors.Tensor{Name: name, Shape: shapes[i], Data: data[i]}
	}
	cfg, err := json.MarshalIndent(m.Config, "", "  ")
	if err != nil {
		return fmt.Errorf("model: save: %w", err)
	}
	gen, err := json.MarshalIndent(map[string]int{"bos_token_id": m.Config.BOSTokenID, "eos_token_id": m.Config.EOSTokenID}, "", "  ")
	if err != nil {
		return fmt.Errorf("model: save: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("model: save: %w", err)
	}
	files := []struct {
		name  string
		write func(w *bufio.Writer) error
	}{
		{"model.safetensors", func(w *bufio.Writer) error {
			return safetensors.Write(w, tensors, map[string]string{"format": "pt"})
		}},
		{"config.json", func(w *bufio.Writer) error { _, err := w.Write(append(cfg, '\n')); return err }},
		{"generation_config.json", func(w *bufio.Writer) error { _, err := w.Write(append(gen, '\n')); return err }},
	}
	for _, f := range files {
		if err := WriteFileAtomic(filepath.Join(dir, f.name), f.write); err != nil {
			return fmt.Errorf("model: save: %w", err)
		}
	}
	return nil
}

// WriteFileAtomic writes path (mode 0644) through a temporary file in the same folder that is
// synced and then renamed over path, so that path holds either its old contents or all of the
// new.
func WriteFileAtomic(path string, write func(w *bufio.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := bufio.NewWriterSize(tmp, 1<<20)
	if err = write(w); err != nil {
		return err
	}
	if err = w.Flush(); err != nil {
		return err
	}
	if err = tmp.Chmod(0o644); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
