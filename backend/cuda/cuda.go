// Package cuda is the NVIDIA GPU backend: the CUDA driver API and cuBLAS, loaded at run time
// with purego (internal/dl), so that modeld builds with CGO_ENABLED=0 on any machine and uses a
// GPU where one is present.
//
// Registered as "cuda" with priority 10, above "cpu": backend.Open("auto") picks it when it
// opens. Opening loads libcuda.so.1 and the newest libcublas.so.{13,12,11} the driver supports,
// retains the device's primary context, creates one non-blocking stream and one cuBLAS handle,
// loads the kernels (a CUBIN compiled by NVRTC for the device's architecture and cached under
// os.UserCacheDir()/modeld/cuda, else the committed PTX) and runs a smoke test; any failure is
// an error wrapping backend.ErrUnavailable that says why ("no CUDA driver (libcuda.so.1 not
// found)", "no CUDA device", "smoke test: ...").
//
// All work on a GPU goes through one goroutine locked to an OS thread (the device worker), in
// the order it was enqueued, on the one stream: kernels, copies and frees are queued and return
// at once, and Sync waits. Every Backend opened on a GPU shares its device (context, stream,
// cuBLAS handle, kernels and allocator) and has its own sticky error and its own buffers.
// Device memory comes from a caching allocator (size-bucketed free lists, as PyTorch's); out of
// memory is an error wrapping [ErrOutOfMemory].
//
// GEMMs are fp32 (CUBLAS_COMPUTE_32F) for parity with the CPU reference; [Options].TF32 or the
// environment variable MODELD_CUDA_TF32=1 lets them use TF32 tensor cores, several times
// faster for training.
package cuda

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"unsafe"

	"github.com/modeld-dev/modeld/backend"
)

func init() {
	backend.Register("cuda", 10, func() (backend.Backend, error) { return New() })
}

// ErrOutOfMemory is wrapped by the errors of an allocation the device cannot serve, even
// after the allocator gave its cached blocks back. It wraps backend.ErrOutOfMemory.
var ErrOutOfMemory = fmt.Errorf("cuda: out of device memory: %w", backend.ErrOutOfMemory)

// isOutOfMemory reports whether target is ErrOutOfMemory or one it wraps, for the Is methods
// of CUDA and cuBLAS errors.
func isOutOfMemory(target error) bool {
	return target == ErrOutOfMemory || errors.Is(ErrOutOfMemory, target)
}

// Options configure a CUDA backend.
type Options struct {
	// Device is the CUDA device ordinal, as the driver numbers them (CUDA_VISIBLE_DEVICES
	// applies); 0 is the first.
	Device int
	// TF32 makes fp32 GEMMs round their inputs to TF32 (10-bit mantissa) on the tensor cores
	// (CUBLAS_COMPUTE_32F_FAST_TF32, Ampere and later): several times faster, with products
	// of about 1e-3 relative error, as PyTorch's allow_tf32. Off, GEMMs are IEEE fp32.
	TF32 bool
}

// Backend is a handle on one GPU that implements backend.Backend. Handles on the same GPU share
// its device; each has its own sticky error and buffers. Like every backend it is not safe for
// concurrent use, but different handles may be used from different goroutines.
type Backend struct {
	dev  *device
	tf32 bool

	mu  sync.Mutex // guards err, which the device worker sets too
	err error      // the first error, sticky

	pending []func()                 // calls not yet sent to the worker
	sent    uint64                   // the number of the last batch this handle sent (device.send)
	live    map[*allocation]struct{} // this handle's allocations, freed by Close
	closed  bool
}

var _ backend.Backend = (*Backend)(nil)

// New opens device 0 with TF32 GEMMs when the environment variable MODELD_CUDA_TF32 is "1".
// It returns an error wrapping backend.ErrUnavailable when the machine cannot run CUDA.
func New() (*Backend, error) {
	return NewWithOptions(Options{TF32: os.Getenv("MODELD_CUDA_TF32") == "1"})
}

