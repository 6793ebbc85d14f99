package cuda

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/backend/backendtest"
	"github.com/modeld-dev/modeld/backend/cpu"
	"github.com/modeld-dev/modeld/backend/cuda/internal/dl"
	"github.com/modeld-dev/modeld/backend/cuda/internal/nvrtc"
)

// needDevice returns GPU 0, or skips the test with the reason it cannot be used ("no CUDA
// driver (libcuda.so.1 not found)", "no CUDA device", ...).
func needDevice(tb testing.TB) *device {
	tb.Helper()
	d, err := sharedDevice(0)
	if err != nil {
		tb.Skipf("CUDA backend unavailable: %v", err)
	}
	return d
}

func TestConformance(t *testing.T) {
	d := needDevice(t)
	h := newHandle(d, Options{})
	t.Logf("device: %s", h.Device())
	h.Close()
	// Every subtest gets its own handle (its own sticky error) on the shared device, in fp32.
	backendtest.RunAll(t, func() backend.Backend { return newHandle(d, Options{}) })
}

// emptyDirOpener opens libraries only from dir, never through the system loader's own path:
// a machine with a driver looks like one without.
func emptyDirOpener(dir string) func(names ...string) (*dl.Lib, error) {
	return func(names ...string) (*dl.Lib, error) {
		paths := make([]string, len(names))
		for i, n := range names {
			paths[i] = filepath.Join(dir, n)
		}
		return dl.Open(paths...)
	}
}

// TestOpenWithoutDriver runs everywhere: it opens a device with libraries looked up in an
// empty folder.
func TestOpenWithoutDriver(t *testing.T) {
	start := time.Now()
	_, err := openDevice(loader{open: emptyDirOpener(t.TempDir()), modules: kernelModules}, 0)
	if !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("open without a driver: err = %v, want one wrapping backend.ErrUnavailable", err)
	}
	if want := "no CUDA driver (libcuda.so.1 not found)"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a failed open took %v; --backend auto must stay fast without CUDA", d)
	}
}

// TestOpenSearchPath opens the driver the way Open does, with LD_LIBRARY_PATH and CUDA_HOME
// pointing at an empty folder. Where the system loader still finds a driver it is skipped: the
// seam above covers that machine.
func TestOpenSearchPath(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("LD_LIBRARY_PATH", dir)
	t.Setenv("CUDA_HOME", dir)
	t.Setenv("CUDA_PATH", dir)
	if lib, err := dl.Open(driverLib); err == nil {
		t.Skipf("the system loader finds %s (%s)", driverLib, lib.Path)
	}
	_, err := openDevice(loader{open: dl.Open, modules: kernelModules}, 0)
	if !errors.Is(err, backend.ErrUnavailable) || !strings.Contains(err.Error(), "libcuda.so.1") {
		t.Fatalf("err = %v, want one wrapping backend.ErrUnavailable that names libcuda.so.1", err)
	}
}

// TestRegistry checks that "cuda" is registered above "cpu", and that without a GPU
// backend.Open("auto") falls back to the CPU and says why.
func TestRegistry(t *testing.T) {
	names := backend.Names()
	if i, j := slices.Index(names, "cuda"), slices.Index(names, "cpu"); i < 0 || j < 0 || i > j {
		t.Fatalf("backend.Names() = %v, want cuda before cpu", names)
	}
	b, _, err := backend.Open("cuda")
	if err == nil {
		b.Close()
		t.Skip("this machine runs CUDA")
	}
	if !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf(`backend.Open("cuda") = %v, want an error wrapping ErrUnavailable`, err)
	}
	b, skipped, err := backend.Open("auto")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Name() != "cpu" || len(skipped) == 0 || !errors.Is(skipped[0], backend.ErrUnavailable) || !strings.Contains(skipped[0].Error(), "cuda") {
		t.Fatalf(`backend.Open("auto") = %s, skipped %v; want cpu, having skipped cuda with the reason`, b.Name(), skipped)
	}
	t.Logf("skipped: %v", skipped[0])
}

