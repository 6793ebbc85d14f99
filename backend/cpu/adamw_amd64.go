package cpu

import "github.com/modeld-dev/modeld/backend"

// AdamW in assembly (adamw_amd64.s), and the wrappers that vecAVX512 and vecAVX2 (vec_amd64.go)
// hold: the kernel over the largest multiple of its lane count, the reference adamW over the rest.

func adamWAVX512Slice(p, g, m, v []float32, hp backend.AdamW) {
	n := len(p) &^ 15
	if n > 0 {
		g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
		c1, c2 := adamWBias(hp)
		adamWAVX512(&p[0], &g[0], &m[0], &v[0], n, hp.LearningRate, hp.Beta1, hp.Beta2, hp.Eps, hp.WeightDecay, hp.GradScale, c1, c2)
	}
	adamW(p[n:], g[n:], m[n:], v[n:], hp)
}

func adamWAVX2Slice(p, g, m, v []float32, hp backend.AdamW) {
	n := len(p) &^ 7
	if n > 0 {
		g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
		c1, c2 := adamWBias(hp)
		adamWAVX2(&p[0], &g[0], &m[0], &v[0], n, hp.LearningRate, hp.Beta1, hp.Beta2, hp.Eps, hp.WeightDecay, hp.GradScale, c1, c2)
	}
	adamW(p[n:], g[n:], m[n:], v[n:], hp)
}

// adamWAVX512 is one AdamW step over n elements (adamW with the bias corrections c1 and c2); n is
// a positive multiple of 16.
//
//go:noescape
func adamWAVX512(p, grad, m, v *float32, n int, lr, beta1, beta2, eps, wd, gradScale, c1, c2 float32)

// adamWAVX2 is adamWAVX512 in 8 lanes; n is a positive multiple of 8.
//
//go:noescape
func adamWAVX2(p, grad, m, v *float32, n int, lr, beta1, beta2, eps, wd, gradScale, c1, c2 float32)
