package model

import (
	"context"
	"fmt"

	"github.com/modeld-dev/modeld/backend"
)

// bf16Weights are the bfloat16 copies of a model's matmul weights that an Inference reads
// (InferenceOptions.WeightsBF16), all views of one buffer.
type bf16Weights struct {
	b      backend.BF16Weights
	all    backend.Buffer
	wte    backend.Buffer             // (V, C), the lm_head
	layers [][perLayer]backend.Buffer // qkvW (3C, C), attnProjW (C, C), fcW (4C, C), fcProjW (C, 4C); the rest nil
}

// bf16Matmuls are the per-layer tensors kept in bfloat16.
var bf16Matmuls = [...]int{qkvW, attnProjW, fcW, fcProjW}

// newBF16Weights rounds the model's matmul weights to bfloat16 (nearest, ties to even) into one
// new BF16 buffer of bw. It converts a megabyte-sized chunk at a time, so the host memory it
// takes does not grow with the model.
func (m *Model) newBF16Weights(ctx context.Context, bw backend.BF16Weights) (*bf16Weights, error) {
	L := m.Config.NLayer
	total := m.wte.Len()
	for _, j := range bf16Matmuls {
		total += L * m.layers[0][j].Len()
	}
	all, err := bw.AllocBF16(total)
	if err != nil {
		return nil, fmt.Errorf("bf16 weights: %w", err)
	}
	w := &bf16Weights{b: bw, all: all, layers: make([][perLayer]backend.Buffer, L)}
	const chunk = 1 << 20
	host, host16 := make([]float32, chunk), make([]uint16, chunk)
	off := 0
	convert := func(src backend.Buffer) (backend.Buffer, error) {
		n := src.Len()
		dst := all.Slice(off, n)
		off += n
		for lo := 0; lo < n; lo += chunk {
			k := min(chunk, n-lo)
			m.Backend.Download(host[:k], src.Slice(lo, k))
			if err := m.Backend.Sync(ctx); err != nil {
				return nil, err
			}
			for i, v := range host[:k] {
				host16[i] = backend.BF16FromF32(v)
			}
			bw.UploadBF16(dst.Slice(lo, k), host16[:k])
			if err := m.Backend.Sync(ctx); err != nil {
				return nil, err
			}
		}
		return dst, nil
	}
	fail := func(err error) (*bf16Weights, error) {
		m.Backend.Free(all)
		return nil, fmt.Errorf("bf16 weights: %w", err)
	}
	if w.wte, err = convert(m.wte); err != nil {
		return fail(err)
	}
	for l := range L {
		for _, j := range bf16Matmuls {
			if w.layers[l][j], err = convert(m.layers[l][j]); err != nil {
				return fail(err)
			}
		}
	}
	return w, nil
}