// refGemm is cuBLAS's column-major GEMM, C = alpha·op(A)·op(B) + beta·C with alpha 1, over
// host memory: mem maps the device addresses in g to column-major arrays. It fails where
// cuBLAS returns CUBLAS_STATUS_INVALID_VALUE for the leading dimensions.
func refGemm(g gemm, mem map[uint64][]float32) error {
	rowsA, rowsB := g.m, g.k // rows of A and B as stored
	if g.transA == cublasOpT {
		rowsA = g.k
	}
	if g.transB == cublasOpT {
		rowsB = g.n
	}
	if g.lda < max(1, rowsA) || g.ldb < max(1, rowsB) || g.ldc < max(1, g.m) {
		return fmt.Errorf("leading dimensions %d, %d, %d too small for %dx%d, %dx%d, %dx%d", g.lda, g.ldb, g.ldc, rowsA, 0, rowsB, 0, g.m, g.n)
	}
	A, B, C := mem[g.a], mem[g.b], mem[g.c]
	opA := func(i, l int32) float32 { // op(A)[i,l]
		if g.transA == cublasOpT {
			return A[i*g.lda+l]
		}
		return A[l*g.lda+i]
	}
	opB := func(l, j int32) float32 {
		if g.transB == cublasOpT {
			return B[l*g.ldb+j]
		}
		return B[j*g.ldb+l]
	}
	for j := range g.n {
		for i := range g.m {
			var s float32
			for l := range g.k {
				s += opA(i, l) * opB(l, j)
			}
			C[j*g.ldc+i] = g.beta*C[j*g.ldc+i] + s
		}
	}
	return nil
}

