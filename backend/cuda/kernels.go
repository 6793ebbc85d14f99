package cuda

//go:generate go run ./internal/ptxgen

import (
	"context"
	"embed"
	"fmt"
	"math"
	"path"
	"sort"
	"strings"

	"github.com/modeld-dev/modeld/backend"
)

// The kernels of the CUDA backend live in kernels/*.cu, one module per layer family, and are
// compiled by internal/ptxgen (go generate) into the PTX committed beside them: compute_70,
// PTX ISA 7.8 from NVRTC 11.8, which drivers from 520 on load. The CUDA C++ follows llm.c's
// dev/cuda kernels and uses the layouts of the CPU reference (backend/cpu/ref.go); each file's
// header gives its sources.
//
// Arguments are checked here as the CPU backend checks them (backend/cpu/kernels.go), with the
// same sizes; a mismatch records the sticky error and enqueues nothing. Ids that live on the
// device (tokens, positions, cross-entropy targets) are checked by the kernels, which never
// index with a bad id and write a bad row (the first thread to find one wins: not always the
// lowest row, which the CPU backend names) into a small error buffer that the method reads
// back before returning (see checkIDs). Host-side arguments (CachedAttention's block
// tables) are checked on the host and uploaded into scratch buffers from the caching allocator,
// freed in stream order after the kernels that read them.

//go:embed kernels/*.cu kernels/*.ptx
var kernelFiles embed.FS

// kernelModule is one kernels/<Name>.cu with its committed PTX.
type kernelModule struct {
	Name string
	CU   []byte
	PTX  []byte
}

// kernelModules returns the embedded kernel modules, sorted by name.
func kernelModules() []kernelModule {
	names, err := kernelFiles.ReadDir("kernels")
	if err != nil {
		panic("cuda: embedded kernels: " + err.Error()) // the embed pattern guarantees the folder
	}
	var mods []kernelModule
	for _, e := range names {
		name, ok := strings.CutSuffix(e.Name(), ".cu")
		if !ok {
			continue
		}
		cu, err1 := kernelFiles.ReadFile(path.Join("kernels", e.Name()))
		ptx, err2 := kernelFiles.ReadFile(path.Join("kernels", name+".ptx"))
		if err1 != nil || err2 != nil {
			panic(fmt.Sprintf("cuda: embedded kernel %s: %v %v (run go generate ./backend/cuda)", name, err1, err2))
		}
		mods = append(mods, kernelModule{Name: name, CU: cu, PTX: ptx})
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].Name < mods[j].Name })
	return mods
}

// ceilDiv returns ceil(n/d) for n >= 0, d > 0.
func ceilDiv(n, d int) int { return (n + d - 1) / d }

// blocks returns the number of blocks of size threads that cover n elements, as a grid size.
func blocks(n, size int) uint32 { return uint32(ceilDiv(n, size)) }

// failf records a formatted argument error of kernel.
func (b *Backend) failf(kernel, format string, args ...any) {
	b.fail(fmt.Errorf("cuda: %s: "+format, append([]any{kernel}, args...)...))
}

// f32 checks that buf is an F32 buffer of this GPU with n elements (recording the error
// otherwise); i32 checks an I32 buffer.
func (b *Backend) f32(kernel, arg string, buf backend.Buffer, n int) bool {
	_, ok := b.operand(kernel, arg, buf, backend.F32, n)
	return ok
}

func (b *Backend) i32(kernel, arg string, buf backend.Buffer, n int) bool {
	_, ok := b.operand(kernel, arg, buf, backend.I32, n)
	return ok
}

// whole returns buf's length rounded down to a multiple of C, which the CPU backend requires it
// to equal (wte, wpe, the KV cache): a nil buffer gives -1, which no size check accepts.
func whole(buf backend.Buffer, C int) int {
	if buf == nil {
		return -1
	}
	return buf.Len() / C * C
}

// scratch allocates a zeroed temporary buffer, recording an error on failure. Free it with
// b.Free after enqueuing its last use: the allocator reuses it only after that work (one
// stream).
func (b *Backend) scratch(kernel string, dtype backend.DType, n int) backend.Buffer {
	buf, err := b.Alloc(dtype, n)
	if err != nil {
		b.fail(fmt.Errorf("cuda: %s: scratch of %d elements: %w", kernel, n, err))
		return nil
	}
	return buf
}

