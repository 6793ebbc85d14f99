package cpu

import (
	"math"

	"github.com/modeld-dev/modeld/backend"
)

// The row kernels: plain loops after llm.c's train_gpt2.c, each over a range of independent
// rows (or (batch, head) pairs) so that the fast backend can run ranges on different cores.
// Shapes are in the comments of the backend.Backend methods that call them.

// encoderForward: out[n] = wte[tok[n]] + wpe[pos[n]] for rows [lo, hi).
func encoderForward(out, wte, wpe []float32, tok, pos []int32, C, lo, hi int) {
	for n := lo; n < hi; n++ {
		o := out[n*C : (n+1)*C]
		e := wte[int(tok[n])*C:]
		p := wpe[int(pos[n])*C:]
		for i := range o {
			o[i] = e[i] + p[i]
		}
	}
}

// encoderBackward adds dout[n] into dwte[tok[n]] and dwpe[pos[n]].
func encoderBackward(dwte, dwpe, dout []float32, tok, pos []int32, C, N int) {
	for n := range N {
		d := dout[n*C : (n+1)*C]
		de := dwte[int(tok[n])*C:]
		dp := dwpe[int(pos[n])*C:]
		for i, v := range d {
			de[i] += v
			dp[i] += v
		}
	}
}

const layerNormEps = 1e-5

// layerNormForward normalises rows [lo, hi) of inp(N,C); mean and variance in float32 as llm.c.
func layerNormForward(out, mean, rstd, inp, weight, bias []float32, C, lo, hi int) {
	for n := lo; n < hi; n++ {
		x := inp[n*C : (n+1)*C]
		var m float32
		for _, v := range x {
			m += v
		}
		m /= float32(C)
		var variance float32
		for _, v := range x {
			d := v - m
			variance += d * d
		}
		variance /= float32(C)
		s := float32(1 / math.Sqrt(float64(variance+layerNormEps)))
		o := out[n*C : (n+1)*C]
		for i, v := range x {
			o[i] = (v-m)*s*weight[i] + bias[i]
		}
		mean[n], rstd[n] = m, s
	}
}

// layerNormBackward adds the gradients for rows [lo, hi) into dinp, and their weight and bias
// gradients into dweight and dbias.
func layerNormBackward(dinp, dweight, dbias, dout, inp, weight, mean, rstd []float32, C, lo, hi int) {
	for n := lo; n < hi; n++ {
		d := dout[n*C : (n+1)*C]
		x := inp[n*C : (n+1)*C]
		dx := dinp[n*C : (n+1)*C]
		m, s := mean[n], rstd[n]
		// Two reductions first: mean(w*dout) and mean(w*dout*norm).
		var dnormMean, dnormNormMean float32
		for i := range C {
			norm := (x[i] - m) * s
			dnorm := weight[i] * d[i]
			dnormMean += dnorm
			dnormNormMean += dnorm * norm
		}
		dnormMean /= float32(C)
		dnormNormMean /= float32(C)
		for i := range C {
			norm := (x[i] - m) * s
			dnorm := weight[i] * d[i]
			dbias[i] += d[i]
			dweight[i] += norm * d[i]
			dx[i] += (dnorm - dnormMean - norm*dnormNormMean) * s
		}
	}
}

// attentionForward runs causal attention for the (batch, head) pairs [lo, hi), numbered
// b*NH + h: att holds the softmax row of every query, out the weighted sum of the values.
func attentionForward(out, att, qkv []float32, T, C, NH, lo, hi int) {
	hs := C / NH
	scale := float32(1 / math.Sqrt(float64(hs)))
	for bh := lo; bh < hi; bh++ {
		b, h := bh/NH, bh%NH
		for t := range T {
			q := qkv[(b*T+t)*3*C+h*hs:][:hs]
			a := att[(bh*T+t)*T:][:T]
			maxv := float32(math.Inf(-1))
			for t2 := 0; t2 <= t; t2++ {
				k := qkv[(b*T+t2)*3*C+C+h*hs:][:hs]
				var dot float32
				for i := range hs {
					dot += q[i] * k[i]
				}
				dot *= scale
				a[t2] = dot
				maxv = max(maxv, dot)
			}
			var sum float32
			for t2 := 0; t2 <= t; t2++ {
				e := float32(math.Exp(float64(a[t2] - maxv)))
				a[t2] = e
				sum += e
			}
			inv := 1 / sum
			for t2 := range T {
				if t2 <= t {
					a[t2] *= inv
				} else {
					a[t2] = 0
				}
			}
			o := out[(b*T+t)*C+h*hs:][:hs]
			clear(o)
			for t2 := 0; t2 <= t; t2++ {
				v := qkv[(b*T+t2)*3*C+2*C+h*hs:][:hs]
				w := a[t2]
				for i := range hs {
					o[i] += w * v[i]
				}
			}
		}
	}
}

