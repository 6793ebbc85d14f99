//go:build amd64

// LayerNorm row kernels of the fast backend (layernorm.go), in AVX-512 and AVX2. The Go
// declarations and their contracts are in layernorm_amd64.go. Each kernel makes one pass over n
// elements, n a positive multiple of the lane count (16 or 8); the Go wrappers add the tail.
// Sums run in one vector of lanes, added pairwise at the end (a row is at most a few hundred
// vectors, in L1, so one dependency chain costs less than the row's first read from memory);
// elementwise steps use no fused multiply-add, to round as the reference does.

#include "textflag.h"

// HSUM512 adds the 16 lanes of Z0 into X0's lowest (halves, then quarters, then pairs), with
// Z1 scratch.
#define HSUM512 \
	VEXTRACTF64X4 $1, Z0, Y1 \
	VADDPS Y1, Y0, Y0 \
	HSUM256

// HSUM256 adds the 8 lanes of Y0 into X0's lowest, with Y1 scratch.
#define HSUM256 \
	VEXTRACTF128 $1, Y0, X1 \
	VADDPS X1, X0, X0 \
	VPERMILPS $0x4e, X0, X1 \
	VADDPS X1, X0, X0 \
	VPERMILPS $0xb1, X0, X1 \
	VADDSS X1, X0, X0

// func sumAVX512(x *float32, n int) float32
// Σ x[i] for i < n. Z0 holds the lane sums.
TEXT ·sumAVX512(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	SHRQ $4, CX
	VPXORD Z0, Z0, Z0
loop:
	VADDPS (SI), Z0, Z0
	ADDQ $64, SI
	DECQ CX
	JNZ loop
	HSUM512
	VMOVSS X0, ret+16(FP)
	VZEROUPPER
	RET

// func sumSqDevAVX512(x *float32, n int, m float32) float32
// Σ (x[i]-m)² for i < n. Z0 holds the lane sums, Z2 m.
TEXT ·sumSqDevAVX512(SB), NOSPLIT, $0-28
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	SHRQ $4, CX
	VBROADCASTSS m+16(FP), Z2
	VPXORD Z0, Z0, Z0
loop:
	VMOVUPS (SI), Z3
	VSUBPS Z2, Z3, Z3
	VFMADD231PS Z3, Z3, Z0
	ADDQ $64, SI
	DECQ CX
	JNZ loop
	HSUM512
	VMOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// func layerNormAVX512(out, x, w, b *float32, n int, m, s float32)
// out[i] = (x[i]-m)·s·w[i] + b[i] for i < n. Z1 holds m, Z2 s.
TEXT ·layerNormAVX512(SB), NOSPLIT, $0-48
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), DX
	MOVQ b+24(FP), R8
	MOVQ n+32(FP), CX
	SHRQ $4, CX
	VBROADCASTSS m+40(FP), Z1
	VBROADCASTSS s+44(FP), Z2
loop:
	VMOVUPS (SI), Z0
	VSUBPS Z1, Z0, Z0
	VMULPS Z2, Z0, Z0
	VMULPS (DX), Z0, Z0
	VADDPS (R8), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, R8
	ADDQ $64, DI
	DECQ CX
	JNZ loop
	VZEROUPPER
	RET

// func layerNormSumsAVX512(d, x, w *float32, n int, m, s float32) (dnorm, dnormNorm float32)
// Σ w[i]·d[i] and Σ w[i]·d[i]·(x[i]-m)·s for i < n. Z3 and Z4 hold the lane sums, Z1 m,
// Z2 s.
TEXT ·layerNormSumsAVX512(SB), NOSPLIT, $0-48
	MOVQ d+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), DX
	MOVQ n+24(FP), CX
	SHRQ $4, CX
	VBROADCASTSS m+32(FP), Z1
	VBROADCASTSS s+36(FP), Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
loop:
	VMOVUPS (SI), Z0
	VSUBPS Z1, Z0, Z0
	VMULPS Z2, Z0, Z0
	VMOVUPS (DX), Z5
	VMULPS (DI), Z5, Z5
	VADDPS Z5, Z3, Z3
	VFMADD231PS Z5, Z0, Z4
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	DECQ CX
	JNZ loop
	VMOVAPS Z3, Z0
	HSUM512
	VMOVSS X0, dnorm+40(FP)
	VMOVAPS Z4, Z0
	HSUM512
	VMOVSS X0, dnormNorm+44(FP)
	VZEROUPPER
	RET

// func layerNormBackwardAVX512(dx, dw, db, d, x, w *float32, n int, m, s, dm, dnm float32)
// For i < n, with norm = (x[i]-m)·s: db[i] += d[i], dw[i] += norm·d[i] and
// dx[i] += (w[i]·d[i] - dm - norm·dnm)·s. Z1-Z4 hold m, s, dm, dnm.
TEXT ·layerNormBackwardAVX512(SB), NOSPLIT, $0-72
	MOVQ dx+0(FP), DI
	MOVQ dw+8(FP), R9
	MOVQ db+16(FP), R10
	MOVQ d+24(FP), R11
	MOVQ x+32(FP), SI
	MOVQ w+40(FP), DX
	MOVQ n+48(FP), CX
	SHRQ $4, CX
	VBROADCASTSS m+56(FP), Z1
	VBROADCASTSS s+60(FP), Z2
	VBROADCASTSS dm+64(FP), Z3
	VBROADCASTSS dnm+68(FP), Z4