// idErrors is the length of the device error buffer of the kernels that check ids (encoder.cu,
// crossentropy.cu): int32, err[0] = 1 + a bad row (0 when none), err[1] = its id,
// err[2] = which id array it came from (encoder.cu: 0 tokens, 1 positions; crossentropy.cu
// leaves it 0). It is allocated as F32, since Download reads F32, and read back bit for bit.
const idErrors = 3

// checkIDs waits for the kernels enqueued so far, reads the error buffer errBuf (idErrors
// elements) that they wrote and, if a row was bad, records "cuda: kernel: " + what(row, id,
// kind), in the CPU backend's words ("token 7 at row 3 is outside [0, 5)"). It frees errBuf.
// This costs one host round trip (a Sync) per call, the price of reporting bad ids (which the
// model checks on the host before uploading) as errors rather than NaNs.
func (b *Backend) checkIDs(kernel string, errBuf backend.Buffer, what func(row, id, kind int) string) {
	got := make([]float32, idErrors)
	b.Download(got, errBuf)
	b.Free(errBuf)
	if b.Sync(context.Background()) != nil {
		return // recorded already
	}
	if row := int(int32(math.Float32bits(got[0]))); row != 0 {
		b.failf(kernel, "%s", what(row-1, int(int32(math.Float32bits(got[1]))), int(int32(math.Float32bits(got[2])))))
	}
}

// EncoderForward implements backend.Backend: out(N,C) = wte(V,C)[tokens(N)] +
// wpe(maxT,C)[positions(N)] (encoder.cu). A token or position outside wte's or wpe's rows
// records an error and gives a NaN row; it waits for the GPU (checkIDs).
func (b *Backend) EncoderForward(out, tokens, positions, wte, wpe backend.Buffer, N, C int) {
	const k = "EncoderForward"
	if b.failed() {
		return
	}
	if C <= 0 || N < 0 {
		b.failf(k, "N=%d C=%d", N, C)
		return
	}
	ne, np := whole(wte, C), whole(wpe, C)
	if !b.f32(k, "out", out, N*C) || !b.i32(k, "tokens", tokens, N) || !b.i32(k, "positions", positions, N) ||
		!b.f32(k, "wte", wte, ne) || !b.f32(k, "wpe", wpe, np) || N == 0 {
		return
	}
	V, maxT := ne/C, np/C
	errBuf := b.scratch(k, backend.F32, idErrors)
	if errBuf == nil {
		return
	}
	b.launch("encoder_forward", gridFor(N*C), dim3{X: 256}, 0,
		out, tokens, positions, wte, wpe, N, C, V, maxT, errBuf)
	b.checkIDs(k, errBuf, idMessage(V, maxT))
}

// idMessage describes a bad token (kind 0, id outside [0,V)) or position (kind 1, outside
// [0,maxT)) at row, in the CPU backend's words. The kernels report the token when both are bad.
func idMessage(V, maxT int) func(row, id, kind int) string {
	return func(row, id, kind int) string {
		if kind == 0 {
			return fmt.Sprintf("token %d at row %d is outside [0, %d)", id, row, V)
		}
		return fmt.Sprintf("position %d at row %d is outside [0, %d)", id, row, maxT)
	}
}

// EncoderBackward implements backend.Backend (encoder.cu): deterministic, and bit for bit the
// CPU reference's sums. encoder_links finds, for every row, the next row with the same token
// (position) and whether it is the first; encoder_backward then adds each chain of rows into
// its gradient row in row order, one thread per channel. Needs a scratch of 4N int32. A bad
// token or position records an error (its row is skipped); it waits for the GPU (checkIDs).
func (b *Backend) EncoderBackward(dwte, dwpe, dout, tokens, positions backend.Buffer, N, C int) {
	const k = "EncoderBackward"
	if b.failed() {
		return
	}
	if C <= 0 || N < 0 {
		b.failf(k, "N=%d C=%d", N, C)
		return
	}
	ne, np := whole(dwte, C), whole(dwpe, C)
	if !b.f32(k, "dwte", dwte, ne) || !b.f32(k, "dwpe", dwpe, np) || !b.f32(k, "dout", dout, N*C) ||
		!b.i32(k, "tokens", tokens, N) || !b.i32(k, "positions", positions, N) || N == 0 {
		return
	}
	V, maxT := ne/C, np/C
	links := b.scratch(k, backend.I32, 4*N)
	if links == nil {
		return
	}
	errBuf := b.scratch(k, backend.F32, idErrors)
	if errBuf == nil {
		b.Free(links)
		return
	}
	b.launch("encoder_links", dim3{X: blocks(N, 256), Y: 2}, dim3{X: 256}, 0,
		links, tokens, positions, N, V, maxT, errBuf)
	b.launch("encoder_backward", dim3{X: uint32(N), Y: blocks(C, 256), Z: 2}, dim3{X: 256}, 0,
		dwte, dwpe, dout, tokens, positions, links, N, C)
	b.Free(links)
	b.checkIDs(k, errBuf, idMessage(V, maxT))
}