// NewWithOptions opens a backend on the GPU o.Device. The first open of a GPU in the process
// loads the libraries and kernels and runs the smoke test (up to seconds, or a minute when
// NVRTC compiles the kernels for the first time on this machine); later opens share it. It
// returns an error wrapping backend.ErrUnavailable when the GPU cannot be used.
func NewWithOptions(o Options) (*Backend, error) {
	d, err := sharedDevice(o.Device)
	if err != nil {
		return nil, err
	}
	return newHandle(d, o), nil
}

func newHandle(d *device, o Options) *Backend {
	return &Backend{dev: d, tf32: o.TF32, live: map[*allocation]struct{}{}}
}

// Name returns "cuda".
func (b *Backend) Name() string { return "cuda" }

// Device describes the GPU, the driver, cuBLAS and how the kernels were loaded, for logs.
func (b *Backend) Device() string {
	b.flush()
	var s string
	b.dev.do(func() error { s = b.dev.describe(); return nil })
	return s
}

// allocation is one block from the device's allocator, shared by a buffer and its views.
type allocation struct {
	blk   block
	n     int // elements
	freed bool
}

// buffer is a run of n elements of device memory at ptr: a whole allocation or a view of one.
// An empty buffer has no allocation.
type buffer struct {
	dev   *device
	alloc *allocation
	ptr   uint64 // device address of element 0
	n     int
	dtype backend.DType
}

func (x *buffer) DType() backend.DType { return x.dtype }
func (x *buffer) Len() int             { return x.n }

// Slice returns the view of elements [off, off+n). It panics when the range is outside the
// buffer, as slicing does.
func (x *buffer) Slice(off, n int) backend.Buffer {
	if off < 0 || n < 0 || off+n > x.n {
		panic(fmt.Sprintf("cuda: Slice(%d, %d) of a buffer of %d elements", off, n, x.n))
	}
	return &buffer{dev: x.dev, alloc: x.alloc, ptr: x.ptr + uint64(off)*uint64(x.dtype.Size()), n: n, dtype: x.dtype}
}

// fail records err as the handle's error unless one is recorded already (the first error is
// sticky: every later Sync returns it). Kernels given bad sizes call it; so does the worker
// when a call fails.
func (b *Backend) fail(err error) {
	if err == nil {
		return
	}
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
}

// failed reports whether an error is recorded; kernels enqueue nothing then.
func (b *Backend) failed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err != nil
}

func (b *Backend) sticky() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// batchLen is how many calls a handle collects before it hands them to the worker: one
// channel send (and one wake-up of the worker's thread) per batch rather than per kernel.
const batchLen = 32

// enqueue queues op to run on the worker in order after everything enqueued before it.
func (b *Backend) enqueue(op func()) {
	if b.closed {
		b.fail(errors.New("cuda: backend used after Close"))
		return
	}
	b.pending = append(b.pending, op)
	if len(b.pending) >= batchLen {
		b.flush()
	}
}

// flush hands the queued calls to the worker.
func (b *Backend) flush() {
	if len(b.pending) > 0 {
		b.sent = b.dev.send(b.pending)
		b.pending = nil
	}
}

// call returns a queued op that runs fn on the worker and records its error.
func (b *Backend) call(fn func(d *device) error) func() {
	return func() { b.fail(fn(b.dev)) }
}

// operand returns the device address of the argument arg of kernel after checking that it is
// a buffer of this GPU of dtype with n elements; otherwise it records an error and returns
// false.
func (b *Backend) operand(kernel, arg string, buf backend.Buffer, dtype backend.DType, n int) (uint64, bool) {
	x, ok := buf.(*buffer)
	switch {
	case !ok || x == nil:
		b.fail(fmt.Errorf("cuda: %s: %s is not a cuda buffer (%T)", kernel, arg, buf))
	case x.dev != b.dev:
		b.fail(fmt.Errorf("cuda: %s: %s is a buffer of device %d, not %d", kernel, arg, x.dev.ordinal, b.dev.ordinal))
	case x.dtype != dtype:
		b.fail(fmt.Errorf("cuda: %s: %s is %v, want %v", kernel, arg, x.dtype, dtype))
	case x.n != n:
		b.fail(fmt.Errorf("cuda: %s: %s has %d elements, want %d", kernel, arg, x.n, n))
	default:
		return x.ptr, true
	}
	return 0, false
}