loop:
	VMOVUPS (SI), Z0
	VSUBPS Z1, Z0, Z0
	VMULPS Z2, Z0, Z0
	VMOVUPS (R11), Z5
	VADDPS (R10), Z5, Z6
	VMOVUPS Z6, (R10)
	VMULPS Z5, Z0, Z6
	VADDPS (R9), Z6, Z6
	VMOVUPS Z6, (R9)
	VMULPS (DX), Z5, Z5
	VSUBPS Z3, Z5, Z5
	VMULPS Z4, Z0, Z6
	VSUBPS Z6, Z5, Z5
	VMULPS Z2, Z5, Z5
	VADDPS (DI), Z5, Z5
	VMOVUPS Z5, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, R11
	ADDQ $64, R10
	ADDQ $64, R9
	ADDQ $64, DI
	DECQ CX
	JNZ loop
	VZEROUPPER
	RET

// func sumAVX2(x *float32, n int) float32
// Σ x[i] for i < n. Y0 holds the lane sums.
TEXT ·sumAVX2(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	SHRQ $3, CX
	VXORPS Y0, Y0, Y0
loop:
	VADDPS (SI), Y0, Y0
	ADDQ $32, SI
	DECQ CX
	JNZ loop
	HSUM256
	VMOVSS X0, ret+16(FP)
	VZEROUPPER
	RET

// func sumSqDevAVX2(x *float32, n int, m float32) float32
// Σ (x[i]-m)² for i < n. Y0 holds the lane sums, Y2 m.
TEXT ·sumSqDevAVX2(SB), NOSPLIT, $0-28
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	SHRQ $3, CX
	VBROADCASTSS m+16(FP), Y2
	VXORPS Y0, Y0, Y0
loop:
	VMOVUPS (SI), Y3
	VSUBPS Y2, Y3, Y3
	VFMADD231PS Y3, Y3, Y0
	ADDQ $32, SI
	DECQ CX
	JNZ loop
	HSUM256
	VMOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// func layerNormAVX2(out, x, w, b *float32, n int, m, s float32)
// out[i] = (x[i]-m)·s·w[i] + b[i] for i < n. Y1 holds m, Y2 s.
TEXT ·layerNormAVX2(SB), NOSPLIT, $0-48
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), DX
	MOVQ b+24(FP), R8
	MOVQ n+32(FP), CX
	SHRQ $3, CX
	VBROADCASTSS m+40(FP), Y1
	VBROADCASTSS s+44(FP), Y2
loop:
	VMOVUPS (SI), Y0
	VSUBPS Y1, Y0, Y0
	VMULPS Y2, Y0, Y0
	VMULPS (DX), Y0, Y0
	VADDPS (R8), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, R8
	ADDQ $32, DI
	DECQ CX
	JNZ loop
	VZEROUPPER
	RET

// func layerNormSumsAVX2(d, x, w *float32, n int, m, s float32) (dnorm, dnormNorm float32)
// Σ w[i]·d[i] and Σ w[i]·d[i]·(x[i]-m)·s for i < n. Y3 and Y4 hold the lane sums, Y1 m,
// Y2 s.
TEXT ·layerNormSumsAVX2(SB), NOSPLIT, $0-48
	MOVQ d+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), DX
	MOVQ n+24(FP), CX
	SHRQ $3, CX
	VBROADCASTSS m+32(FP), Y1
	VBROADCASTSS s+36(FP), Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
loop:
	VMOVUPS (SI), Y0
	VSUBPS Y1, Y0, Y0
	VMULPS Y2, Y0, Y0
	VMOVUPS (DX), Y5
	VMULPS (DI), Y5, Y5
	VADDPS Y5, Y3, Y3
	VFMADD231PS Y5, Y0, Y4
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	DECQ CX
	JNZ loop
	VMOVAPS Y3, Y0
	HSUM256
	VMOVSS X0, dnorm+40(FP)
	VMOVAPS Y4, Y0
	HSUM256
	VMOVSS X0, dnormNorm+44(FP)
	VZEROUPPER
	RET

// func layerNormBackwardAVX2(dx, dw, db, d, x, w *float32, n int, m, s, dm, dnm float32)
// For i < n, with norm = (x[i]-m)·s: db[i] += d[i], dw[i] += norm·d[i] and
// dx[i] += (w[i]·d[i] - dm - norm·dnm)·s. Y1-Y4 hold m, s, dm, dnm.
TEXT ·layerNormBackwardAVX2(SB), NOSPLIT, $0-72
	MOVQ dx+0(FP), DI
	MOVQ dw+8(FP), R9
	MOVQ db+16(FP), R10
	MOVQ d+24(FP), R11
	MOVQ x+32(FP), SI
	MOVQ w+40(FP), DX
	MOVQ n+48(FP), CX
	SHRQ $3, CX
	VBROADCASTSS m+56(FP), Y1
	VBROADCASTSS s+60(FP), Y2
	VBROADCASTSS dm+64(FP), Y3
	VBROADCASTSS dnm+68(FP), Y4
loop:
	VMOVUPS (SI), Y0
	VSUBPS Y1, Y0, Y0
	VMULPS Y2, Y0, Y0
	VMOVUPS (R11), Y5
	VADDPS (R10), Y5, Y6
	VMOVUPS Y6, (R10)
	VMULPS Y5, Y0, Y6
	VADDPS (R9), Y6, Y6
	VMOVUPS Y6, (R9)
	VMULPS (DX), Y5, Y5
	VSUBPS Y3, Y5, Y5
	VMULPS Y4, Y0, Y6
	VSUBPS Y6, Y5, Y5
	VMULPS Y2, Y5, Y5
	VADDPS (DI), Y5, Y5
	VMOVUPS Y5, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, R11
	ADDQ $32, R10
	ADDQ $32, R9
	ADDQ $32, DI
	DECQ CX
	JNZ loop
	VZEROUPPER
	RET
