package cpu

// LayerNorm row kernels in assembly (layernorm_amd64.s), and the wrappers that vecAVX512 and
// vecAVX2 (vec_amd64.go) hold: each runs the kernel over the largest multiple of its lane count
// and the Go kernel of layernorm.go over the rest.

func sumAVX512Slice(x []float32) float32 {
	n := len(x) &^ 15
	if n == 0 {
		return sumGo(x)
	}
	return sumAVX512(&x[0], n) + sumGo(x[n:])
}

func sumSqDevAVX512Slice(x []float32, m float32) float32 {
	n := len(x) &^ 15
	if n == 0 {
		return sumSqDevGo(x, m)
	}
	return sumSqDevAVX512(&x[0], n, m) + sumSqDevGo(x[n:], m)
}

func layerNormAVX512Slice(out, x, w, b []float32, m, s float32) {
	n := len(x) &^ 15
	out, w, b = out[:len(x)], w[:len(x)], b[:len(x)]
	if n > 0 {
		layerNormAVX512(&out[0], &x[0], &w[0], &b[0], n, m, s)
	}
	layerNormGo(out[n:], x[n:], w[n:], b[n:], m, s)
}

func layerNormSumsAVX512Slice(d, x, w []float32, m, s float32) (dnorm, dnormNorm float32) {
	n := len(d) &^ 15
	x, w = x[:len(d)], w[:len(d)]
	if n > 0 {
		dnorm, dnormNorm = layerNormSumsAVX512(&d[0], &x[0], &w[0], n, m, s)
	}
	a, b := layerNormSumsGo(d[n:], x[n:], w[n:], m, s)
	return dnorm + a, dnormNorm + b
}

func layerNormBackwardAVX512Slice(dx, dw, db, d, x, w []float32, m, s, dm, dnm float32) {
	n := len(d) &^ 15
	dx, dw, db, x, w = dx[:len(d)], dw[:len(d)], db[:len(d)], x[:len(d)], w[:len(d)]
	if n > 0 {
		layerNormBackwardAVX512(&dx[0], &dw[0], &db[0], &d[0], &x[0], &w[0], n, m, s, dm, dnm)
	}
	layerNormBackwardGo(dx[n:], dw[n:], db[n:], d[n:], x[n:], w[n:], m, s, dm, dnm)
}

func sumAVX2Slice(x []float32) float32 {
	n := len(x) &^ 7
	if n == 0 {
		return sumGo(x)
	}
	return sumAVX2(&x[0], n) + sumGo(x[n:])
}

func sumSqDevAVX2Slice(x []float32, m float32) float32 {
	n := len(x) &^ 7
	if n == 0 {
		return sumSqDevGo(x, m)
	}
	return sumSqDevAVX2(&x[0], n, m) + sumSqDevGo(x[n:], m)
}

func layerNormAVX2Slice(out, x, w, b []float32, m, s float32) {
	n := len(x) &^ 7
	out, w, b = out[:len(x)], w[:len(x)], b[:len(x)]
	if n > 0 {
		layerNormAVX2(&out[0], &x[0], &w[0], &b[0], n, m, s)
	}
	layerNormGo(out[n:], x[n:], w[n:], b[n:], m, s)
}

func layerNormSumsAVX2Slice(d, x, w []float32, m, s float32) (dnorm, dnormNorm float32) {
	n := len(d) &^ 7
	x, w = x[:len(d)], w[:len(d)]
	if n > 0 {
		dnorm, dnormNorm = layerNormSumsAVX2(&d[0], &x[0], &w[0], n, m, s)
	}
	a, b := layerNormSumsGo(d[n:], x[n:], w[n:], m, s)
	return dnorm + a, dnormNorm + b
}

func layerNormBackwardAVX2Slice(dx, dw, db, d, x, w []float32, m, s, dm, dnm float32) {
	n := len(d) &^ 7
	dx, dw, db, x, w = dx[:len(d)], dw[:len(d)], db[:len(d)], x[:len(d)], w[:len(d)]
	if n > 0 {
		layerNormBackwardAVX2(&dx[0], &dw[0], &db[0], &d[0], &x[0], &w[0], n, m, s, dm, dnm)
	}
	layerNormBackwardGo(dx[n:], dw[n:], db[n:], d[n:], x[n:], w[n:], m, s, dm, dnm)
}

// sumAVX512 returns Σ x[i] for i < n; n is a positive multiple of 16.
//
//go:noescape
func sumAVX512(x *float32, n int) float32

// sumSqDevAVX512 returns Σ (x[i]-m)² for i < n; n is a positive multiple of 16.
//
//go:noescape
func sumSqDevAVX512(x *float32, n int, m float32) float32

// layerNormAVX512 is layerNormGo over n elements; n is a positive multiple of 16.
//
//go:noescape
func layerNormAVX512(out, x, w, b *float32, n int, m, s float32)

// layerNormSumsAVX512 is layerNormSumsGo over n elements; n is a positive multiple of 16.
//
//go:noescape
func layerNormSumsAVX512(d, x, w *float32, n int, m, s float32) (dnorm, dnormNorm float32)

// layerNormBackwardAVX512 is layerNormBackwardGo over n elements; n is a positive multiple of 16.
//
//go:noescape
func layerNormBackwardAVX512(dx, dw, db, d, x, w *float32, n int, m, s, dm, dnm float32)

// sumAVX2 is sumAVX512 in 8 lanes; n is a positive multiple of 8.
//
//go:noescape
func sumAVX2(x *float32, n int) float32

// sumSqDevAVX2 is sumSqDevAVX512 in 8 lanes; n is a positive multiple of 8.
//
//go:noescape
func sumSqDevAVX2(x *float32, n int, m float32) float32

// layerNormAVX2 is layerNormAVX512 in 8 lanes; n is a positive multiple of 8.
//
//go:noescape
func layerNormAVX2(out, x, w, b *float32, n int, m, s float32)

// layerNormSumsAVX2 is layerNormSumsAVX512 in 8 lanes; n is a positive multiple of 8.
//
//go:noescape
func layerNormSumsAVX2(d, x, w *float32, n int, m, s float32) (dnorm, dnormNorm float32)

// layerNormBackwardAVX2 is layerNormBackwardAVX512 in 8 lanes; n is a positive multiple of 8.
//
//go:noescape
func layerNormBackwardAVX2(dx, dw, db, d, x, w *float32, n int, m, s, dm, dnm float32)