// Alloc returns a zeroed buffer of n elements from the caching allocator. It fails for a
// negative size or an unknown dtype, after Close, and with an error wrapping ErrOutOfMemory
// when the GPU has no room.
func (b *Backend) Alloc(dtype backend.DType, n int) (backend.Buffer, error) {
	switch {
	case dtype != backend.F32 && dtype != backend.I32:
		return nil, fmt.Errorf("cuda: alloc of unknown dtype %v", dtype)
	case n < 0:
		return nil, fmt.Errorf("cuda: alloc of %d elements", n)
	case b.closed:
		return nil, errors.New("cuda: alloc after Close")
	case n == 0:
		return &buffer{dev: b.dev, dtype: dtype}, nil
	}
	a, err := b.alloc(n, true)
	if err != nil {
		return nil, err
	}
	return &buffer{dev: b.dev, alloc: a, ptr: a.blk.ptr, n: n, dtype: dtype}, nil
}

// alloc gets a block for n 4-byte elements: from the cache without waiting, else from the
// driver on the worker. When zero is set it queues the block's zeroing, which runs before
// anything enqueued after it.
func (b *Backend) alloc(n int, zero bool) (*allocation, error) {
	bytes := uint64(n) * 4
	blk, ok := b.dev.mem.take(bytes)
	if !ok {
		b.flush()
		err := b.dev.do(func() error {
			var err error
			blk, err = b.dev.mem.alloc(bytes, b.dev.running)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	a := &allocation{blk: blk, n: n}
	b.live[a] = struct{}{}
	if zero {
		b.enqueue(b.call(func(d *device) error {
			return d.drv.check("cuMemsetD32Async", d.drv.memsetD32Async(blk.ptr, 0, uintptr(n), d.stream))
		}))
	}
	return a, nil
}

// Free gives buf's memory back to the allocator once the work enqueued before it is done. buf
// must be a buffer that Alloc returned, not a view; freeing twice records an error.
func (b *Backend) Free(buf backend.Buffer) {
	x, ok := buf.(*buffer)
	if !ok || x == nil || x.alloc == nil {
		if buf != nil && !ok {
			b.fail(fmt.Errorf("cuda: Free of %T, not a cuda buffer", buf))
		}
		return
	}
	a := x.alloc
	switch {
	case x.dev != b.dev:
		b.fail(fmt.Errorf("cuda: Free of a buffer of device %d on device %d", x.dev.ordinal, b.dev.ordinal))
	case x.ptr != a.blk.ptr || x.n != a.n:
		b.fail(errors.New("cuda: Free of a view; free the buffer Alloc returned"))
	case a.freed:
		b.fail(errors.New("cuda: Free of a buffer already freed"))
	default:
		b.release(a)
	}
}

// release gives a back to the allocator. The calls queued so far may still use it, so they go
// to the worker first: whoever takes the block next queues its work after them.
func (b *Backend) release(a *allocation) {
	a.freed = true
	delete(b.live, a)
	b.flush()
	b.dev.mem.release(a.blk, b.sent)
}

// Upload copies src into dst (F32) on the stream. The driver stages pageable memory before the
// call returns on the worker, so src may change after Sync.
func (b *Backend) Upload(dst backend.Buffer, src []float32) {
	if p, ok := b.operand("Upload", "dst", dst, backend.F32, len(src)); ok && len(src) > 0 {
		b.copyIn(p, unsafe.Pointer(&src[0]), len(src))
	}
}

// UploadInt32 copies src into dst (I32) on the stream.
func (b *Backend) UploadInt32(dst backend.Buffer, src []int32) {
	if p, ok := b.operand("UploadInt32", "dst", dst, backend.I32, len(src)); ok && len(src) > 0 {
		b.copyIn(p, unsafe.Pointer(&src[0]), len(src))
	}
}

// copyIn queues the copy of n 4-byte elements from host memory at src to dst. The queued
// call holds src, so the Go memory stays alive until the copy runs.
func (b *Backend) copyIn(dst uint64, src unsafe.Pointer, n int) {
	b.enqueue(b.call(func(d *device) error {
		return d.drv.check("cuMemcpyHtoDAsync_v2", d.drv.memcpyHtoDAsync(dst, src, uintptr(n)*4, d.stream))
	}))
}

// Download copies src (F32) into dst. From pageable memory the driver's copy returns when it
// is done, so dst is complete once Sync returns.
func (b *Backend) Download(dst []float32, src backend.Buffer) {
	p, ok := b.operand("Download", "src", src, backend.F32, len(dst))
	if !ok || len(dst) == 0 {
		return
	}
	b.enqueue(b.call(func(d *device) error {
		return d.drv.check("cuMemcpyDtoHAsync_v2", d.drv.memcpyDtoHAsync(unsafe.Pointer(&dst[0]), p, uintptr(len(dst))*4, d.stream))
	}))
}

// Sync waits for the calls enqueued so far and returns the handle's first error, or ctx's
// error if ctx ends first (the work goes on).
func (b *Backend) Sync(ctx context.Context) error {
	b.flush()
	if err := b.sticky(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	done := make(chan error, 1)
	b.dev.send([]func(){func() { done <- b.dev.syncStream() }})
	select {
	case err := <-done:
		b.fail(err)
	case <-ctx.Done():
		if err := b.sticky(); err != nil {
			return err
		}
		return ctx.Err()
	}
	return b.sticky()
}

// Close gives the handle's buffers back to the allocator once its work is done, and waits for
// that work. It returns an error only when the wait fails on a handle with no error recorded
// (one recorded is Sync's to return). The device stays open for other handles.
func (b *Backend) Close() error {
	if b.closed {
		return nil
	}
	for a := range b.live {
		if !a.freed {
			b.release(a)
		}
	}
	b.closed = true
	b.flush()
	err := b.dev.do(b.dev.syncStream)
	if b.sticky() != nil {
		return nil
	}
	return err
}

// Zero sets every element of buf to 0.
func (b *Backend) Zero(buf backend.Buffer) {
	x, ok := buf.(*buffer)
	if !ok || x == nil {
		b.fail(fmt.Errorf("cuda: Zero: not a cuda buffer (%T)", buf))
		return
	}
	p, ok := b.operand("Zero", "buf", buf, x.dtype, x.n)
	if !ok || x.n == 0 {
		return
	}
	b.enqueue(b.call(func(d *device) error {
		return d.drv.check("cuMemsetD32Async", d.drv.memsetD32Async(p, 0, uintptr(x.n), d.stream))
	}))
}

// Copy copies src into dst, device to device; they have the same dtype and length.
func (b *Backend) Copy(dst, src backend.Buffer) {
	s, ok := src.(*buffer)
	if !ok || s == nil {
		b.fail(fmt.Errorf("cuda: Copy: src is not a cuda buffer (%T)", src))
		return
	}
	pd, ok1 := b.operand("Copy", "dst", dst, s.dtype, s.n)
	ps, ok2 := b.operand("Copy", "src", src, s.dtype, s.n)
	if !ok1 || !ok2 || s.n == 0 {
		return
	}
	b.enqueue(b.call(func(d *device) error {
		return d.drv.check("cuMemcpyDtoDAsync_v2", d.drv.memcpyDtoDAsync(pd, ps, uintptr(s.n)*4, d.stream))
	}))
}

// Gather implements backend.Backend: row i of out(len(idx),C) = row idx[i] of inp(rows,C).
// idx is checked on the host (a row outside [0, rows) records an error), copied to a scratch
// on the device and read by the kernel gather_rows.
func (b *Backend) Gather(out, inp backend.Buffer, idx []int32, C int) {
	const k = "Gather"
	if b.failed() {
		return
	}
	if C <= 0 {
		b.failf(k, "C=%d", C)
		return
	}
	if inp == nil {
		b.failf(k, "inp is nil")
		return
	}
	rows := inp.Len() / C
	_, ok1 := b.operand(k, "out", out, backend.F32, len(idx)*C)
	_, ok2 := b.operand(k, "inp", inp, backend.F32, rows*C)
	if !ok1 || !ok2 {
		return
	}
	for i, r := range idx {
		if r < 0 || int(r) >= rows {
			b.failf(k, "row %d at row %d is outside [0, %d)", r, i, rows) // the CPU backend's words
			return
		}
	}
	if len(idx) == 0 {
		return
	}
	a, err := b.alloc(len(idx), false)
	if err != nil {
		b.fail(fmt.Errorf("cuda: %s: scratch of %d ids: %w", k, len(idx), err))
		return
	}
	ids := &buffer{dev: b.dev, alloc: a, ptr: a.blk.ptr, n: len(idx), dtype: backend.I32}
	// The caller may reuse idx as soon as Gather returns.
	b.UploadInt32(ids, append([]int32(nil), idx...))
	b.launch("gather_rows", gridFor(len(idx)*C), dim3{X: 256}, 0, out, inp, ids, len(idx), C)
	b.release(a)
}

// gridFor is the grid of 256-thread blocks for a grid-stride loop over n elements (add_bias,
// gather_rows): one element per thread, up to 65536 blocks, which fill any GPU; past that each
// thread loops.
func gridFor(n int) dim3 { return dim3{X: min(blocks(n, 256), 1<<16)} }

// dims checks that the GEMM sizes are non-negative and fit cuBLAS's int.
func (b *Backend) dims(kernel string, sizes ...int) bool {
	for _, s := range sizes {
		if s < 0 || s > math.MaxInt32 {
			b.failf(kernel, "size %d", s)
			return false
		}
	}
	return true
}

// gemm queues one cuBLAS GEMM in the handle's precision.
func (b *Backend) gemm(g gemm) {
	compute := int32(cublasCompute32F)
	if b.tf32 {
		compute = cublasCompute32FFastTF32
	}
	b.enqueue(b.call(func(d *device) error { return d.blas.run(d.handle, g, compute) }))
}

// MatmulForward: out(N,OC) = inp(N,C)·weight(OC,C)^T + bias(OC), one cuBLAS GEMM then the
// kernel add_bias. bias may be nil.
func (b *Backend) MatmulForward(out, inp, weight, bias backend.Buffer, N, C, OC int) {
	const k = "MatmulForward"
	if b.failed() || !b.dims(k, N, C, OC) {
		return
	}
	o, ok1 := b.operand(k, "out", out, backend.F32, N*OC)
	x, ok2 := b.operand(k, "inp", inp, backend.F32, N*C)
	w, ok3 := b.operand(k, "weight", weight, backend.F32, OC*C)
	ok4 := true
	if bias != nil {
		_, ok4 = b.operand(k, "bias", bias, backend.F32, OC)
	}
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return
	}
	b.gemm(forwardGemm(o, x, w, N, C, OC))
	if bias != nil && N*OC > 0 {
		b.launch("add_bias", gridFor(N*OC), dim3{X: 256}, 0, out, bias, N, OC)
	}
}

// MatmulBackward adds dinp(N,C) += dout·weight and dweight(OC,C) += dout^T·inp with cuBLAS
// (beta 1), and dbias(OC) += the column sums of dout(N,OC) with the kernel bias_backward.
// dweight and dbias may be nil.
func (b *Backend) MatmulBackward(dinp, dweight, dbias, dout, inp, weight backend.Buffer, N, C, OC int) {
	const k = "MatmulBackward"
	if b.failed() || !b.dims(k, N, C, OC) {
		return
	}
	dx, ok1 := b.operand(k, "dinp", dinp, backend.F32, N*C)
	d, ok2 := b.operand(k, "dout", dout, backend.F32, N*OC)
	x, ok3 := b.operand(k, "inp", inp, backend.F32, N*C)
	w, ok4 := b.operand(k, "weight", weight, backend.F32, OC*C)
	var dw uint64
	ok5, ok6 := true, true
	if dweight != nil {
		dw, ok5 = b.operand(k, "dweight", dweight, backend.F32, OC*C)
	}
	if dbias != nil {
		_, ok6 = b.operand(k, "dbias", dbias, backend.F32, OC)
	}
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 {
		return
	}
	b.gemm(backwardInputGemm(dx, d, w, N, C, OC))
	if dweight != nil {
		b.gemm(backwardWeightGemm(dw, d, x, N, C, OC))
	}
	if dbias != nil && OC > 0 {
		// bias_backward: a block of 32x32 threads sums 32 columns.
		b.launch("bias_backward", dim3{X: blocks(OC, 32)}, dim3{X: 32, Y: 32}, 0, dbias, dout, N, OC)
	}
}
