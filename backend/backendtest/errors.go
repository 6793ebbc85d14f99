package backendtest

import (
	"errors"
	"testing"

	"github.com/modeld-dev/modeld/backend"
)

// errorCase is a call that breaks the Backend contract in a way the backend must detect.
type errorCase struct {
	name string
	// call enqueues the bad kernel on b, allocating what it needs with alloc.
	call func(b backend.Backend, alloc func(backend.DType, int) backend.Buffer)
}

var errorCases = []errorCase{
	{"kernel=matmul_forward/bad=out_size", func(b backend.Backend, alloc func(backend.DType, int) backend.Buffer) {
		const N, C, OC = 3, 17, 33
		b.MatmulForward(alloc(backend.F32, N*OC-1), alloc(backend.F32, N*C), alloc(backend.F32, OC*C), nil, N, C, OC)
	}},
	{"kernel=matmul_backward/bad=dweight_size", func(b backend.Backend, alloc func(backend.DType, int) backend.Buffer) {
		const N, C, OC = 3, 17, 33
		b.MatmulBackward(alloc(backend.F32, N*C), alloc(backend.F32, OC*C+1), nil,
			alloc(backend.F32, N*OC), alloc(backend.F32, N*C), alloc(backend.F32, OC*C), N, C, OC)
	}},
	{"kernel=layernorm_forward/bad=weight_size", func(b backend.Backend, alloc func(backend.DType, int) backend.Buffer) {
		const N, C = 3, 17
		b.LayerNormForward(alloc(backend.F32, N*C), alloc(backend.F32, N), alloc(backend.F32, N),
			alloc(backend.F32, N*C), alloc(backend.F32, C-1), alloc(backend.F32, C), N, C)
	}},
	{"kernel=attention_forward/bad=heads", func(b backend.Backend, alloc func(backend.DType, int) backend.Buffer) {
		const B, T, C, NH = 1, 4, 10, 3 // C is not a multiple of NH
		b.AttentionForward(alloc(backend.F32, B*T*C), alloc(backend.F32, B*NH*T*T), alloc(backend.F32, B*T*3*C), B, T, C, NH)
	}},
	{"kernel=gelu_forward/bad=n", func(b backend.Backend, alloc func(backend.DType, int) backend.Buffer) {
		b.GELUForward(alloc(backend.F32, 17), alloc(backend.F32, 17), 18)
	}},
	{"kernel=crossentropy_forward/bad=target_v", func(b backend.Backend, alloc func(backend.DType, int) backend.Buffer) {
		const N, V = 3, 17
		targets := alloc(backend.I32, N)
		b.UploadInt32(targets, []int32{0, V, 1})
		b.CrossEntropyForward(alloc(backend.F32, N), alloc(backend.F32, N*V), alloc(backend.F32, N*V), targets, N, V)
	}},
	{"kernel=crossentropy_forward/bad=target_negative", func(b backend.Backend, alloc func(backend.DType, int) backend.Buffer) {
		const N, V = 3, 17
		targets := alloc(backend.I32, N)
		b.UploadInt32(targets, []int32{0, backend.IgnoreIndex, -1})
		b.CrossEntropyForward(alloc(backend.F32, N), alloc(backend.F32, N*V), alloc(backend.F32, N*V), targets, N, V)
	}},
	{"kernel=cached_attention/bad=block_out_of_range", func(b backend.Backend, alloc func(backend.DType, int) backend.Buffer) {
		badBlockCall(b, alloc, 4) // the cache has blocks 0..3
	}},
	{"kernel=cached_attention/bad=block_negative", func(b backend.Backend, alloc func(backend.DType, int) backend.Buffer) {
		badBlockCall(b, alloc, -1)
	}},
}

// badBlockCall runs CachedAttention for one sequence whose second block is bad, in a cache of 4
// blocks of 4 positions.
func badBlockCall(b backend.Backend, alloc func(backend.DType, int) backend.Buffer, bad int32) {
	const C, NH, bs, nblocks = 8, 2, 4, 4
	cache := backend.KVCache{K: alloc(backend.F32, nblocks*bs*C), V: alloc(backend.F32, nblocks*bs*C), BlockSize: bs}
	seqs := []backend.CachedSeq{{Row: 0, Len: 2, Pos: 5, Blocks: []int32{2, bad}}}
	b.CachedAttention(alloc(backend.F32, 2*C), alloc(backend.F32, 2*3*C), cache, seqs, C, NH)
}

// testErrors runs each bad call on a fresh backend: Sync must return an error, and so must a
// second Sync, also after a valid kernel was enqueued (the first error is sticky).
func testErrors(t *testing.T, open func() backend.Backend) {
	for _, c := range errorCases {
		t.Run(c.name, func(t *testing.T) {
			b := open()
			t.Cleanup(func() {
				if err := b.Close(); err != nil {
					t.Errorf("%s: Close: %v", b.Name(), err)
				}
			})
			alloc := func(dtype backend.DType, n int) backend.Buffer {
				buf, err := b.Alloc(dtype, n)
				if err != nil {
					t.Fatalf("%s: Alloc(%v, %d): %v", b.Name(), dtype, n, err)
				}
				return buf
			}
			if err := b.Sync(t.Context()); err != nil {
				t.Fatalf("%s: Sync of a fresh backend: %v", b.Name(), err)
			}
			c.call(b, alloc)
			err1 := b.Sync(t.Context())
			if err1 == nil {
				t.Fatalf("%s: Sync after %s returned nil, want an error", b.Name(), c.name)
			}
			t.Logf("%s: %v", b.Name(), err1)
			err2 := b.Sync(t.Context())
			x, y := alloc(backend.F32, 3), alloc(backend.F32, 3)
			b.Zero(x)
			b.GELUForward(y, x, 3)
			err3 := b.Sync(t.Context())
			for i, err := range []error{err2, err3} {
				switch {
				case err == nil:
					t.Errorf("%s: Sync #%d after the failed kernel returned nil, want the first error again (sticky): %v", b.Name(), i+2, err1)
				case !errors.Is(err, err1) && err.Error() != err1.Error():
					t.Errorf("%s: Sync #%d returned %q, want the first error %q", b.Name(), i+2, err, err1)
				}
			}
		})
	}
}
