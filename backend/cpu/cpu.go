// Package cpu is the pure-Go backend: the reference implementation of every kernel, the test
// oracle for every other backend, and the fallback where no GPU exists.
//
// Two variants share this package. [NewReference] runs plain loops that follow llm.c's
// train_gpt2.c line by line; they are slow on purpose, easy to read, and what
// backend/backendtest compares every backend with. [New], registered as "cpu", runs the fast
// kernels: the same math spread over all cores (GOMAXPROCS), with a cache- and register-blocked
// matmul. Both run synchronously in the calling goroutine, so Sync only reports the sticky error.
package cpu

import (
	"context"
	"fmt"

	"github.com/modeld-dev/modeld/backend"
)

func init() {
	backend.Register("cpu", 0, func() (backend.Backend, error) { return New(), nil })
}

// Backend is the CPU implementation of backend.Backend. It is not safe for concurrent use.
type Backend struct {
	fast bool
	err  error // the first error, sticky
}

// New returns the fast CPU backend: parallel across GOMAXPROCS cores, blocked matmul.
func New() *Backend { return &Backend{fast: true} }

// NewReference returns the reference CPU backend: single-threaded naive loops, the oracle that
// backend/backendtest checks every backend against.
func NewReference() *Backend { return &Backend{} }

var _ backend.Backend = (*Backend)(nil)

// buffer is host memory: exactly one of f and i is set, according to dtype.
type buffer struct {
	dtype backend.DType
	f     []float32
	i     []int32
}

func (b *buffer) DType() backend.DType { return b.dtype }

func (b *buffer) Len() int {
	if b.dtype == backend.I32 {
		return len(b.i)
	}
	return len(b.f)
}

func (b *buffer) Slice(off, n int) backend.Buffer {
	if off < 0 || n < 0 || off+n > b.Len() {
		panic(fmt.Sprintf("cpu: Slice(%d, %d) of a buffer of %d elements", off, n, b.Len()))
	}
	if b.dtype == backend.I32 {
		return &buffer{dtype: b.dtype, i: b.i[off : off+n : off+n]}
	}
	return &buffer{dtype: b.dtype, f: b.f[off : off+n : off+n]}
}

// Name returns "cpu" for the fast backend and "cpu-reference" for the reference.
func (b *Backend) Name() string {
	if b.fast {
		return "cpu"
	}
	return "cpu-reference"
}

// Alloc returns a zeroed host buffer. It fails for a negative size or an unknown dtype.
func (b *Backend) Alloc(dtype backend.DType, n int) (backend.Buffer, error) {
	if n < 0 {
		return nil, fmt.Errorf("cpu: alloc of %d elements", n)
	}
	switch dtype {
	case backend.F32:
		return &buffer{dtype: dtype, f: make([]float32, n)}, nil
	case backend.I32:
		return &buffer{dtype: dtype, i: make([]int32, n)}, nil
	}
	return nil, fmt.Errorf("cpu: alloc of unknown dtype %v", dtype)
}

// Free drops the backend's reference; the garbage collector reclaims the memory.
func (b *Backend) Free(backend.Buffer) {}

// Sync returns the sticky error, or ctx's error.
func (b *Backend) Sync(ctx context.Context) error {
	if b.err != nil {
		return b.err
	}
	return ctx.Err()
}

// Close does nothing: buffers are garbage collected.
func (b *Backend) Close() error { return nil }

func (b *Backend) fail(format string, args ...any) {
	if b.err == nil {
		b.err = fmt.Errorf("cpu: "+format, args...)
	}
}

// f32 returns buf's float32 elements after checking that it is an F32 buffer of this backend with
// exactly n elements; on a mismatch it records the error and returns nil.
func (b *Backend) f32(kernel, arg string, buf backend.Buffer, n int) []float32 {
	x, ok := buf.(*buffer)
	switch {
	case !ok || x == nil:
		b.fail("%s: %s is not a cpu buffer (%T)", kernel, arg, buf)
	case x.dtype != backend.F32:
		b.fail("%s: %s is %v, want f32", kernel, arg, x.dtype)
	case len(x.f) != n:
		b.fail("%s: %s has %d elements, want %d", kernel, arg, len(x.f), n)
	default:
		return x.f
	}
	return nil
}

// optF32 is f32 for an optional argument: nil stays nil.
func (b *Backend) optF32(kernel, arg string, buf backend.Buffer, n int) []float32 {
	if buf == nil {
		return nil
	}
	return b.f32(kernel, arg, buf, n)
}

// i32 is f32 for I32 buffers.
func (b *Backend) i32(kernel, arg string, buf backend.Buffer, n int) []int32 {
	x, ok := buf.(*buffer)
	switch {
	case !ok || x == nil:
		b.fail("%s: %s is not a cpu buffer (%T)", kernel, arg, buf)
	case x.dtype != backend.I32:
		b.fail("%s: %s is %v, want i32", kernel, arg, x.dtype)
	case len(x.i) != n:
		b.fail("%s: %s has %d elements, want %d", kernel, arg, len(x.i), n)
	default:
		return x.i
	}
	return nil
}

// Upload copies src into dst.
func (b *Backend) Upload(dst backend.Buffer, src []float32) {
	copy(b.f32("Upload", "dst", dst, len(src)), src)
}

// UploadInt32 copies src into dst.
func (b *Backend) UploadInt32(dst backend.Buffer, src []int32) {
	copy(b.i32("UploadInt32", "dst", dst, len(src)), src)
}

// Download copies src into dst.
func (b *Backend) Download(dst []float32, src backend.Buffer) {
	copy(dst, b.f32("Download", "src", src, len(dst)))
}

// Zero sets every element of buf to 0.
func (b *Backend) Zero(buf backend.Buffer) {
	x, ok := buf.(*buffer)
	if !ok || x == nil {
		b.fail("Zero: not a cpu buffer (%T)", buf)
		return
	}
	if !b.fast {
		clear(x.f)
		clear(x.i)
		return
	}
	// The gradients of GPT-2 124M are 497 MB: one core's memclr does not reach the memory's
	// bandwidth.
	parallelFor(len(x.f), 1<<20, func(lo, hi int) { clear(x.f[lo:hi]) })
	parallelFor(len(x.i), 1<<20, func(lo, hi int) { clear(x.i[lo:hi]) })
}

// Copy copies src into dst.
func (b *Backend) Copy(dst, src backend.Buffer) {
	d, ok1 := dst.(*buffer)
	s, ok2 := src.(*buffer)
	if !ok1 || !ok2 || d == nil || s == nil || d.dtype != s.dtype || d.Len() != s.Len() {
		b.fail("Copy: buffers differ in backend, dtype or length")
		return
	}
	copy(d.f, s.f)
	copy(d.i, s.i)
}
