package cpu

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestScratchKernel times the micro-kernel alone, per CPU second.
func TestScratchKernel(t *testing.T) {
	if os.Getenv("SCRATCH") == "" {
		t.Skip()
	}
	runtime.LockOSThread()
	for _, ks := range matmulKernelSets() {
		for _, k := range []int{64, 128, 256, 512} {
			a := randSlice(rand.New(rand.NewPCG(1, 1)), ks.mr*k)
			b := randSlice(rand.New(rand.NewPCG(1, 1)), ks.nr*k)
			c := make([]float32, ks.mr*ks.nr)
			iters := 5000000 / k
			if ks.name == "go" {
				iters = 200
			}
			c0, w0 := cpuTime(), time.Now()
			for range iters {
				ks.gemm(k, a, b, c, ks.nr)
			}
			cpu, wall := cpuTime()-c0, time.Since(w0)
			fl := 2 * float64(ks.mr*ks.nr*k*iters)
			fmt.Printf("kernel %s k=%d: %.1f GFLOP/cpu-s  %.1f GFLOP/wall-s\n", ks.name, k, fl/cpu.Seconds()/1e9, fl/wall.Seconds()/1e9)
		}
	}
}

// TestScratchShape: SCRATCH=op:n:c:oc[:kernels] times one call shape per CPU second.
func TestScratchShape(t *testing.T) {
	spec := os.Getenv("SCRATCH")
	if spec == "" || !strings.Contains(spec, ":") {
		t.Skip()
	}
	for _, one := range strings.Split(spec, ",") {
		f := strings.Split(one, ":")
		n, _ := strconv.Atoi(f[1])
		c, _ := strconv.Atoi(f[2])
		oc, _ := strconv.Atoi(f[3])
		ks := &matmulKernels
		if len(f) > 4 {
			ks = benchKernels("fast-" + f[4])
		}
		rng := rand.New(rand.NewPCG(1, 1))
		x, w, d := randSlice(rng, n*c), randSlice(rng, oc*c), randSlice(rng, n*oc)
		bias, db := randSlice(rng, oc), randSlice(rng, oc)
		out, dx, dw := make([]float32, n*oc), make([]float32, n*c), make([]float32, oc*c)
		var fn func()
		switch f[0] {
		case "fwd":
			fn = func() { matmulForwardWith(ks, out, x, w, bias, n, c, oc) }
		case "fwdg":
			fn = func() {
				gemm(ks, &gemmOp{m: n, n: oc, k: c, a: x, lda: c, b: w, ldb: c, bTrans: true, c: out, ldc: oc, init: true, bias: bias})
			}
		case "fwdv":
			fn = func() { gemvForward(ks, out, x, w, bias, n, c, oc) }
		case "bwdi":
			fn = func() { matmulBackwardInputWith(ks, dx, d, w, n, c, oc) }
		case "bwdw":
			fn = func() { matmulBackwardWeightWith(ks, dw, db, d, x, n, c, oc) }
		}
		fn()
		fl := 2 * float64(n) * float64(c) * float64(oc)
		iters := max(1, int(3e9/fl))
		c0, w0 := cpuTime(), time.Now()
		for range iters {
			fn()
		}
		cpu, wall := cpuTime()-c0, time.Since(w0)
		fmt.Printf("%s %s n=%d c=%d oc=%d P=%d: %.1f GFLOP/cpu-s x P = %.1f, wall %.1f GFLOP/s, %.3f ms\n", f[0], ks.name, n, c, oc, runtime.GOMAXPROCS(0),
			fl*float64(iters)/cpu.Seconds()/1e9, fl*float64(iters)/cpu.Seconds()/1e9*float64(runtime.GOMAXPROCS(0)), fl*float64(iters)/wall.Seconds()/1e9, wall.Seconds()/float64(iters)*1e3)
	}
}

func TestScratchPack(t *testing.T) {
	if os.Getenv("SCRATCH") == "" {
		t.Skip()
	}
	runtime.LockOSThread()
	C, OC := 768, 3072
	rng := rand.New(rand.NewPCG(1, 1))
	w := randSlice(rng, OC*C)
	dst := make([]float32, 48*256)
	for _, ks := range matmulKernelSets()[:2] {
		for _, trans := range []bool{true, false} {
			op := &gemmOp{b: w, ldb: C, bTrans: trans}
			if !trans {
				op.ldb = OC
			}
			c0 := cpuTime()
			reps := 5
			for range reps {
				for p0 := 0; p0 < C; p0 += 256 {
					for j := 0; j+ks.nr <= OC; j += ks.nr {
						packBPanel(&ks, dst, op, j, ks.nr, p0, 256)
					}
				}
			}
			cpu := cpuTime() - c0
			fmt.Printf("packB %s trans=%v: %.2f ns/float\n", ks.name, trans, float64(cpu.Nanoseconds())/float64(reps*OC*C))
		}
	}
	dstA := make([]float32, 8*256)
	for _, trans := range []bool{true, false} {
		op := &gemmOp{a: w, lda: C, aTrans: trans}
		if trans {
			op.lda = OC
		}
		c0 := cpuTime()
		reps := 5
		for range reps {
			for p0 := 0; p0 < C; p0 += 256 {
				for i := 0; i+8 <= OC; i += 8 {
					packAPanel(dstA, op, i, 8, p0, 256, 8)
				}
			}
		}
		cpu := cpuTime() - c0
		fmt.Printf("packA trans=%v: %.2f ns/float\n", trans, float64(cpu.Nanoseconds())/float64(reps*OC*C))
	}
}
