//go:build amd64

// SIMD kernels of the fast backend's attention, softmax and cross-entropy (attention.go,
// vec.go), in AVX-512 and AVX2 with FMA. The Go declarations and their contracts are in
// vec_amd64.go.

#include "textflag.h"

// Constants of exp: the clamp bounds, log2(e), ln 2 in two parts and the polynomial of Cephes'
// expf (the same as exp32 in fastmath.go), and 1.
DATA expc<>+0(SB)/4, $0xc2dc0000  // -110: below it e^x rounds to 0
DATA expc<>+4(SB)/4, $0x42b20000  // 89: above it e^x overflows to +Inf
DATA expc<>+8(SB)/4, $0x3fb8aa3b  // log2(e)
DATA expc<>+12(SB)/4, $0x3f318000 // ln2Hi
DATA expc<>+16(SB)/4, $0xb95e8083 // ln2Lo
DATA expc<>+20(SB)/4, $0x39506967 // 1.9875691500e-4
DATA expc<>+24(SB)/4, $0x3ab743ce // 1.3981999507e-3
DATA expc<>+28(SB)/4, $0x3c088908 // 8.3334519073e-3
DATA expc<>+32(SB)/4, $0x3d2aa9c1 // 4.1665795894e-2
DATA expc<>+36(SB)/4, $0x3e2aaaaa // 1.6666665459e-1
DATA expc<>+40(SB)/4, $0x3f000000 // 5.0000001201e-1
DATA expc<>+44(SB)/4, $0x3f800000 // 1
DATA expc<>+48(SB)/4, $0xff800000 // -Inf
GLOBL expc<>(SB), RODATA|NOPTR, $52

// EXPCONST512 broadcasts the constants of EXP512 into Z18-Z29.
#define EXPCONST512 \
	VBROADCASTSS expc<>+0(SB), Z18 \
	VBROADCASTSS expc<>+4(SB), Z29 \
	VBROADCASTSS expc<>+8(SB), Z19 \
	VBROADCASTSS expc<>+12(SB), Z20 \
	VBROADCASTSS expc<>+16(SB), Z21 \
	VBROADCASTSS expc<>+20(SB), Z22 \
	VBROADCASTSS expc<>+24(SB), Z23 \
	VBROADCASTSS expc<>+28(SB), Z24 \
	VBROADCASTSS expc<>+32(SB), Z25 \
	VBROADCASTSS expc<>+36(SB), Z26 \
	VBROADCASTSS expc<>+40(SB), Z27 \
	VBROADCASTSS expc<>+44(SB), Z28

// EXP512 sets X = e^X in 16 lanes, with K, P and R scratch: X is clamped to [-110, 89] (a NaN
// stays NaN: MAXPS and MINPS return their second source when either is NaN), k = round(x·log2 e),
// r = x - k·ln 2 in two parts, e^r by Cephes' polynomial, and VSCALEFPS multiplies by 2^k with
// IEEE overflow and gradual underflow.
#define EXP512(X, K, P, R) \
	VMAXPS X, Z18, X \
	VMINPS X, Z29, X \
	VMULPS Z19, X, K \
	VRNDSCALEPS $0, K, K \
	VFNMADD231PS Z20, K, X \
	VFNMADD231PS Z21, K, X \
	VMOVAPS Z22, P \
	VFMADD213PS Z23, X, P \
	VFMADD213PS Z24, X, P \
	VFMADD213PS Z25, X, P \
	VFMADD213PS Z26, X, P \
	VFMADD213PS Z27, X, P \
	VMULPS X, X, R \
	VFMADD213PS X, R, P \
	VADDPS Z28, P, P \
	VSCALEFPS K, P, X

// HSUM512 adds the 16 lanes of Z0 into X0's lowest (halves, then quarters, then pairs), with
// Z1 scratch.
#define HSUM512 \
	VEXTRACTF64X4 $1, Z0, Y1 \
	VADDPS Y1, Y0, Y0 \
	VEXTRACTF128 $1, Y0, X1 \
	VADDPS X1, X0, X0 \
	VPERMILPS $0x4e, X0, X1 \
	VADDPS X1, X0, X0 \
	VPERMILPS $0xb1, X0, X1 \
	VADDSS X1, X0, X0


