// Package backendtest is the conformance suite that every [backend.Backend] passes: the same table
// of kernels and shapes, run on the backend under test and on the CPU reference
// ([cpu.NewReference]), compared element by element, in the style of ggml's test-backend-ops and
// gomlx's backendtest.RunAll.
//
// A backend's test file is one line:
//
//	func TestConformance(t *testing.T) {
//		backendtest.RunAll(t, func() backend.Backend { return cpu.New() })
//	}
//
// A backend that may be missing on the machine (CUDA without a driver) skips in its test before
// calling RunAll, with the reason.
//
// What RunAll checks, for every kernel of [backend.Backend]:
//
//   - Agreement with the reference over odd sizes (1, 3, 17, 33) and GPT-2 124M sizes (768, 2304,
//     3072, 50257), within a per-kernel tolerance |got-want| <= atol + rtol*|want| that is stated,
//     with its reason, next to each kernel (tolerances.go). Pure data movement (Upload, Download,
//     Copy, Gather, the KV-cache write) must be bit-exact.
//   - NaN/Inf agreement: inputs holding NaN and ±Inf must give NaN and ±Inf at the same positions.
//   - No writes outside the outputs: every tensor is a view (Buffer.Slice) into a larger allocation
//     whose elements before and after the view hold a sentinel that must survive the kernel; inputs
//     must come back bit for bit; KV-cache blocks that a batch does not use must stay untouched.
//   - The += contract of backward kernels: gradient outputs start from random values, not zero.
//   - Gradients by central finite differences, on the reference and on the backend under test, for
//     the backward kernels of the encoder, layer norm, matmul, attention, GELU and cross-entropy.
//   - Errors: a kernel given inconsistent sizes, an out-of-range cross-entropy target or an
//     out-of-range KV-cache block makes Sync fail, and the error is sticky.
//   - Optional interfaces: [backend.FlashAttention], when offered, against the reference's
//     AttentionForward and AttentionBackward; [backend.BF16Weights], when offered, against the
//     reference's MatmulForward on the widened weights.
//
// Inputs come from a math/rand/v2 generator seeded from the fixed seed and the subtest's name, so
// every subtest sees the same numbers whether it runs alone (-run) or with the others. Subtests
// are named key=value, for example "TestConformance/kernel=matmul_forward/n=4/c=768/oc=2304/bias=true",
// so that -run selects by kernel and shape.
package backendtest

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/backend/cpu"
)

// RunAll runs the conformance suite on the backends that open returns, as subtests of t.
//
// open is called once per subtest, and once more at the start to learn the backend's name and
// optional interfaces; each call must return a backend whose sticky error is its own, because the
// error checks leave their backend failed (a cheap handle on a shared device is fine). RunAll
// closes every backend it opens. The subtests run one after another, never in parallel, since
// backends are not safe for concurrent use and a device is usually owned by one goroutine.
func RunAll(t *testing.T, open func() backend.Backend) {
	t.Helper()
	probe := open()
	name := probe.Name()
	_, flash := probe.(backend.FlashAttention)
	_, bf16 := probe.(backend.BF16Weights)
	if err := probe.Close(); err != nil {
		t.Errorf("%s: Close: %v", name, err)
	}
	t.Logf("backend %q against %q", name, cpu.NewReference().Name())

	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) { g.run(t, open) })
	}
	t.Run("kernel=flash_attention", func(t *testing.T) {
		if !flash {
			t.Logf("%s does not offer backend.FlashAttention; the model composes AttentionForward/Backward", name)
			return
		}
		testFlashAttention(t, open)
	})
	t.Run("kernel=matmul_forward_bf16", func(t *testing.T) {
		if !bf16 {
			t.Logf("%s does not offer backend.BF16Weights; the model keeps float32 weights", name)
			return
		}
		testBF16Weights(t, open)
	})
	t.Run("check=finite_difference", func(t *testing.T) { testFiniteDifferences(t, open) })
	t.Run("check=sticky_error", func(t *testing.T) { testErrors(t, open) })
}

// groups are the kernel comparisons, in the order of the Backend interface.
var groups = []struct {
	name string
	run  func(t *testing.T, open func() backend.Backend)
}{
	{"kernel=upload_download", testUploadDownload},
	{"kernel=upload_int32", testUploadInt32},
	{"kernel=zero", testZero},
	{"kernel=copy", testCopy},
	{"kernel=encoder_forward", testEncoderForward},
	{"kernel=encoder_backward", testEncoderBackward},
	{"kernel=layernorm_forward", testLayerNormForward},
	{"kernel=layernorm_backward", testLayerNormBackward},
	{"kernel=matmul_forward", testMatmulForward},
	{"kernel=matmul_backward", testMatmulBackward},
	{"kernel=attention_forward", testAttentionForward},
	{"kernel=attention_backward", testAttentionBackward},
	{"kernel=gelu_forward", testGELUForward},
	{"kernel=gelu_backward", testGELUBackward},
	{"kernel=residual_forward", testResidualForward},
	{"kernel=residual_backward", testResidualBackward},
	{"kernel=crossentropy_forward", testCrossEntropyForward},
	{"kernel=crossentropy_backward", testCrossEntropyBackward},
	{"kernel=adamw_update", testAdamW},
	{"kernel=sum_squares", testSumSquares},
	{"kernel=cached_attention", testCachedAttention},
	{"kernel=gather", testGather},
}

