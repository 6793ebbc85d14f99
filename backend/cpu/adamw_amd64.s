//go:build amd64

// AdamW's elementwise update (the reference adamW in kernels.go) in AVX-512 and AVX2, for the
// fast backend. The Go declarations are in adamw_amd64.go.
//
// The update streams 7 floats per parameter (reads p, g, m, v; writes p, m, v) and is bound by
// memory bandwidth: one vector per iteration is enough, and the operations follow the reference
// one for one, with exact VDIVPS and VSQRTPS and no fused multiply-add, so that each result is
// the reference's bit for bit (sqrt in float64 rounded to float32 is the correctly rounded
// float32 sqrt). Registers 5-14 hold the constants, 0-4 the temporaries; AVX2 has just 16.

#include "textflag.h"

DATA adamwone<>+0(SB)/4, $0x3f800000 // 1
GLOBL adamwone<>(SB), RODATA|NOPTR, $4

// func adamWAVX512(p, grad, m, v *float32, n int, lr, beta1, beta2, eps, wd, gradScale, c1, c2 float32)
// One AdamW step over n elements, n a positive multiple of 16:
//
//	g = grad·gradScale
//	m = beta1·m + (1-beta1)·g
//	v = beta2·v + (1-beta2)·g·g
//	p -= lr·((m/c1)/(sqrt(v/c2)+eps) + wd·p)
TEXT ·adamWAVX512(SB), NOSPLIT, $0-72
	MOVQ p+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ m+16(FP), DX
	MOVQ v+24(FP), R8
	MOVQ n+32(FP), CX
	SHRQ $4, CX
	VBROADCASTSS lr+40(FP), Z14
	VBROADCASTSS beta1+44(FP), Z6
	VBROADCASTSS beta2+48(FP), Z8
	VBROADCASTSS eps+52(FP), Z12
	VBROADCASTSS wd+56(FP), Z13
	VBROADCASTSS gradScale+60(FP), Z5
	VBROADCASTSS c1+64(FP), Z10
	VBROADCASTSS c2+68(FP), Z11
	VBROADCASTSS adamwone<>(SB), Z0
	VSUBPS Z6, Z0, Z7
	VSUBPS Z8, Z0, Z9
loop:
	VMULPS (SI), Z5, Z0
	VMULPS (DX), Z6, Z1
	VMULPS Z0, Z7, Z2
	VADDPS Z2, Z1, Z1
	VMOVUPS Z1, (DX)
	VMULPS (R8), Z8, Z3
	VMULPS Z0, Z9, Z2
	VMULPS Z0, Z2, Z2
	VADDPS Z2, Z3, Z3
	VMOVUPS Z3, (R8)
	VDIVPS Z10, Z1, Z1
	VDIVPS Z11, Z3, Z3
	VSQRTPS Z3, Z3
	VADDPS Z12, Z3, Z3
	VDIVPS Z3, Z1, Z1
	VMOVUPS (DI), Z4
	VMULPS Z4, Z13, Z2
	VADDPS Z2, Z1, Z1
	VMULPS Z1, Z14, Z1
	VSUBPS Z1, Z4, Z4
	VMOVUPS Z4, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, R8
	ADDQ $64, DI
	DECQ CX
	JNZ loop
	VZEROUPPER
	RET

// func adamWAVX2(p, grad, m, v *float32, n int, lr, beta1, beta2, eps, wd, gradScale, c1, c2 float32)
// One AdamW step over n elements, n a positive multiple of 8:
//
//	g = grad·gradScale
//	m = beta1·m + (1-beta1)·g
//	v = beta2·v + (1-beta2)·g·g
//	p -= lr·((m/c1)/(sqrt(v/c2)+eps) + wd·p)
TEXT ·adamWAVX2(SB), NOSPLIT, $0-72
	MOVQ p+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ m+16(FP), DX
	MOVQ v+24(FP), R8
	MOVQ n+32(FP), CX
	SHRQ $3, CX
	VBROADCASTSS lr+40(FP), Y14
	VBROADCASTSS beta1+44(FP), Y6
	VBROADCASTSS beta2+48(FP), Y8
	VBROADCASTSS eps+52(FP), Y12
	VBROADCASTSS wd+56(FP), Y13
	VBROADCASTSS gradScale+60(FP), Y5
	VBROADCASTSS c1+64(FP), Y10
	VBROADCASTSS c2+68(FP), Y11
	VBROADCASTSS adamwone<>(SB), Y0
	VSUBPS Y6, Y0, Y7
	VSUBPS Y8, Y0, Y9
loop:
	VMULPS (SI), Y5, Y0
	VMULPS (DX), Y6, Y1
	VMULPS Y0, Y7, Y2
	VADDPS Y2, Y1, Y1
	VMOVUPS Y1, (DX)
	VMULPS (R8), Y8, Y3
	VMULPS Y0, Y9, Y2
	VMULPS Y0, Y2, Y2
	VADDPS Y2, Y3, Y3
	VMOVUPS Y3, (R8)
	VDIVPS Y10, Y1, Y1
	VDIVPS Y11, Y3, Y3
	VSQRTPS Y3, Y3
	VADDPS Y12, Y3, Y3
	VDIVPS Y3, Y1, Y1
	VMOVUPS (DI), Y4
	VMULPS Y4, Y13, Y2
	VADDPS Y2, Y1, Y1
	VMULPS Y1, Y14, Y1
	VSUBPS Y1, Y4, Y4
	VMOVUPS Y4, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, R8
	ADDQ $32, DI
	DECQ CX
	JNZ loop
	VZEROUPPER
	RET