// func attn6x64AVX512(k int, a *float32, ars, aps int, b *float32, ldb int, c *float32, ldc int)
// C[r][j] += Σ_p a[r*ars+p*aps]·b[p*ldb+j] for r < 6, j < 64; row r of C at c + r*ldc.
// Z0-Z23 hold C (row r in Z4r..Z4r+3), Z24-Z27 a row of b, Z28/Z29 a broadcast element of a.
TEXT ·attn6x64AVX512(SB), NOSPLIT, $0-64
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ ars+16(FP), R8
	MOVQ aps+24(FP), R9
	MOVQ b+32(FP), DX
	MOVQ ldb+40(FP), R11
	MOVQ c+48(FP), DI
	MOVQ ldc+56(FP), R12
	SHLQ $2, R8
	SHLQ $2, R9
	SHLQ $2, R11
	SHLQ $2, R12
	LEAQ (R8)(R8*2), BX
	LEAQ (SI)(BX*1), R10
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23
	TESTQ CX, CX
	JZ attn6x64store
attn6x64loop:
	VMOVUPS 0(DX), Z24
	VMOVUPS 64(DX), Z25
	VMOVUPS 128(DX), Z26
	VMOVUPS 192(DX), Z27
	VBROADCASTSS (SI), Z28
	VFMADD231PS Z24, Z28, Z0
	VFMADD231PS Z25, Z28, Z1
	VFMADD231PS Z26, Z28, Z2
	VFMADD231PS Z27, Z28, Z3
	VBROADCASTSS (SI)(R8*1), Z29
	VFMADD231PS Z24, Z29, Z4
	VFMADD231PS Z25, Z29, Z5
	VFMADD231PS Z26, Z29, Z6
	VFMADD231PS Z27, Z29, Z7
	VBROADCASTSS (SI)(R8*2), Z28
	VFMADD231PS Z24, Z28, Z8
	VFMADD231PS Z25, Z28, Z9
	VFMADD231PS Z26, Z28, Z10
	VFMADD231PS Z27, Z28, Z11
	VBROADCASTSS (R10), Z29
	VFMADD231PS Z24, Z29, Z12
	VFMADD231PS Z25, Z29, Z13
	VFMADD231PS Z26, Z29, Z14
	VFMADD231PS Z27, Z29, Z15
	VBROADCASTSS (R10)(R8*1), Z28
	VFMADD231PS Z24, Z28, Z16
	VFMADD231PS Z25, Z28, Z17
	VFMADD231PS Z26, Z28, Z18
	VFMADD231PS Z27, Z28, Z19
	VBROADCASTSS (R10)(R8*2), Z29
	VFMADD231PS Z24, Z29, Z20
	VFMADD231PS Z25, Z29, Z21
	VFMADD231PS Z26, Z29, Z22
	VFMADD231PS Z27, Z29, Z23
	ADDQ R9, SI
	ADDQ R9, R10
	ADDQ R11, DX
	DECQ CX
	JNZ attn6x64loop