const (
	// seed is the fixed seed of every subtest's generator (mixed with the subtest's name).
	seed = 0x6d6f64656c64 // "modeld"

	// lead is the number of elements before every view: a head sentinel that catches writes
	// before the output, and a non-zero view offset that a backend must honour. 16 float32 are
	// 64 bytes, so the view keeps any alignment a backend's vectorised loads may need.
	lead = 16
	// tail is the number of elements after every view: the tail sentinel that catches overruns.
	tail = 17
	// sentinel fills the lead and tail of float32 allocations.
	sentinel float32 = 1234.5
	// sentinelI32 fills the lead and tail of int32 allocations; it is a valid token id of the
	// identity embedding readI32 uses, so int32 buffers can be read back whole.
	sentinelI32 int32 = 12345
	// poison fills forward outputs before the kernel: an element the kernel fails to write shows
	// up as this value.
	poison float32 = -4321.25
)

// Sides of a pair: index 0 is the reference, 1 the backend under test.
const (
	ref = 0
	dut = 1
)

// newRand returns the generator of the subtest called name. It is seeded from the part of the
// name below RunAll ("kernel=gelu_forward/n=17"), so that every backend's test sees the same
// inputs whatever its test function is called.
func newRand(name string) *rand.Rand {
	start := len(name)
	for _, key := range []string{"/kernel=", "/check="} {
		if i := strings.Index(name, key); i >= 0 && i < start {
			start = i
		}
	}
	if start < len(name) {
		name = name[start+1:]
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// pair runs the same kernels on the reference and on a backend under test, on identical inputs.
type pair struct {
	t       testing.TB
	ctx     context.Context // for Sync: t.Context(), which Cleanup outlives
	b       [2]backend.Backend
	rng     *rand.Rand
	tensors []*tensor
}

// tensor is one logical tensor allocated on both sides of a pair: a view of n elements at offset
// lead in an allocation of lead+n+tail elements whose lead and tail hold sentinels.
type tensor struct {
	name  string
	shape []int // for messages; the product is n
	n     int
	dtype backend.DType
	body  []float32 // the uploaded contents of the view (F32); never modified
	full  [2]backend.Buffer
	view  [2]backend.Buffer
	// done is set once the tensor's contents were checked (or declared don't-care); the others
	// are inputs and must come back unchanged when the subtest ends.
	done bool
}

// at returns the view on side s, or nil for a nil tensor (an absent optional argument).
func (x *tensor) at(s int) backend.Buffer {
	if x == nil {
		return nil
	}
	return x.view[s]
}

// newPair opens the backend under test and a reference for one subtest. When the subtest ends it
// checks that every tensor not checked as an output still holds its uploaded contents, then closes
// both backends.
func newPair(t testing.TB, open func() backend.Backend) *pair {
	t.Helper()
	p := &pair{t: t, ctx: t.Context(), rng: newRand(t.Name())}
	p.b[ref] = cpu.NewReference()
	p.b[dut] = open()
	t.Cleanup(func() {
		p.ctx = context.WithoutCancel(p.ctx) // t.Context() is done when Cleanup runs
		if !t.Failed() {
			for _, x := range p.tensors {
				if !x.done && x.dtype == backend.F32 {
					p.expectUnchanged(x)
				}
			}
		}
		for _, b := range p.b {
			if err := b.Close(); err != nil {
				t.Errorf("%s: Close: %v", b.Name(), err)
			}
		}
	})
	return p
}

// who names side s in messages.
func (p *pair) who(s int) string {
	if s == ref {
		return "reference " + p.b[ref].Name()
	}
	return p.b[dut].Name()
}

// sentinels and sentinelsI32 are the host data of the leads and tails; never modified.
var (
	sentinels    = filled(max(lead, tail), sentinel)
	sentinelsI32 = filled(max(lead, tail), sentinelI32)
)

// allocate allocates lead+n+tail elements of dtype on side s and returns the allocation and the
// view of the n elements after the lead.
func (p *pair) allocate(s int, name string, dtype backend.DType, n int) (full, view backend.Buffer) {
	p.t.Helper()
	full, err := p.b[s].Alloc(dtype, lead+n+tail)
	if err != nil {
		p.t.Fatalf("%s: Alloc(%v, %d) for %s: %v", p.who(s), dtype, lead+n+tail, name, err)
	}
	return full, full.Slice(lead, n)
}

// in is an input tensor holding body (which the tensor then owns: it must not be modified);
// shape is for messages only. The lead, the body and the tail are three Uploads into views.
func (p *pair) in(name string, body []float32, shape ...int) *tensor {
	p.t.Helper()
	n := len(body)
	if shape == nil {
		shape = []int{n}
	}
	x := &tensor{name: name, shape: shape, n: n, dtype: backend.F32, body: body}
	for s, b := range p.b {
		x.full[s], x.view[s] = p.allocate(s, name, backend.F32, n)
		b.Upload(x.full[s].Slice(0, lead), sentinels[:lead])
		b.Upload(x.view[s], body)
		b.Upload(x.full[s].Slice(lead+n, tail), sentinels[:tail])
	}
	p.tensors = append(p.tensors, x)
	return x
}

// out is a forward output of n elements, filled with poison.
func (p *pair) out(name string, n int, shape ...int) *tensor {
	p.t.Helper()
	return p.in(name, filled(n, poison), shape...)
}

// grad is a gradient output of n elements that starts from random values, so that a backward
// kernel that writes instead of adding (+=) is caught.
func (p *pair) grad(name string, n int, shape ...int) *tensor {
	p.t.Helper()
	return p.in(name, p.normal(n, 1), shape...)
}

// ids is an int32 input tensor holding body between sentinels.
func (p *pair) ids(name string, body []int32) *tensor {
	p.t.Helper()
	n := len(body)
	x := &tensor{name: name, shape: []int{n}, n: n, dtype: backend.I32}
	for s, b := range p.b {
		x.full[s], x.view[s] = p.allocate(s, name, backend.I32, n)
		b.UploadInt32(x.full[s].Slice(0, lead), sentinelsI32[:lead])
		b.UploadInt32(x.view[s], body)
		b.UploadInt32(x.full[s].Slice(lead+n, tail), sentinelsI32[:tail])
	}
	p.tensors = append(p.tensors, x)
	return x
}

// run calls kernel on both sides (the reference first) and waits for both.
func (p *pair) run(kernel func(b backend.Backend, s int)) {
	p.t.Helper()
	for s, b := range p.b {
		kernel(b, s)
	}
	p.sync()
}

// sync waits for both sides; an error is fatal.
func (p *pair) sync() {
	p.t.Helper()
	for s, b := range p.b {
		if err := b.Sync(p.ctx); err != nil {
			p.t.Fatalf("%s: Sync: %v", p.who(s), err)
		}
	}
}

// chunk is the number of elements scan downloads at a time, which bounds the host memory a
// check takes whatever the tensor's size.
const chunk = 1 << 20

// scan downloads the allocation of the F32 tensor x on both sides, chunk by chunk. It reports
// any overwritten sentinel in the lead or the tail, and calls fn with each run of view elements:
// off is the index in the view of got[s][0].
func (p *pair) scan(x *tensor, fn func(off int, got [2][]float32)) {
	p.t.Helper()
	total := lead + x.n + tail
	var buf [2][]float32
	var bad [2][]string
	for start := 0; start < total; start += chunk {
		m := min(chunk, total-start)
		var got [2][]float32
		for s, b := range p.b {
			if buf[s] == nil {
				buf[s] = make([]float32, min(chunk, total))
			}
			got[s] = buf[s][:m]
			b.Download(got[s], x.full[s].Slice(start, m))
		}
		p.sync()
		// The view's part of this chunk is [lo, hi) of the allocation.
		lo, hi := max(start, lead), min(start+m, lead+x.n)
		for s := range got {
			for i, v := range got[s] {
				if j := start + i; (j < lo || j >= hi) && math.Float32bits(v) != math.Float32bits(sentinel) && len(bad[s]) < 4 {
					bad[s] = append(bad[s], fmt.Sprintf("element %d of the view is %v", j-lead, v))
				}
			}
		}
		if lo < hi {
			fn(lo-lead, [2][]float32{got[ref][lo-start : hi-start], got[dut][lo-start : hi-start]})
		}
	}
	for s := range bad {
		if len(bad[s]) > 0 {
			p.t.Errorf("%s wrote outside %s %v (sentinel %v overwritten): %v", p.who(s), x.name, x.shape, sentinel, bad[s])
		}
	}
}

// check compares output x of the backend under test with the reference within tl, and checks the
// sentinels around it on both sides.
func (p *pair) check(x *tensor, tl tol) {
	p.t.Helper()
	x.done = true
	c := newComparison(x.shape, tl)
	p.scan(x, func(off int, got [2][]float32) { c.add(off, got[ref], got[dut]) })
	c.report(p.t, fmt.Sprintf("%s: %s differs from the reference", p.b[dut].Name(), x.name))
	p.t.Logf("%s: worst difference from the reference is %.3f of the tolerance (%s)", x.name, c.worst, tl)
}

// expect compares output x on both sides with the host values want within tl, and checks the
// sentinels.
func (p *pair) expect(x *tensor, want []float32, tl tol) {
	p.t.Helper()
	x.done = true
	c := [2]*comparison{newComparison(x.shape, tl), newComparison(x.shape, tl)}
	p.scan(x, func(off int, got [2][]float32) {
		for s := range got {
			c[s].add(off, want[off:off+len(got[s])], got[s])
		}
	})
	for s := range c {
		c[s].report(p.t, fmt.Sprintf("%s: %s differs from the expected values", p.who(s), x.name))
	}
}

// expectUnchanged checks that the whole allocation of the input x still holds what was uploaded,
// bit for bit, on both sides.
func (p *pair) expectUnchanged(x *tensor) {
	p.t.Helper()
	x.done = true
	c := [2]*comparison{newComparison(x.shape, bitExact), newComparison(x.shape, bitExact)}
	p.scan(x, func(off int, got [2][]float32) {
		for s := range got {
			c[s].add(off, x.body[off:off+len(got[s])], got[s])
		}
	})
	for s := range c {
		c[s].report(p.t, fmt.Sprintf("%s modified the input %s", p.who(s), x.name))
	}
}

// download returns the view of the F32 tensor x on both sides.
func (p *pair) download(x *tensor) [2][]float32 {
	p.t.Helper()
	var got [2][]float32
	p.scan(x, func(off int, g [2][]float32) {
		for s := range got {
			got[s] = append(got[s], g[s]...)
		}
	})
	return got
}

// ignore declares that x's contents do not matter after the kernel (a side output that only one
// side uses).
func (p *pair) ignore(xs ...*tensor) {
	for _, x := range xs {
		x.done = true
	}
}

// readI32 reads back the whole allocation of the int32 tensor x on both sides, for a Backend
// has no int32 Download: it runs EncoderForward with C=1 over the identity embedding
// wte[i] = i and wpe = 0, which turns ids in [0, 65536) into exact floats. It relies on
// EncoderForward, which kernel=encoder_forward checks on float data.
func (p *pair) readI32(x *tensor) [2][]int32 {
	p.t.Helper()
	const V = 1 << 16
	n := lead + x.n + tail
	var got [2][]int32
	table := iota(V)
	for s, b := range p.b {
		wte, err1 := b.Alloc(backend.F32, V)
		wpe, err2 := b.Alloc(backend.F32, 1)
		pos, err3 := b.Alloc(backend.I32, n)
		out, err4 := b.Alloc(backend.F32, n)
		if err := firstErr(err1, err2, err3, err4); err != nil {
			p.t.Fatalf("%s: Alloc: %v", p.who(s), err)
		}
		b.Upload(wte, table)
		b.EncoderForward(out, x.full[s], pos, wte, wpe, n, 1)
		f := make([]float32, n)
		b.Download(f, out)
		if err := b.Sync(p.ctx); err != nil {
			p.t.Fatalf("%s: reading back int32 %s through EncoderForward: %v", p.who(s), x.name, err)
		}
		got[s] = make([]int32, n)
		for i, v := range f {
			got[s][i] = int32(v)
		}
		for _, buf := range []backend.Buffer{wte, wpe, pos, out} {
			b.Free(buf)
		}
	}
	return got
}

// normal returns n values drawn from N(0, scale^2).
func (p *pair) normal(n int, scale float64) []float32 { return normal(p.rng, n, scale) }

func normal(rng *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * scale)
	}
	return x
}

// randIDs returns n ids in [0, limit) that include 0 and limit-1 (the edges of the table) and
// repeat (so that backward kernels accumulate) whenever n allows.
func randIDs(rng *rand.Rand, n, limit int) []int32 {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(rng.IntN(limit))
	}
	if n >= 2 {
		ids[0], ids[n-1] = int32(limit-1), 0
	}
	if n >= 4 {
		ids[2] = ids[1]
	}
	return ids
}

func fill[T any](x []T, v T) {
	for i := range x {
		x[i] = v
	}
}

// filled returns n copies of v.
func filled[T any](n int, v T) []T {
	x := make([]T, n)
	fill(x, v)
	return x
}

// iota returns 0, 1, ..., n-1 as float32.
func iota(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(i)
	}
	return x
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
