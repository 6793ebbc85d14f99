package cpu

// KernelSets names the instruction sets of the fast backend's matmul kernels, as chosen at start
// from CPUID and the OS's enabled state: the float32 GEMM and decode dot products ("avx512",
// "avx2" or "go") and the bfloat16-weight forward of [Backend.MatmulForwardBF16] (the same
// names).
func KernelSets() (matmul, bf16 string) { return matmulKernels.name, bf16Kernels.name }