attn6x64store:
	VADDPS 0(DI), Z0, Z0
	VMOVUPS Z0, 0(DI)
	VADDPS 64(DI), Z1, Z1
	VMOVUPS Z1, 64(DI)
	VADDPS 128(DI), Z2, Z2
	VMOVUPS Z2, 128(DI)
	VADDPS 192(DI), Z3, Z3
	VMOVUPS Z3, 192(DI)
	ADDQ R12, DI
	VADDPS 0(DI), Z4, Z4
	VMOVUPS Z4, 0(DI)
	VADDPS 64(DI), Z5, Z5
	VMOVUPS Z5, 64(DI)
	VADDPS 128(DI), Z6, Z6
	VMOVUPS Z6, 128(DI)
	VADDPS 192(DI), Z7, Z7
	VMOVUPS Z7, 192(DI)
	ADDQ R12, DI
	VADDPS 0(DI), Z8, Z8
	VMOVUPS Z8, 0(DI)
	VADDPS 64(DI), Z9, Z9
	VMOVUPS Z9, 64(DI)
	VADDPS 128(DI), Z10, Z10
	VMOVUPS Z10, 128(DI)
	VADDPS 192(DI), Z11, Z11
	VMOVUPS Z11, 192(DI)
	ADDQ R12, DI
	VADDPS 0(DI), Z12, Z12
	VMOVUPS Z12, 0(DI)
	VADDPS 64(DI), Z13, Z13
	VMOVUPS Z13, 64(DI)
	VADDPS 128(DI), Z14, Z14
	VMOVUPS Z14, 128(DI)
	VADDPS 192(DI), Z15, Z15
	VMOVUPS Z15, 192(DI)
	ADDQ R12, DI
	VADDPS 0(DI), Z16, Z16
	VMOVUPS Z16, 0(DI)
	VADDPS 64(DI), Z17, Z17
	VMOVUPS Z17, 64(DI)
	VADDPS 128(DI), Z18, Z18
	VMOVUPS Z18, 128(DI)
	VADDPS 192(DI), Z19, Z19
	VMOVUPS Z19, 192(DI)
	ADDQ R12, DI
	VADDPS 0(DI), Z20, Z20
	VMOVUPS Z20, 0(DI)
	VADDPS 64(DI), Z21, Z21
	VMOVUPS Z21, 64(DI)
	VADDPS 128(DI), Z22, Z22
	VMOVUPS Z22, 128(DI)
	VADDPS 192(DI), Z23, Z23
	VMOVUPS Z23, 192(DI)
	VZEROUPPER
	RET

// func attn6x16AVX2(k int, a *float32, ars, aps int, b *float32, ldb int, c *float32, ldc int)
// C[r][j] += Σ_p a[r*ars+p*aps]·b[p*ldb+j] for r < 6, j < 16; row r of C at c + r*ldc.
// Y0-Y11 hold C (row r in Y2r, Y2r+1), Y12/Y13 a row of b, Y14/Y15 a broadcast element of a.
TEXT ·attn6x16AVX2(SB), NOSPLIT, $0-64
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ ars+16(FP), R8
	MOVQ aps+24(FP), R9
	MOVQ b+32(FP), DX
	MOVQ ldb+40(FP), R11
	MOVQ c+48(FP), DI
	MOVQ ldc+56(FP), R12
	SHLQ $2, R8
	SHLQ $2, R9
	SHLQ $2, R11
	SHLQ $2, R12
	LEAQ (R8)(R8*2), BX
	LEAQ (SI)(BX*1), R10
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	TESTQ CX, CX
	JZ attn6x16store
attn6x16loop:
	VMOVUPS 0(DX), Y12
	VMOVUPS 32(DX), Y13
	VBROADCASTSS (SI), Y14
	VFMADD231PS Y12, Y14, Y0
	VFMADD231PS Y13, Y14, Y1
	VBROADCASTSS (SI)(R8*1), Y15
	VFMADD231PS Y12, Y15, Y2
	VFMADD231PS Y13, Y15, Y3
	VBROADCASTSS (SI)(R8*2), Y14
	VFMADD231PS Y12, Y14, Y4
	VFMADD231PS Y13, Y14, Y5
	VBROADCASTSS (R10), Y15
	VFMADD231PS Y12, Y15, Y6
	VFMADD231PS Y13, Y15, Y7
	VBROADCASTSS (R10)(R8*1), Y14
	VFMADD231PS Y12, Y14, Y8
	VFMADD231PS Y13, Y14, Y9
	VBROADCASTSS (R10)(R8*2), Y15
	VFMADD231PS Y12, Y15, Y10
	VFMADD231PS Y13, Y15, Y11
	ADDQ R9, SI
	ADDQ R9, R10
	ADDQ R11, DX
	DECQ CX
	JNZ attn6x16loop
