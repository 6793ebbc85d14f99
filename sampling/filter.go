package sampling

import (
	"cmp"
	"math"
	"slices"
)

// A mass cut bins keys in [0, 1] by their float64 bits: 64 bins per
// octave (the exponent and the top 6 mantissa bits), so the bins are
// exactly monotone in the key, bin 0 holds 1 and the last bin everything
// below 2^-50 (a mass below V·2^-50 ~ 5e-11 at V = 50257, so no top_p
// short of 1 crosses it), 0 included.
const (
	binShift = 52 - 6
	binTop   = 0x3ff0000000000000 >> binShift // bits of 1.0 >> binShift
	nBins    = 50 << 6
)

// bin returns the bin of a key in [0, 1].
func bin(k float64) uint {
	return min(binTop-uint(math.Float64bits(k)>>binShift), nBins)
}

// filter runs the warpers on the logits src, whose maximum is m:
// temperature, top-k, top-p, min-p, typical, in that order (transformers'
// _get_logits_processor). It leaves in sc.w the unnormalised
// probabilities, 0 for the tokens filtered out, and returns the total
// weight z of the tokens to draw from: those of sc.w >= wmin, where wmin
// is top-p's cut when nothing follows it (applying it in draw saves a
// pass), else 0.
//
// A token's weight is e^x, x = (logit − m)/T <= 0, so the top token weighs
// exactly 1 and min-p keeps w >= min_p. Every warper keeps at least one
// token (min_tokens_to_keep = 1). One pass over V computes the weights,
// zero below top-k's k-th largest x (found with a heap beforehand) and,
// when top-p is off, below min_p (min-p is relative to the top token, so it
// commutes with top-k but not with top-p, whose mass it would change).
// Top-p and typical then cut by probability mass.
func filter[F float32 | float64](s *Sampler, sc *scratch, src []F, m float64) (z, wmin float64) {
	p := &s.p
	invT := 1 / float64(p.Temperature)
	tau := math.Inf(-1) // tokens with x < tau get weight 0 without an exp
	if s.topK() {
		sc.idx = topHeap(sc.idx[:0], src, p.TopK)
		tau = (float64(src[sc.idx[0]]) - m) * invT
	}
	minW, topP := float64(p.MinP), p.TopP < 1
	weighMin := 0.0 // min-p in weigh, unless top-p comes between
	if minW > 0 && !topP {
		weighMin = minW
		// e^x >= min_p needs x >= log(min_p) − 1e-9: a slack far above
		// expNeg's error. weigh then compares e^x with min_p itself.
		tau = max(tau, math.Log(minW)-1e-9)
	}
	z = weigh(sc, src, m, invT, tau, weighMin, topP)
	sc.sum = z
	if topP {
		// Ranked by weight: e^x orders as x does (to expNeg's 3e-13), and
		// the weights are the keys, binned by weigh.
		wc, idc, mass, tied := sc.massCut(sc.w, float64(p.TopP)*z)
		if !tied && minW == 0 && p.TypicalP == 1 {
			// The cut keeps exactly the weights >= wc: leave it to draw.
			return mass, wc
		}
		z = sc.cut(sc.w, wc, idc, minW)
	}
	if p.TypicalP < 1 {
		z = typical(sc, src, m, invT, z, float64(p.TypicalP))
	}
	return z, 0
}

// topK reports whether top-k is on: 0 < TopK < V.
func (s *Sampler) topK() bool { return s.p.TopK > 0 && s.p.TopK < s.vocab }

// weigh sets sc.w[i] to e^x, x = (src[i] − m)·invT, or to 0 if x < tau or
// e^x < minW, and returns the sum. With hist, sc.bins gets the histogram
// of the weights over bin(w), for massCut.
func weigh[F float32 | float64](sc *scratch, src []F, m, invT, tau, minW float64, hist bool) float64 {
	ws := sc.w[:len(src)]
	if hist {
		clear(sc.bins[:])
	}
	z := 0.0
	for i, l := range src {
		x := (float64(l) - m) * invT
		w := 0.0
		if x >= tau {
			if w = expNeg(x); w < minW {
				w = 0
			}
		}
		ws[i] = w
		z += w
		if hist {
			sc.bins[bin(w)] += w
		}
	}
	return z
}

// typical applies transformers' TypicalLogitsWarper to the weights sc.w of
// the logits src, of maximum m and sum z, and returns the new sum. Transformers orders the tokens by
// |−log p_i − H|, H = −Σ p log p the entropy; with log p_i = x_i − log z
// that is |E[x] − x_i|, and the key 1/(1 + |E[x] − x_i|) orders them the
// same way, larger first, in [0, 1] as massCut wants. Every token tied with
// the crossing one is kept, as Transformers keeps them.
func typical[F float32 | float64](sc *scratch, src []F, m, invT, z, mass float64) float64 {
	ws, keys := sc.w[:len(src)], sc.key[:len(src)]
	ex := 0.0
	for i, w := range ws {
		if w > 0 {
			ex += w * ((float64(src[i]) - m) * invT)
		}
	}
	ex /= z
	clear(sc.bins[:])
	for i, w := range ws {
		k := 0.0
		if w > 0 {
			k = 1 / (1 + math.Abs(ex-(float64(src[i])-m)*invT))
		}
		keys[i] = k
		sc.bins[bin(k)] += w
	}
	kc, _, _, _ := sc.massCut(keys, mass*z)
	return sc.cut(keys, kc, math.MaxInt, 0)
}

