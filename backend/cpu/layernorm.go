package cpu

import "math"

// LayerNorm for the fast backend: the reference rows (ref.go's layerNormForward and
// layerNormBackward) with each pass over a row run by a vector kernel of vecKern. A row of C
// floats (3 KiB at C=768) stays in L1 across its passes, so the kernels are bound by the first
// read of inp and dout and the writes of out and dinp, not by the passes:
//
//	forward:  sum(x); sum((x-mean)²) (two passes, as the reference: no cancellation); out
//	backward: sum(w·dout) and sum(w·dout·norm) in one pass; then dinp, dweight, dbias in one pass
//
// The elementwise steps round exactly as the reference's (no fused multiply-adds), so out and
// dinp differ from it only through the row sums, which run in SIMD lanes added in a fixed order.

// layerNormForwardFast is layerNormForward with the vector kernels, for rows [lo, hi).
func layerNormForwardFast(out, mean, rstd, inp, weight, bias []float32, C, lo, hi int) {
	ks := &vecKern
	for n := lo; n < hi; n++ {
		x := inp[n*C : (n+1)*C]
		m := ks.sum(x) / float32(C)
		variance := ks.sumSqDev(x, m) / float32(C)
		s := float32(1 / math.Sqrt(float64(variance+layerNormEps)))
		ks.layerNorm(out[n*C:(n+1)*C], x, weight, bias, m, s)
		mean[n], rstd[n] = m, s
	}
}

// layerNormBackwardFast is layerNormBackward with the vector kernels, for rows [lo, hi); it adds
// into dinp's rows and into dweight and dbias (a partial of parallelReduce).
func layerNormBackwardFast(dinp, dweight, dbias, dout, inp, weight, mean, rstd []float32, C, lo, hi int) {
	ks := &vecKern
	for n := lo; n < hi; n++ {
		d, x := dout[n*C:(n+1)*C], inp[n*C:(n+1)*C]
		m, s := mean[n], rstd[n]
		dnormMean, dnormNormMean := ks.layerNormSums(d, x, weight, m, s)
		dnormMean /= float32(C)
		dnormNormMean /= float32(C)
		ks.layerNormBackward(dinp[n*C:(n+1)*C], dweight, dbias, d, x, weight, m, s, dnormMean, dnormNormMean)
	}
}

// sumGo returns Σ x[i], in four lanes as expSumGo.
func sumGo(x []float32) float32 {
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		xs := x[i : i+4 : i+4]
		s0, s1, s2, s3 = s0+xs[0], s1+xs[1], s2+xs[2], s3+xs[3]
	}
	for ; i < len(x); i++ {
		s0 += x[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// sumSqDevGo returns Σ (x[i]-m)², in four lanes.
func sumSqDevGo(x []float32, m float32) float32 {
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		xs := x[i : i+4 : i+4]
		d0, d1, d2, d3 := xs[0]-m, xs[1]-m, xs[2]-m, xs[3]-m
		s0, s1, s2, s3 = s0+d0*d0, s1+d1*d1, s2+d2*d2, s3+d3*d3
	}
	for ; i < len(x); i++ {
		d := x[i] - m
		s0 += d * d
	}
	return (s0 + s1) + (s2 + s3)
}

// layerNormGo sets out[i] = (x[i]-m)·s·w[i] + b[i]; len(out), len(w), len(b) >= len(x).
func layerNormGo(out, x, w, b []float32, m, s float32) {
	out, w, b = out[:len(x)], w[:len(x)], b[:len(x)]
	for i, v := range x {
		out[i] = (v-m)*s*w[i] + b[i]
	}
}

// layerNormSumsGo returns Σ w[i]·d[i] and Σ w[i]·d[i]·(x[i]-m)·s, each in two lanes.
func layerNormSumsGo(d, x, w []float32, m, s float32) (dnorm, dnormNorm float32) {
	x, w = x[:len(d)], w[:len(d)]
	var a0, a1, b0, b1 float32
	i := 0
	for ; i+2 <= len(d); i += 2 {
		dn0, dn1 := w[i]*d[i], w[i+1]*d[i+1]
		a0, a1 = a0+dn0, a1+dn1
		b0, b1 = b0+dn0*((x[i]-m)*s), b1+dn1*((x[i+1]-m)*s)
	}
	if i < len(d) {
		dn := w[i] * d[i]
		a0 += dn
		b0 += dn * ((x[i] - m) * s)
	}
	return a0 + a1, b0 + b1
}

// layerNormBackwardGo adds a row's gradients: db += d, dw += norm·d and
// dx += (w·d - dm - norm·dnm)·s, where norm = (x-m)·s; every slice is at least len(d) long.
func layerNormBackwardGo(dx, dw, db, d, x, w []float32, m, s, dm, dnm float32) {
	dx, dw, db, x, w = dx[:len(d)], dw[:len(d)], db[:len(d)], x[:len(d)], w[:len(d)]
	for i, g := range d {
		norm := (x[i] - m) * s
		db[i] += g
		dw[i] += norm * g
		dx[i] += (w[i]*g - dm - norm*dnm) * s
	}
}