attn6x16store:
	VADDPS 0(DI), Y0, Y0
	VMOVUPS Y0, 0(DI)
	VADDPS 32(DI), Y1, Y1
	VMOVUPS Y1, 32(DI)
	ADDQ R12, DI
	VADDPS 0(DI), Y2, Y2
	VMOVUPS Y2, 0(DI)
	VADDPS 32(DI), Y3, Y3
	VMOVUPS Y3, 32(DI)
	ADDQ R12, DI
	VADDPS 0(DI), Y4, Y4
	VMOVUPS Y4, 0(DI)
	VADDPS 32(DI), Y5, Y5
	VMOVUPS Y5, 32(DI)
	ADDQ R12, DI
	VADDPS 0(DI), Y6, Y6
	VMOVUPS Y6, 0(DI)
	VADDPS 32(DI), Y7, Y7
	VMOVUPS Y7, 32(DI)
	ADDQ R12, DI
	VADDPS 0(DI), Y8, Y8
	VMOVUPS Y8, 0(DI)
	VADDPS 32(DI), Y9, Y9
	VMOVUPS Y9, 32(DI)
	ADDQ R12, DI
	VADDPS 0(DI), Y10, Y10
	VMOVUPS Y10, 0(DI)
	VADDPS 32(DI), Y11, Y11
	VMOVUPS Y11, 32(DI)
	VZEROUPPER
	RET

