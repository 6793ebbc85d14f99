package safetensors

import (
	"encoding/binary"
	"math"
)

// decodeF32 converts little-endian float32 bytes; len(src) == 4*len(dst).
func decodeF32(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

// decodeBF16 converts little-endian bfloat16 bytes; len(src) == 2*len(dst).
func decodeBF16(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = bf16ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// decodeF16 converts little-endian binary16 bytes; len(src) == 2*len(dst).
func decodeF16(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = f16ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// bf16ToFloat32 is exact: a bfloat16 is the top half of a float32.
func bf16ToFloat32(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// bf16FromFloat32 rounds to the nearest bfloat16, ties to even, as PyTorch's
// c10::BFloat16 round_to_nearest_even does; overflow rounds to ±Inf. A NaN
// stays a NaN (quietened, sign and top payload bits kept), where plain
// rounding could carry it into an infinity.
func bf16FromFloat32(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN
		return uint16(b>>16) | 0x0040
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// f16ToFloat32 converts an IEEE 754 binary16 (1 sign, 5 exponent, 10
// mantissa bits, bias 15) to float32 exactly, subnormals, infinities and NaN
// payloads included.
func f16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f: // Inf or NaN: keep the payload, quiet bit included
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0 && mant == 0: // ±0
		return math.Float32frombits(sign)
	case exp == 0: // subnormal, mant * 2^-24: normalize, as a float32 has the range
		e := uint32(127 - 14)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// f16FromFloat32 rounds to the nearest binary16, ties to even, producing
// subnormals below 2^-14 and ±Inf at or above 65520, as numpy's float16 and
// C's _Float16 conversions do. A NaN stays a NaN (quietened, sign and top
// payload bits kept).
func f16FromFloat32(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant == 0 {
			return sign | 0x7c00
		}
		return sign | 0x7e00 | uint16(mant>>13)
	}
	e := exp - 127 + 15 // binary16 biased exponent
	switch {
	case e >= 0x1f:
		return sign | 0x7c00
	case e <= 0:
		// Subnormal (or zero): value = m * 2^(exp-150) with the implicit
		// bit, in units of 2^-24 that is m >> (126-exp) = m >> (14-e).
		if e < -10 { // below 2^-25, half the smallest subnormal: rounds to 0
			return sign
		}
		m := mant | 0x800000
		shift := uint32(14 - e) // 14..24
		r := m >> shift
		rem, half := m&(1<<shift-1), uint32(1)<<(shift-1)
		if rem > half || rem == half && r&1 == 1 {
			r++ // may carry into the smallest normal, 0x0400: still right
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || rem == 0x1000 && r&1 == 1 {
		r++ // may carry into the exponent, up to 0x7c00 = Inf: still right
	}
	return sign | uint16(r)
}
