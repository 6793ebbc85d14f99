package cuda

import (
	"context"
	"fmt"
	"time"

	"github.com/modeld-dev/modeld/backend"
)

// smokeTest runs a tiny MatmulForward with bias on a fresh handle of d (upload, a cuBLAS GEMM,
// the add_bias kernel, download) and compares it with the exact result, so that a device that
// opens but cannot compute (a kernel image the driver loads but cannot run, a cuBLAS that
// does not match the driver) fails at Open, where "auto" can fall back to the CPU, rather than
// at the first request.
func smokeTest(d *device) error {
	const N, C, OC = 3, 5, 4
	inp, weight, bias := make([]float32, N*C), make([]float32, OC*C), make([]float32, OC)
	// Small integers: every product and sum is exact in fp32, so the result must match.
	for i := range inp {
		inp[i] = float32(i%7 - 3)
	}
	for i := range weight {
		weight[i] = float32(i%5 - 2)
	}
	for i := range bias {
		bias[i] = float32(10 * i)
	}
	want := make([]float32, N*OC)
	for n := range N {
		for o := range OC {
			s := bias[o]
			for c := range C {
				s += inp[n*C+c] * weight[o*C+c]
			}
			want[n*OC+o] = s
		}
	}

	b := newHandle(d, Options{})
	defer b.Close()
	var bufs [4]backend.Buffer
	for i, n := range []int{N * C, OC * C, OC, N * OC} {
		buf, err := b.Alloc(backend.F32, n)
		if err != nil {
			return err
		}
		bufs[i] = buf
	}
	b.Upload(bufs[0], inp)
	b.Upload(bufs[1], weight)
	b.Upload(bufs[2], bias)
	b.MatmulForward(bufs[3], bufs[0], bufs[1], bufs[2], N, C, OC)
	got := make([]float32, N*OC)
	b.Download(got, bufs[3])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.Sync(ctx); err != nil {
		return err
	}
	for i := range want {
		if got[i] != want[i] {
			return fmt.Errorf("MatmulForward of %dx%d by %dx%d with bias gave %v, want %v", N, C, OC, C, got, want)
		}
	}
	return nil
}