// attentionBackward adds the gradients of the (batch, head) pairs [lo, hi) into dqkv. The
// softmax backward uses dpre[j] = att[j]*(datt[j] - sum_k att[k]*datt[k]), which equals llm.c's
// double loop.
func attentionBackward(dqkv, dout, qkv, att []float32, T, C, NH, lo, hi int) {
	hs := C / NH
	scale := float32(1 / math.Sqrt(float64(hs)))
	datt := make([]float32, T)
	for bh := lo; bh < hi; bh++ {
		b, h := bh/NH, bh%NH
		for t := range T {
			a := att[(bh*T+t)*T:][:T]
			d := dout[(b*T+t)*C+h*hs:][:hs]
			// Through out = sum att*v.
			var dot float32
			for t2 := 0; t2 <= t; t2++ {
				v := qkv[(b*T+t2)*3*C+2*C+h*hs:][:hs]
				dv := dqkv[(b*T+t2)*3*C+2*C+h*hs:][:hs]
				var g float32
				for i := range hs {
					g += v[i] * d[i]
					dv[i] += a[t2] * d[i]
				}
				datt[t2] = g
				dot += a[t2] * g
			}
			// Through the softmax and q·k.
			q := qkv[(b*T+t)*3*C+h*hs:][:hs]
			dq := dqkv[(b*T+t)*3*C+h*hs:][:hs]
			for t2 := 0; t2 <= t; t2++ {
				dpre := a[t2] * (datt[t2] - dot) * scale
				k := qkv[(b*T+t2)*3*C+C+h*hs:][:hs]
				dk := dqkv[(b*T+t2)*3*C+C+h*hs:][:hs]
				for i := range hs {
					dq[i] += k[i] * dpre
					dk[i] += q[i] * dpre
				}
			}
		}
	}
}

// geluScale is sqrt(2/pi).
var geluScale = float32(math.Sqrt(2 / math.Pi))

// geluForward: out = 0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3))).
func geluForward(out, inp []float32) {
	for i, x := range inp {
		cube := 0.044715 * x * x * x
		th := float32(math.Tanh(float64(geluScale * (x + cube))))
		if th == -1 {
			out[i] = 0 // the limit at -Inf, where 0.5*x*(1+tanh) would be -Inf*0
			continue
		}
		out[i] = 0.5 * x * (1 + th)
	}
}

// geluBackward adds dout * d/dx gelu(x) into dinp.
func geluBackward(dinp, inp, dout []float32) {
	for i, x := range inp {
		cube := 0.044715 * x * x * x
		arg := float64(geluScale * (x + cube))
		th := float32(math.Tanh(arg))
		ch := math.Cosh(arg)
		sech2 := float32(1 / (ch * ch))
		local := 0.5 * (1 + th)
		if sech2 != 0 { // else the second term is 0, though x*x may overflow to Inf
			local += x * 0.5 * sech2 * geluScale * (1 + 3*0.044715*x*x)
		}
		dinp[i] += local * dout[i]
	}
}

// crossEntropyForward computes softmax rows [lo, hi) into probs and the loss of each row,
// -log softmax(logits)[target] = logsumexp(logits) - logits[target], summed in float64.
func crossEntropyForward(losses, probs, logits []float32, targets []int32, V, lo, hi int) {
	for n := lo; n < hi; n++ {
		x := logits[n*V : (n+1)*V]
		p := probs[n*V : (n+1)*V]
		maxv := float32(math.Inf(-1))
		for _, v := range x {
			maxv = max(maxv, v)
		}
		var sum float64
		for i, v := range x {
			e := math.Exp(float64(v - maxv))
			p[i] = float32(e)
			sum += e
		}
		inv := float32(1 / sum)
		for i := range p {
			p[i] *= inv
		}
		if t := targets[n]; t == backend.IgnoreIndex {
			losses[n] = 0
		} else {
			losses[n] = float32(math.Log(sum) + float64(maxv) - float64(x[t]))
		}
	}
}

// crossEntropyBackward writes dlogits = (probs - onehot(target)) * scale for rows [lo, hi).
func crossEntropyBackward(dlogits, probs []float32, targets []int32, V int, scale float32, lo, hi int) {
	for n := lo; n < hi; n++ {
		d := dlogits[n*V : (n+1)*V]
		t := targets[n]
		if t == backend.IgnoreIndex {
			clear(d)
			continue
		}
		p := probs[n*V : (n+1)*V]
		for i, v := range p {
			d[i] = v * scale
		}
		d[t] -= scale
	}
}

// cacheWrite stores the keys and values of s's new tokens into the paged cache.
func cacheWrite(kc, vc, qkv []float32, s backend.CachedSeq, bs, C int) {
	for t := range s.Len {
		pos := s.Pos + t
		off := (int(s.Blocks[pos/bs])*bs + pos%bs) * C
		row := qkv[(s.Row+t)*3*C:]
		copy(kc[off:off+C], row[C:2*C])
		copy(vc[off:off+C], row[2*C:3*C])
	}
}

// cachedAttention computes every head of the output row of new token t of s, attending to the
// cached positions [0, s.Pos+t].
func cachedAttention(out, qkv, kc, vc []float32, s backend.CachedSeq, t, bs, C, NH int) {
	hs := C / NH
	scale := float32(1 / math.Sqrt(float64(hs)))
	n := s.Row + t
	last := s.Pos + t
	w := make([]float32, last+1)
	for h := range NH {
		q := qkv[n*3*C+h*hs:][:hs]
		maxv := float32(math.Inf(-1))
		for p := 0; p <= last; p++ {
			k := kc[(int(s.Blocks[p/bs])*bs+p%bs)*C+h*hs:][:hs]
			var dot float32
			for i := range hs {
				dot += q[i] * k[i]
			}
			dot *= scale
			w[p] = dot
			maxv = max(maxv, dot)
		}
		var sum float32
		for p := range w {
			w[p] = float32(math.Exp(float64(w[p] - maxv)))
			sum += w[p]
		}
		inv := 1 / sum
		o := out[n*C+h*hs:][:hs]
		clear(o)
		for p := range w {
			v := vc[(int(s.Blocks[p/bs])*bs+p%bs)*C+h*hs:][:hs]
			a := w[p] * inv
			for i := range hs {
				o[i] += a * v[i]
			}
		}
	}
}