// massCut orders the tokens by (key, −id) descending, keys in [0, 1] with
// weights sc.w, and returns the key kc and the id idc of the first token at
// which the cumulative weight reaches target, and that cumulative weight:
// the last token that a cut keeping "the smallest prefix with mass >=
// target" keeps, and the mass kept; tied reports a token with key kc
// ranked after it. That is transformers' TopPLogitsWarper (it
// removes, in ascending probability, the tokens whose cumulative
// probability is <= 1 − top_p, so a prefix of mass exactly top_p takes no
// extra token) and TypicalLogitsWarper (last_ind = the number of
// cumulative probabilities < mass). If rounding keeps the sums below
// target, it returns (0, MaxInt, sum, false): keep everything.
//
// It needs no sort: sc.bins, filled by the caller with the weight in each
// bin(key), gives the bin where the cumulative weight crosses target, and
// only that bin's members are sorted. Masses are float64 sums (Transformers
// uses float32), so the cut agrees with exact arithmetic to ~1e-15.
func (sc *scratch) massCut(keys []float64, target float64) (kc float64, idc int, mass float64, tied bool) {
	acc, b := 0.0, uint(0)
	for ; b <= nBins; b++ {
		if acc+sc.bins[b] >= target {
			break
		}
		acc += sc.bins[b]
	}
	if b > nBins {
		return 0, math.MaxInt, acc, false
	}
	// target > acc here, so bin b has weight and at least one member: a
	// key whose bits>>binShift are in [lo, lo+span].
	lo, span := uint64(binTop-b), uint64(0)
	if b == nBins {
		lo, span = 0, binTop-nBins
	}
	members := sc.idx[:0]
	for i, k := range keys {
		if math.Float64bits(k)>>binShift-lo <= span {
			members = append(members, int32(i))
		}
	}
	slices.SortFunc(members, func(i, j int32) int {
		if c := cmp.Compare(keys[j], keys[i]); c != 0 {
			return c
		}
		return cmp.Compare(i, j)
	})
	sc.idx = members
	j := 0
	for acc += sc.w[members[0]]; acc < target && j+1 < len(members); j++ {
		acc += sc.w[members[j+1]]
	}
	i := members[j]
	return keys[i], int(i), acc, j+1 < len(members) && keys[members[j+1]] == keys[i]
}

// cut zeroes the weight of every token that ranks below (kc, idc) in
// (key, −id) order, or weighs less than minW, and returns the new sum. It
// is branch-free: a kept fraction near 1/2 would mispredict often.
func (sc *scratch) cut(keys []float64, kc float64, idc int, minW float64) float64 {
	ws := sc.w[:len(keys)]
	z := 0.0
	for i, k := range keys {
		w := ws[i]
		in := (b2u(k > kc) | b2u(k == kc)&b2u(i <= idc)) & b2u(w >= minW)
		w = math.Float64frombits(math.Float64bits(w) & -in) // w or 0
		ws[i] = w
		z += w
	}
	return z
}

// draw returns the first token at which the cumulative weight of the
// tokens of sc.w >= wmin exceeds target, in [0, their total): inverse-CDF
// sampling, each of them with probability w/total. Should rounding leave
// every sum <= target, it returns the last of them with positive weight.
func (sc *scratch) draw(wmin, target float64) int {
	acc := 0.0
	for i, w := range sc.w {
		if acc += math.Float64frombits(math.Float64bits(w) & -b2u(w >= wmin)); acc > target {
			return i
		}
	}
	i := len(sc.w) - 1
	for sc.w[i] == 0 || sc.w[i] < wmin {
		i--
	}
	return i
}

// b2u returns 1 for true and 0 for false, without a branch on amd64 and
// arm64.
func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// topHeap returns, in h (reused), the indices of the n largest values of
// v, ties going to the lower index, as a min-heap: h[0] is the n-th
// largest. Cost O(len(v) + m·log n) for m replacements, about
// n·log(len(v)/n) on random data.
func topHeap[F float32 | float64](h []int32, v []F, n int) []int32 {
	n = min(n, len(v))
	h = h[:0]
	for i := range n {
		h = append(h, int32(i))
	}
	// worse reports whether h[a] ranks below h[b].
	worse := func(a, b int) bool {
		va, vb := v[h[a]], v[h[b]]
		return va < vb || va == vb && h[a] > h[b]
	}
	down := func(i int) {
		for {
			c := 2*i + 1
			if c >= n {
				return
			}
			if c+1 < n && worse(c+1, c) {
				c++
			}
			if !worse(c, i) {
				return
			}
			h[i], h[c] = h[c], h[i]
			i = c
		}
	}
	for i := n/2 - 1; i >= 0; i-- {
		down(i)
	}
	floor := v[h[0]]
	for i := n; i < len(v); i++ {
		// A tie with the floor has a higher index, so it ranks below.
		if v[i] > floor {
			h[0] = int32(i)
			down(0)
			floor = v[h[0]]
		}
	}
	return h
}