// LayerNormForward implements backend.Backend (layernorm.cu): one warp per row.
func (b *Backend) LayerNormForward(out, mean, rstd, inp, weight, bias backend.Buffer, N, C int) {
	const k = "LayerNormForward"
	if b.failed() {
		return
	}
	if !b.f32(k, "out", out, N*C) || !b.f32(k, "mean", mean, N) || !b.f32(k, "rstd", rstd, N) ||
		!b.f32(k, "inp", inp, N*C) || !b.f32(k, "weight", weight, C) || !b.f32(k, "bias", bias, C) {
		return
	}
	b.launch("layernorm_forward", dim3{X: blocks(N, 8)}, dim3{X: 256}, 0,
		out, mean, rstd, inp, weight, bias, N, C)
}

// LayerNormBackward implements backend.Backend (layernorm.cu): dinp one warp per row, then
// dweight and dbias reduced over the rows in a fixed order (deterministic).
func (b *Backend) LayerNormBackward(dinp, dweight, dbias, dout, inp, weight, mean, rstd backend.Buffer, N, C int) {
	const k = "LayerNormBackward"
	if b.failed() {
		return
	}
	if !b.f32(k, "dinp", dinp, N*C) || !b.f32(k, "dweight", dweight, C) || !b.f32(k, "dbias", dbias, C) ||
		!b.f32(k, "dout", dout, N*C) || !b.f32(k, "inp", inp, N*C) || !b.f32(k, "weight", weight, C) ||
		!b.f32(k, "mean", mean, N) || !b.f32(k, "rstd", rstd, N) || N <= 0 || C <= 0 {
		return
	}
	b.launch("layernorm_backward_input", dim3{X: blocks(N, 8)}, dim3{X: 256}, 0,
		dinp, dout, inp, weight, mean, rstd, N, C)
	b.launch("layernorm_backward_params", dim3{X: blocks(C, 32)}, dim3{X: 32, Y: 32}, 0,
		dweight, dbias, dout, inp, mean, rstd, N, C)
}

// GELUForward implements backend.Backend (elementwise.cu).
func (b *Backend) GELUForward(out, inp backend.Buffer, n int) {
	const k = "GELUForward"
	if !b.failed() && b.f32(k, "out", out, n) && b.f32(k, "inp", inp, n) {
		b.launch("gelu_forward", gridFor(n), dim3{X: 256}, 0, out, inp, n)
	}
}

// GELUBackward implements backend.Backend (elementwise.cu).
func (b *Backend) GELUBackward(dinp, inp, dout backend.Buffer, n int) {
	const k = "GELUBackward"
	if !b.failed() && b.f32(k, "dinp", dinp, n) && b.f32(k, "inp", inp, n) && b.f32(k, "dout", dout, n) {
		b.launch("gelu_backward", gridFor(n), dim3{X: 256}, 0, dinp, inp, dout, n)
	}
}

// ResidualForward implements backend.Backend (elementwise.cu).
func (b *Backend) ResidualForward(out, x, y backend.Buffer, n int) {
	const k = "ResidualForward"
	if !b.failed() && b.f32(k, "out", out, n) && b.f32(k, "a", x, n) && b.f32(k, "b", y, n) {
		b.launch("residual_forward", gridFor(n), dim3{X: 256}, 0, out, x, y, n)
	}
}

// ResidualBackward implements backend.Backend (elementwise.cu).
func (b *Backend) ResidualBackward(da, db, dout backend.Buffer, n int) {
	const k = "ResidualBackward"
	if !b.failed() && b.f32(k, "da", da, n) && b.f32(k, "db", db, n) && b.f32(k, "dout", dout, n) {
		b.launch("residual_backward", gridFor(n), dim3{X: 256}, 0, da, db, dout, n)
	}
}

