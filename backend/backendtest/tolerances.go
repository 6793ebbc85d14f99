package backendtest

// Tolerances of the comparisons with the reference, |got-want| <= atol + rtol*|want|, per kernel
// and output. The inputs of each case are scaled so that the outputs are of order 1 (matmul
// weights by 1/sqrt(C), as GPT-2's initialisation; dout by sqrt(C/OC)), which makes an absolute
// atol meaningful.
//
// The reference accumulates in float32 in the plain order of llm.c's loops (cross-entropy and
// SumSquares in float64). A backend may sum in another order (tiles, trees, warps, atomics) and use
// fused multiply-adds: its error is of the same size as the reference's, in another direction, so
// the difference of the two is at most about twice the reference's own error. That error, measured
// against float64 by TestReferenceAgainstFloat64 at the largest reductions of the tables, uses at
// most a tenth of each tolerance below (the measured fraction is given for each), so a backend
// passes with a margin of five or more.
//
// These are float32 tolerances: TF32 or bf16 tensor-core math (10 or 7 bits of mantissa) does not
// pass, by design; a backend that offers it does so outside conformance.
var (
	// tolEncoderBackward: repeated tokens and positions add several rows of dout into one
	// gradient row; a backend may add them in any order (atomics): a few roundings of O(1).
	tolEncoderBackward = tol{atol: 1e-5, rtol: 1e-5}

	// tolLayerNorm (out, mean, rstd): mean and variance are float32 sums over C <= 3072; the
	// normalised value (x-mean)*rstd inherits their error. Measured: 0.03 of it.
	tolLayerNorm = tol{atol: 1e-5, rtol: 1e-4}
	// tolLayerNormBackward (dinp, dweight, dbias): two more sums over C per row for dinp, a sum
	// over N rows for dweight and dbias. Measured: 0.01.
	tolLayerNormBackward = tol{atol: 1e-4, rtol: 1e-4}

	// tolMatmul (out, dinp, dweight, dbias): dot products of C (forward), OC (dinp) or N
	// (dweight) terms, up to OC = 50257; ~1e-4 relative is what the summation order costs at
	// these lengths. Measured: 0.10 (dinp at OC=50257, an error of 3e-5), 0.03 elsewhere.
	tolMatmul = tol{atol: 1e-4, rtol: 1e-4}

	// tolAttention (out, att): q·k over HS <= 64 channels, a softmax over <= T positions whose
	// exp may differ by a few ulps between libraries, and a weighted sum of <= T values.
	// Measured: 0.03 at T=64, C=768.
	tolAttention = tol{atol: 1e-5, rtol: 1e-4}
	// tolAttentionBackward (dqkv): sums over T and HS, added into random dqkv.
	tolAttentionBackward = tol{atol: 1e-4, rtol: 1e-4}

	// tolGELU: one tanh, whose ulp errors differ between libraries; for x near -5 the output
	// 0.5x(1+tanh) cancels, so the absolute error is about |x|·eps. Measured: 0.08.
	tolGELU = tol{atol: 1e-6, rtol: 1e-5}
	// tolGELUBackward: tanh and sech² (from cosh, or 1-tanh², which cancels to eps absolute),
	// times dout, added into random dinp. Measured: 0.01.
	tolGELUBackward = tol{atol: 1e-5, rtol: 1e-5}

	// tolCrossEntropyProbs: softmax over V <= 50257. The reference sums the exponentials in
	// float64; a plain float32 running sum of 50257 of them is off by up to 6e-5 relative
	// (measured), which every probability inherits. The probabilities are ~1/V, so rtol carries
	// the check; 3e-4 leaves even that naive sum a margin of five.
	tolCrossEntropyProbs = tol{atol: 1e-7, rtol: 3e-4}
	// tolCrossEntropyLoss: log(sum)+max-logit, about log V = 11, with the relative error of the
	// sum turned absolute by the log.
	tolCrossEntropyLoss = tol{atol: 1e-4, rtol: 1e-5}
	// tolCrossEntropyBackward: (p - onehot)*scale, one or two roundings per element on
	// identical inputs ((p-1)*scale and p*scale-scale differ by an ulp).
	tolCrossEntropyBackward = tol{atol: 1e-7, rtol: 1e-5}

	// tolAdamW (params, m, v after five steps): elementwise; pow for the bias corrections and
	// sqrt may differ by an ulp, fused multiply-adds by a rounding per step; updates are ~lr.
	tolAdamW = tol{atol: 1e-6, rtol: 1e-5}

	// tolSumSquares: one sum of up to 2.4M squares; the reference sums in float64, a backend may
	// sum float32 partials in a tree (about log2(n)·eps = 1.3e-6 relative).
	tolSumSquares = tol{atol: 1e-6, rtol: 1e-5}
)