// func maxAVX512(x *float32, n int) float32
// The largest of x[0:n]; n is a positive multiple of 16. Z0 holds the lane maxima.
TEXT ·maxAVX512(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	SHRQ $4, CX
	VBROADCASTSS expc<>+48(SB), Z0
maxloop:
	VMAXPS (SI), Z0, Z0
	ADDQ $64, SI
	DECQ CX
	JNZ maxloop
	VEXTRACTF64X4 $1, Z0, Y1
	VMAXPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0x4e, X0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0xb1, X0, X1
	VMAXSS X1, X0, X0
	VMOVSS X0, ret+16(FP)
	VZEROUPPER
	RET

// func expSumAVX512(dst, x *float32, n int, m, s float32) float32
// dst[i] = e^((x[i]-m)·s) for i < n, and returns their sum; n is a positive multiple of 16.
// Z15 holds the sums of the 16 lanes, Z16 m, Z17 s, Z18-Z29 the constants of EXP512.
TEXT ·expSumAVX512(SB), NOSPLIT, $0-36
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	VBROADCASTSS m+24(FP), Z16
	VBROADCASTSS s+28(FP), Z17
	EXPCONST512
	VPXORD Z15, Z15, Z15
expsumloop:
	VMOVUPS (SI), Z0
	VSUBPS Z16, Z0, Z0
	VMULPS Z17, Z0, Z0
	EXP512(Z0, Z1, Z2, Z3)
	VMOVUPS Z0, (DI)
	VADDPS Z0, Z15, Z15
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ expsumloop
	VMOVAPS Z15, Z0
	HSUM512
	VMOVSS X0, ret+32(FP)
	VZEROUPPER
	RET

// func scaleAVX512(x *float32, n int, s float32)
// x[i] *= s for i < n; n is a positive multiple of 16.
TEXT ·scaleAVX512(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	SHRQ $4, CX
	VBROADCASTSS s+16(FP), Z1
scaleloop:
	VMULPS (SI), Z1, Z0
	VMOVUPS Z0, (SI)
	ADDQ $64, SI
	DECQ CX
	JNZ scaleloop
	VZEROUPPER
	RET

// func dotAVX512(a, b *float32, n int) float32
// Σ a[i]·b[i] for i < n; n is a positive multiple of 16. Z0 holds the sums of the 16 lanes.
TEXT ·dotAVX512(SB), NOSPLIT, $0-28
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DX
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	VPXORD Z0, Z0, Z0
dotloop:
	VMOVUPS (SI), Z1
	VFMADD231PS (DX), Z1, Z0
	ADDQ $64, SI
	ADDQ $64, DX
	DECQ CX
	JNZ dotloop
	HSUM512
	VMOVSS X0, ret+24(FP)
	VZEROUPPER
	RET


// Constants of GELU: sqrt(2/pi), 0.044715, 0.5, -1, 2 and 3·0.044715.
DATA geluc<>+0(SB)/4, $0x3f4c422a
DATA geluc<>+4(SB)/4, $0x3d372713
DATA geluc<>+8(SB)/4, $0x3f000000
DATA geluc<>+12(SB)/4, $0xbf800000
DATA geluc<>+16(SB)/4, $0x40000000
DATA geluc<>+20(SB)/4, $0x3e095d4f
GLOBL geluc<>(SB), RODATA|NOPTR, $24

// GELUCONST512 broadcasts the constants of GELUTANH512 and the GELU kernels into Z13-Z17, Z30,
// Z31 (Z13 = 0).
#define GELUCONST512 \
	EXPCONST512 \
	VBROADCASTSS geluc<>+0(SB), Z16 \
	VBROADCASTSS geluc<>+4(SB), Z17 \
	VBROADCASTSS geluc<>+8(SB), Z30 \
	VBROADCASTSS geluc<>+12(SB), Z31 \
	VBROADCASTSS geluc<>+16(SB), Z15 \
	VBROADCASTSS geluc<>+20(SB), Z14 \
	VPXORD Z13, Z13, Z13

// GELUTANH512 sets Z0 = tanh(sqrt(2/pi)·(x + 0.044715x³)) = 1 - 2/(e^{2y}+1) for x in Z4, as
// tanh32, with Z1-Z3 and Z5 scratch.
#define GELUTANH512 \
	VMULPS Z4, Z4, Z5 \
	VMULPS Z17, Z5, Z5 \
	VFMADD213PS Z4, Z4, Z5 \
	VMULPS Z16, Z5, Z5 \
	VADDPS Z5, Z5, Z0 \
	EXP512(Z0, Z1, Z2, Z3) \
	VADDPS Z28, Z0, Z0 \
	VDIVPS Z0, Z15, Z0 \
	VSUBPS Z0, Z28, Z0

// func geluAVX512(out, inp *float32, n int)
// out[i] = 0.5·x·(1+tanh(...)) for x = inp[i], i < n, and 0 where tanh is -1 (the limit at
// -Inf); n is a positive multiple of 16.
TEXT ·geluAVX512(SB), NOSPLIT, $0-24
	MOVQ out+0(FP), DI
	MOVQ inp+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	GELUCONST512
geluloop:
	VMOVUPS (SI), Z4
	GELUTANH512
	VCMPPS $4, Z31, Z0, K1
	VADDPS Z28, Z0, Z0
	VMULPS Z30, Z4, Z4
	VMULPS.Z Z0, Z4, K1, Z4
	VMOVUPS Z4, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ geluloop
	VZEROUPPER
	RET

// func geluBackwardAVX512(dinp, inp, dout *float32, n int)
// dinp[i] += dout[i]·gelu'(inp[i]) for i < n, with sech² = 1 - tanh² and its term left out where
// sech² is 0 (as geluBackwardFast); n is a positive multiple of 16.
TEXT ·geluBackwardAVX512(SB), NOSPLIT, $0-32
	MOVQ dinp+0(FP), DI
	MOVQ inp+8(FP), SI
	MOVQ dout+16(FP), DX
	MOVQ n+24(FP), CX
	SHRQ $4, CX
	GELUCONST512
gelubwdloop:
	VMOVUPS (SI), Z4
	GELUTANH512
	VMULPS Z0, Z0, Z6
	VSUBPS Z6, Z28, Z6
	VCMPPS $4, Z13, Z6, K2
	VADDPS Z28, Z0, Z8
	VMULPS Z30, Z8, Z8
	VMULPS Z4, Z4, Z9
	VMULPS Z14, Z9, Z9
	VADDPS Z28, Z9, Z9
	VMULPS Z30, Z4, Z10
	VMULPS Z6, Z10, Z10
	VMULPS Z16, Z10, Z10
	VMULPS Z9, Z10, Z10
	VADDPS Z10, Z8, K2, Z8
	VMOVUPS (DI), Z11
	VFMADD231PS (DX), Z8, Z11
	VMOVUPS Z11, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	DECQ CX
	JNZ gelubwdloop
	VZEROUPPER
	RET

// func softmaxGradAVX512(d, p *float32, n int, dot, scale float32)
// d[i] = p[i]·(d[i]-dot)·scale for i < n; n is a positive multiple of 16.
TEXT ·softmaxGradAVX512(SB), NOSPLIT, $0-32
	MOVQ d+0(FP), DI
	MOVQ p+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	VBROADCASTSS dot+24(FP), Z16
	VBROADCASTSS scale+28(FP), Z17
softmaxgradloop:
	VMOVUPS (DI), Z0
	VSUBPS Z16, Z0, Z0
	VMULPS (SI), Z0, Z0
	VMULPS Z17, Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ softmaxgradloop
	VZEROUPPER
	RET

// HSUM256 adds the 8 lanes of Y0 into X0's lowest (halves, then pairs), with Y1 scratch.
#define HSUM256 \
	VEXTRACTF128 $1, Y0, X1 \
	VADDPS X1, X0, X0 \
	VPERMILPS $0x4e, X0, X1 \
	VADDPS X1, X0, X0 \
	VPERMILPS $0xb1, X0, X1 \
	VADDSS X1, X0, X0

// func maxAVX2(x *float32, n int) float32
// The largest of x[0:n]; n is a positive multiple of 8. Y0 holds the lane maxima.
TEXT ·maxAVX2(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	SHRQ $3, CX
	VBROADCASTSS expc<>+48(SB), Y0
loop:
	VMAXPS (SI), Y0, Y0
	ADDQ $32, SI
	DECQ CX
	JNZ loop
	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0x4e, X0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0xb1, X0, X1
	VMAXSS X1, X0, X0
	VMOVSS X0, ret+16(FP)
	VZEROUPPER
	RET

// func scaleAVX2(x *float32, n int, s float32)
// x[i] *= s for i < n; n is a positive multiple of 8.
TEXT ·scaleAVX2(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	SHRQ $3, CX
	VBROADCASTSS s+16(FP), Y1
loop:
	VMULPS (SI), Y1, Y0
	VMOVUPS Y0, (SI)
	ADDQ $32, SI
	DECQ CX
	JNZ loop
	VZEROUPPER
	RET

// func dotAVX2(a, b *float32, n int) float32
// Σ a[i]·b[i] for i < n; n is a positive multiple of 8. Y0 holds the sums of the 8 lanes.
TEXT ·dotAVX2(SB), NOSPLIT, $0-28
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DX
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	VXORPS Y0, Y0, Y0
loop:
	VMOVUPS (SI), Y1
	VFMADD231PS (DX), Y1, Y0
	ADDQ $32, SI
	ADDQ $32, DX
	DECQ CX
	JNZ loop
	HSUM256
	VMOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// func softmaxGradAVX2(d, p *float32, n int, dot, scale float32)
// d[i] = p[i]·(d[i]-dot)·scale for i < n; n is a positive multiple of 8.
TEXT ·softmaxGradAVX2(SB), NOSPLIT, $0-32
	MOVQ d+0(FP), DI
	MOVQ p+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	VBROADCASTSS dot+24(FP), Y2
	VBROADCASTSS scale+28(FP), Y3
loop:
	VMOVUPS (DI), Y0
	VSUBPS Y2, Y0, Y0
	VMULPS (SI), Y0, Y0
	VMULPS Y3, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ loop
	VZEROUPPER
	RET