// targetMessage describes a bad cross-entropy target, in the CPU backend's words.
func targetMessage(V int) func(row, id, kind int) string {
	return func(row, id, _ int) string {
		return fmt.Sprintf("target %d at row %d is outside [0, %d)", id, row, V)
	}
}

// CrossEntropyForward implements backend.Backend (crossentropy.cu): one block per row. A
// target outside [0,V) (not IgnoreIndex) records an error (and gives a NaN loss); it waits for
// the GPU (checkIDs).
func (b *Backend) CrossEntropyForward(losses, probs, logits, targets backend.Buffer, N, V int) {
	const k = "CrossEntropyForward"
	if b.failed() {
		return
	}
	if !b.f32(k, "losses", losses, N) || !b.f32(k, "probs", probs, N*V) || !b.f32(k, "logits", logits, N*V) ||
		!b.i32(k, "targets", targets, N) || N <= 0 {
		return
	}
	errBuf := b.scratch(k, backend.F32, idErrors)
	if errBuf == nil {
		return
	}
	b.launch("crossentropy_forward", dim3{X: uint32(N)}, dim3{X: 512}, 0, losses, probs, logits, targets, N, V, errBuf)
	b.checkIDs(k, errBuf, targetMessage(V))
}

// CrossEntropyBackward implements backend.Backend (crossentropy.cu): one block per row; a bad
// target records an error (and gives a NaN row); it waits for the GPU (checkIDs).
func (b *Backend) CrossEntropyBackward(dlogits, probs, targets backend.Buffer, N, V int, scale float32) {
	const k = "CrossEntropyBackward"
	if b.failed() {
		return
	}
	if !b.f32(k, "dlogits", dlogits, N*V) || !b.f32(k, "probs", probs, N*V) || !b.i32(k, "targets", targets, N) || N <= 0 {
		return
	}
	errBuf := b.scratch(k, backend.F32, idErrors)
	if errBuf == nil {
		return
	}
	b.launch("crossentropy_backward", dim3{X: uint32(N)}, dim3{X: 512}, 0, dlogits, probs, targets, N, V, scale, errBuf)
	b.checkIDs(k, errBuf, targetMessage(V))
}

// AdamWUpdate implements backend.Backend (optimizer.cu). The bias corrections 1-beta^t are
// computed here as the CPU reference computes them (float64 pow, rounded to float32).
func (b *Backend) AdamWUpdate(params, grads, m, v backend.Buffer, n int, hp backend.AdamW) {
	const k = "AdamWUpdate"
	if b.failed() {
		return
	}
	if !b.f32(k, "params", params, n) || !b.f32(k, "grads", grads, n) || !b.f32(k, "m", m, n) || !b.f32(k, "v", v, n) {
		return
	}
	if hp.Step < 1 {
		b.failf(k, "step %d, want >= 1", hp.Step)
		return
	}
	c1 := 1 - float32(math.Pow(float64(hp.Beta1), float64(hp.Step)))
	c2 := 1 - float32(math.Pow(float64(hp.Beta2), float64(hp.Step)))
	b.launch("adamw_update", gridFor(n), dim3{X: 256}, 0, params, grads, m, v, n,
		hp.LearningRate, hp.Beta1, hp.Beta2, hp.Eps, hp.WeightDecay, c1, c2, hp.GradScale)
}

// SumSquares implements backend.Backend (optimizer.cu): a deterministic two-pass float64
// reduction. The first pass has G = min(ceil(n/2048), 1024) blocks, a function of n alone,
// each writing one float64 partial into a scratch; the second adds them in a fixed order.
func (b *Backend) SumSquares(out, in backend.Buffer, n int) {
	const k = "SumSquares"
	if b.failed() || !b.f32(k, "out", out, 1) || !b.f32(k, "in", in, n) || n <= 0 {
		return
	}
	G := min(ceilDiv(n, 2048), 1024)
	partial := b.scratch(k, backend.F32, 2*G) // G float64
	if partial == nil {
		return
	}
	b.launch("sum_squares_partial", dim3{X: uint32(G)}, dim3{X: 256}, 0, partial, in, n)
	b.launch("sum_squares_final", dim3{X: 1}, dim3{X: 256}, 0, out, partial, G)
	b.Free(partial)
}