// TestGemmMapping checks the row-major to column-major mapping of the three GEMMs against
// row-major loops, with the += of the backward ones.
func TestGemmMapping(t *testing.T) {
	for _, sh := range []struct{ N, C, OC int }{{1, 1, 1}, {3, 17, 33}, {17, 33, 3}, {4, 8, 2}} {
		N, C, OC := sh.N, sh.C, sh.OC
		t.Run(fmt.Sprintf("n=%d/c=%d/oc=%d", N, C, OC), func(t *testing.T) {
			fill := func(n int, seed int) []float32 {
				x := make([]float32, n)
				for i := range x {
					x[i] = float32((i*7+seed)%11 - 5)
				}
				return x
			}
			const inp, weight, out, dout, dinp, dweight = 1, 2, 3, 4, 5, 6
			mem := map[uint64][]float32{
				inp: fill(N*C, 1), weight: fill(OC*C, 2), out: fill(N*OC, 3),
				dout: fill(N*OC, 4), dinp: fill(N*C, 5), dweight: fill(OC*C, 6),
			}
			want := map[uint64][]float32{}
			for k, v := range mem {
				want[k] = slices.Clone(v)
			}
			x, w, d := mem[inp], mem[weight], mem[dout]
			for n := range N {
				for o := range OC {
					var s float32
					for c := range C {
						s += x[n*C+c] * w[o*C+c]
					}
					want[out][n*OC+o] = s
				}
				for c := range C {
					for o := range OC {
						want[dinp][n*C+c] += d[n*OC+o] * w[o*C+c]
					}
				}
			}
			for o := range OC {
				for c := range C {
					for n := range N {
						want[dweight][o*C+c] += d[n*OC+o] * x[n*C+c]
					}
				}
			}
			for _, g := range []gemm{
				forwardGemm(out, inp, weight, N, C, OC),
				backwardInputGemm(dinp, dout, weight, N, C, OC),
				backwardWeightGemm(dweight, dout, inp, N, C, OC),
			} {
				if err := refGemm(g, mem); err != nil {
					t.Fatalf("%+v: %v", g, err)
				}
			}
			if diff := cmp.Diff(want, mem); diff != "" {
				t.Errorf("GEMMs differ from the row-major loops (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCublasMajors(t *testing.T) {
	for _, c := range []struct {
		driver int
		want   []int
	}{
		{13000, []int{13, 12, 11}},
		{12040, []int{12, 11}},
		{12080, []int{12, 11}},
		{11080, []int{11}},
		{10020, nil},
	} {
		if got := cublasMajors(c.driver); !slices.Equal(got, c.want) {
			t.Errorf("cublasMajors(%d) = %v, want %v", c.driver, got, c.want)
		}
	}
}

func TestBucketSize(t *testing.T) {
	for _, c := range []struct{ bytes, want uint64 }{
		{0, 512}, {1, 512}, {512, 512}, {513, 1024}, {1 << 20, 1 << 20},
		{1<<20 + 1, 2 << 20}, {2 << 20, 2 << 20}, {5 << 20, 6 << 20}, {50257 * 768 * 4, 74 * 2 << 20},
	} {
		if got := bucketSize(c.bytes); got != c.want {
			t.Errorf("bucketSize(%d) = %d, want %d", c.bytes, got, c.want)
		}
	}
}

// fakeMemory is a device with limit bytes, for the allocator's tests.
type fakeMemory struct {
	limit, used, next uint64
	live              map[uint64]uint64
	mallocs, frees    int
}

func (f *fakeMemory) malloc(bytes uint64) (uint64, error) {
	if f.used+bytes > f.limit {
		return 0, &cuError{call: "cuMemAlloc_v2", code: cudaErrorOutOfMemory, name: "CUDA_ERROR_OUT_OF_MEMORY"}
	}
	f.next += 1 << 32
	f.used += bytes
	f.live[f.next] = bytes
	f.mallocs++
	return f.next, nil
}

func (f *fakeMemory) free(ptr uint64) error {
	bytes, ok := f.live[ptr]
	if !ok {
		return fmt.Errorf("free of %#x, not allocated", ptr)
	}
	delete(f.live, ptr)
	f.used -= bytes
	f.frees++
	return nil
}

func TestCachingAllocator(t *testing.T) {
	f := &fakeMemory{limit: 8 << 20, live: map[uint64]uint64{}}
	drains := 0
	a := newCachingAllocator(f, func() error { drains++; return nil })

	// The worker runs batch 10; blocks released by handles whose calls went in batches up to 9
	// may go back to the driver, those of later batches may not (their calls are still queued).
	const running = 10
	b1, err := a.alloc(1000, running)
	if err != nil {
		t.Fatal(err)
	}
	a.release(b1, 3)
	b2, err := a.alloc(1024, running) // the same bucket: served from the cache
	if err != nil || b2 != b1 || f.mallocs != 1 {
		t.Fatalf("alloc after release: %+v, %v, %d mallocs; want the cached block %+v and 1 malloc", b2, err, f.mallocs, b1)
	}
	b3, err := a.alloc(3<<20, running) // a 4 MiB bucket
	if err != nil || b3.size != 4<<20 {
		t.Fatalf("alloc of 3 MiB: %+v, %v", b3, err)
	}
	a.release(b3, running) // another handle's calls on b3 wait behind the current batch
	if _, err := a.alloc(6<<20, running); !errors.Is(err, ErrOutOfMemory) {
		t.Fatalf("alloc that needs a block of a later batch: err = %v, want ErrOutOfMemory", err)
	}
	if f.frees != 0 || a.cached != 4<<20 {
		t.Fatalf("a block of a batch not yet run went back to the driver: %d frees, %d bytes cached", f.frees, a.cached)
	}
	// 6 MiB does not fit beside the cached 4 MiB: the allocator empties its cache and retries.
	b4, err := a.alloc(6<<20, running+1)
	if err != nil {
		t.Fatalf("alloc that needs the cache emptied: %v", err)
	}
	if drains != 2 || f.frees != 1 || a.cached != 0 {
		t.Errorf("after the retry: %d drains, %d frees, %d bytes cached; want 2, 1, 0", drains, f.frees, a.cached)
	}
	// Nothing is cached now, so a request that does not fit fails.
	_, err = a.alloc(4<<20, running+1)
	if !errors.Is(err, ErrOutOfMemory) || !errors.Is(err, backend.ErrOutOfMemory) {
		t.Fatalf("alloc beyond the device: err = %v, want ErrOutOfMemory and backend.ErrOutOfMemory", err)
	}
	t.Logf("out of memory: %v", err)
	a.release(b4, running+5)
	a.release(b2, running+6)
	if a.inUse != 0 || a.cached != f.used {
		t.Errorf("all released: %d in use, %d cached, %d held from the device", a.inUse, a.cached, f.used)
	}
	if err := a.emptyCache(); err != nil || f.used != 0 || len(f.live) != 0 || a.cached != 0 {
		t.Errorf("emptyCache: %v, %d bytes still held, %d cached", err, f.used, a.cached)
	}
}

func TestErrors(t *testing.T) {
	oom := &cuError{call: "cuMemAlloc_v2", code: cudaErrorOutOfMemory, name: "CUDA_ERROR_OUT_OF_MEMORY", desc: "out of memory"}
	if want := "cuda: cuMemAlloc_v2: CUDA_ERROR_OUT_OF_MEMORY (out of memory)"; oom.Error() != want {
		t.Errorf("%q, want %q", oom, want)
	}
	wrapped := fmt.Errorf("alloc: %w", oom)
	if !errors.Is(wrapped, ErrOutOfMemory) || !errors.Is(wrapped, backend.ErrOutOfMemory) {
		t.Errorf("%v does not match the out-of-memory sentinels", wrapped)
	}
	other := (*driver)(nil).check("cuLaunchKernel", 700)
	if errors.Is(other, ErrOutOfMemory) || other.Error() != "cuda: cuLaunchKernel: CUresult 700" {
		t.Errorf("CUresult 700: %v", other)
	}
	blasOOM := (*cublas)(nil).check("cublasGemmEx", cublasStatusAllocFailed)
	if !errors.Is(blasOOM, backend.ErrOutOfMemory) || blasOOM.Error() != "cuda: cublasGemmEx: CUBLAS_STATUS_ALLOC_FAILED" {
		t.Errorf("cuBLAS alloc failure: %v", blasOOM)
	}
	if (*cublas)(nil).check("cublasGemmEx", 0) != nil {
		t.Error("CUBLAS_STATUS_SUCCESS is an error")
	}
	u := unavailable("no CUDA device", oom)
	if !errors.Is(u, backend.ErrUnavailable) || !errors.Is(u, oom) || !strings.HasPrefix(u.Error(), "no CUDA device: ") {
		t.Errorf("unavailable: %v", u)
	}
}

// fakeHandle is a Backend on a device that was never opened: enough for what happens on the
// caller's goroutine before anything reaches the worker.
func fakeHandle(ordinal int) *Backend { return newHandle(&device{ordinal: ordinal}, Options{}) }

func TestPackArgs(t *testing.T) {
	b := fakeHandle(0)
	buf := &buffer{dev: b.dev, ptr: 0x7f0000001000, n: 100, dtype: backend.F32}
	var nilBuf backend.Buffer
	got, err := b.packArgs([]any{buf, buf.Slice(3, 10), 17, int32(-1), uint32(1 << 31), float32(1.5), nilBuf, (*buffer)(nil)})
	if err != nil {
		t.Fatal(err)
	}
	want := []uint64{0x7f0000001000, 0x7f0000001000 + 12, 17, 0xffffffff, 1 << 31, uint64(math.Float32bits(1.5)), 0, 0}
	if !slices.Equal(got, want) {
		t.Errorf("packArgs = %#x, want %#x", got, want)
	}
	other := &buffer{dev: &device{ordinal: 1}, ptr: 0x1000, n: 1, dtype: backend.F32}
	host, _ := cpu.New().Alloc(backend.F32, 1)
	for _, bad := range []any{int64(1), 1.5, "x", 1 << 40, -1 << 40, other, host} {
		if _, err := b.packArgs([]any{bad}); err == nil {
			t.Errorf("packArgs accepted %T %v", bad, bad)
		}
	}
}

func TestLaunchErrors(t *testing.T) {
	b := fakeHandle(0)
	b.launch("gelu_forward", dim3{X: 1}, dim3{X: 32}, 0, 1.5) // a float64: not a kernel argument
	err := b.sticky()
	if err == nil || !strings.Contains(err.Error(), "gelu_forward") || !strings.Contains(err.Error(), "float64") {
		t.Fatalf("launch with a float64 argument: sticky error %v", err)
	}
	b.fail(errors.New("a second error"))
	if b.sticky() != err {
		t.Errorf("the first error is not sticky: %v", b.sticky())
	}
	if got := (dim3{X: 5}).full(); got != (dim3{5, 1, 1}) {
		t.Errorf("dim3{X: 5}.full() = %v", got)
	}
}

// TestHostChecks covers the checks made before anything is enqueued, on a device that was
// never opened: each records an error that names the method and what is wrong, and enqueues
// nothing.
func TestHostChecks(t *testing.T) {
	for _, c := range []struct {
		name string
		call func(b *Backend)
		want string // the recorded error
	}{
		{"matmul_forward/bad=out", func(b *Backend) {
			f := func(n int) backend.Buffer { return &buffer{dev: b.dev, ptr: 0x1000, n: n, dtype: backend.F32} }
			b.MatmulForward(f(3*33-1), f(3*17), f(33*17), nil, 3, 17, 33)
		}, "cuda: MatmulForward: out has 98 elements, want 99"},
		{"matmul_backward/bad=dweight", func(b *Backend) {
			f := func(n int) backend.Buffer { return &buffer{dev: b.dev, ptr: 0x1000, n: n, dtype: backend.F32} }
			b.MatmulBackward(f(3*17), f(33*17+1), nil, f(3*33), f(3*17), f(33*17), 3, 17, 33)
		}, "cuda: MatmulBackward: dweight has 562 elements, want 561"},
		{"matmul_forward/bad=negative", func(b *Backend) {
			f := func(n int) backend.Buffer { return &buffer{dev: b.dev, ptr: 0x1000, n: n, dtype: backend.F32} }
			b.MatmulForward(f(0), f(0), f(0), nil, -1, 0, 0)
		}, "cuda: MatmulForward: size -1"},
		{"gather/bad=row", func(b *Backend) {
			f := func(n int) backend.Buffer { return &buffer{dev: b.dev, ptr: 0x1000, n: n, dtype: backend.F32} }
			b.Gather(f(2*3), f(4*3), []int32{0, 4}, 3)
		}, "cuda: Gather: row 4 at row 1 is outside [0, 4)"},
		{"upload/bad=dtype", func(b *Backend) {
			b.Upload(&buffer{dev: b.dev, ptr: 0x1000, n: 2, dtype: backend.I32}, []float32{1, 2})
		}, "cuda: Upload: dst is i32, want f32"},
		{"copy/bad=length", func(b *Backend) {
			b.Copy(&buffer{dev: b.dev, ptr: 0x1000, n: 2, dtype: backend.F32}, &buffer{dev: b.dev, ptr: 0x2000, n: 3, dtype: backend.F32})
		}, "cuda: Copy: dst has 2 elements, want 3"},
		{"free/bad=view", func(b *Backend) {
			a := &allocation{blk: block{ptr: 0x1000, size: 512}, n: 8}
			b.Free((&buffer{dev: b.dev, alloc: a, ptr: 0x1000, n: 8, dtype: backend.F32}).Slice(1, 2))
		}, "cuda: Free of a view; free the buffer Alloc returned"},
		{"attention_forward/bad=head", func(b *Backend) {
			f := func(n int) backend.Buffer { return &buffer{dev: b.dev, ptr: 0x1000, n: n, dtype: backend.F32} }
			b.AttentionForward(f(2*128), f(2*2), f(2*3*128), 1, 2, 128, 1)
		}, "cuda: AttentionForward: head size 128: the CUDA attention kernels take heads of at most 64 channels"},
		{"cached_attention/bad=block", func(b *Backend) {
			f := func(n int) backend.Buffer { return &buffer{dev: b.dev, ptr: 0x1000, n: n, dtype: backend.F32} }
			cache := backend.KVCache{K: f(4 * 2 * 8), V: f(4 * 2 * 8), BlockSize: 2}
			b.CachedAttention(f(1*8), f(1*3*8), cache, []backend.CachedSeq{{Row: 0, Len: 1, Pos: 0, Blocks: []int32{4}}}, 8, 2)
		}, "cuda: CachedAttention: sequence 0 uses block 4 of 4"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := fakeHandle(0)
			c.call(b)
			err := b.sticky()
			if err == nil {
				t.Fatal("no error recorded")
			}
			if err.Error() != c.want {
				t.Errorf("error %q, want %q", err, c.want)
			}
			if len(b.pending) != 0 {
				t.Errorf("%d calls enqueued after the error", len(b.pending))
			}
		})
	}
}

// fakeCompiler is NVRTC for the CUBIN cache's tests.
type fakeCompiler struct {
	major, minor int
	compiles     int
}

func (f *fakeCompiler) cache(dir string) *cubinCache {
	return &cubinCache{
		dir:       dir,
		available: func() error { return nil },
		version:   func() (int, int, error) { return f.major, f.minor, nil },
		opts:      []string{"-default-device"},
		compile: func(src []byte, name, arch string, opts ...string) ([]byte, error) {
			f.compiles++
			return []byte("cubin of " + name + " for " + arch + " " + strings.Join(opts, " ")), nil
		},
	}
}

func TestCubinCache(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "modeld", "cuda")
	f := &fakeCompiler{major: 12, minor: 4}
	c := f.cache(dir)
	m := kernelModule{Name: "elementwise", CU: []byte("extern \"C\" __global__ void k() {}\n")}

	image, cached, err := c.cubin(m, "sm_90", 12040)
	if err != nil || cached || string(image) != "cubin of elementwise.cu for sm_90 -default-device" {
		t.Fatalf("first: %q, cached %t, %v", image, cached, err)
	}
	image2, cached, err := c.cubin(m, "sm_90", 12080)
	if err != nil || !cached || !slices.Equal(image, image2) || f.compiles != 1 {
		t.Fatalf("second: %q, cached %t, %v, %d compiles; want the cached CUBIN", image2, cached, err, f.compiles)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 1 || !strings.HasSuffix(files[0], ".cubin") || len(filepath.Base(files[0])) != 64+len(".cubin") {
		t.Errorf("cache folder holds %v, want one <sha256>.cubin (no temporary file left)", files)
	}
	// Another architecture, another compiler version or another source is another CUBIN.
	if _, cached, _ := c.cubin(m, "sm_80", 12040); cached {
		t.Error("sm_80 served the CUBIN of sm_90")
	}
	f.minor = 8
	if _, cached, _ := c.cubin(m, "sm_90", 12080); cached {
		t.Error("NVRTC 12.8 served the CUBIN of NVRTC 12.4")
	}
	m2 := m
	m2.CU = append(slices.Clone(m.CU), '\n')
	if _, cached, _ := c.cubin(m2, "sm_90", 12080); cached {
		t.Error("a changed source served the old CUBIN")
	}
	c.opts = []string{"-default-device", "-lineinfo"}
	if _, cached, _ := c.cubin(m2, "sm_90", 12080); cached {
		t.Error("other options served the old CUBIN")
	}
	c.forget(m2, "sm_90")
	if _, cached, _ := c.cubin(m2, "sm_90", 12080); cached {
		t.Error("forget left the CUBIN in the cache")
	}
	// An NVRTC of a newer major than the driver makes no CUBIN.
	f.major = 13
	if _, _, err := c.cubin(m, "sm_90", 12080); err == nil || !strings.Contains(err.Error(), "newer than the CUDA 12.8 driver") {
		t.Errorf("NVRTC 13 with a CUDA 12.8 driver: %v", err)
	}
	// Without a cache folder every call compiles.
	f.major = 12
	n := f.compiles
	nc := f.cache("")
	nc.cubin(m, "sm_90", 12080)
	nc.cubin(m, "sm_90", 12080)
	if f.compiles != n+2 {
		t.Errorf("without a cache folder: %d compiles, want 2", f.compiles-n)
	}
}

// TestKernelsCompileToCUBIN compiles every kernel module for a real architecture with the
// NVRTC of this machine, as Open does on a GPU machine with NVRTC, where it is present.
func TestKernelsCompileToCUBIN(t *testing.T) {
	if err := nvrtc.Available(); err != nil {
		t.Skipf("no NVRTC: %v", err)
	}
	if testing.Short() {
		t.Skip("compiling every kernel takes a while")
	}
	major, minor, _ := nvrtc.Version()
	c := newCubinCache()
	c.dir = t.TempDir()
	mods := kernelModules()
	if len(mods) == 0 {
		t.Fatal("no kernel modules")
	}
	for i, r := range c.all(mods, "sm_80", 1000*major+10*minor) {
		if r.err != nil {
			t.Errorf("%s: %v", mods[i].Name, r.err)
			continue
		}
		if len(r.image) < 4 || string(r.image[1:4]) != "ELF" {
			t.Errorf("%s: the CUBIN is not an ELF file", mods[i].Name)
		}
	}
	// Every module's CUBIN is in the cache, so the next start compiles nothing.
	if files, _ := filepath.Glob(filepath.Join(c.dir, "*.cubin")); len(files) != len(mods) {
		t.Errorf("the cache holds %d CUBINs, want %d (one a module)", len(files), len(mods))
	}
	for i, r := range c.all(mods, "sm_80", 1000*major+10*minor) {
		if r.err != nil || !r.cached {
			t.Errorf("%s: second lookup: cached %t, %v; want the cached CUBIN", mods[i].Name, r.cached, r.err)
		}
	}
}
