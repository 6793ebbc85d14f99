package cuda

import (
	"fmt"
	"unsafe"

	"github.com/modeld-dev/modeld/backend/cuda/internal/dl"
)

// cublasStatus is cublasStatus_t (a C enum, so int32). 0 is CUBLAS_STATUS_SUCCESS.
type cublasStatus int32

// Enum values passed to cuBLAS (cublas_api.h, library_types.h).
const (
	cublasOpN = 0 // CUBLAS_OP_N: the matrix as stored (column-major)
	cublasOpT = 1 // CUBLAS_OP_T: its transpose

	cudaR32F = 0 // CUDA_R_32F (cudaDataType)

	// cublasCompute32F is CUBLAS_COMPUTE_32F: IEEE fp32 products and sums, the parity mode.
	cublasCompute32F = 68
	// cublasCompute32FFastTF32 is CUBLAS_COMPUTE_32F_FAST_TF32: inputs rounded to TF32 (10-bit
	// mantissa) on the tensor cores, fp32 accumulation (Ampere and later).
	cublasCompute32FFastTF32 = 77

	cublasGemmDefault = -1 // CUBLAS_GEMM_DEFAULT (cublasGemmAlgo_t)

	cublasMajorVersion = 0 // MAJOR_VERSION (libraryPropertyType)
	cublasMinorVersion = 1 // MINOR_VERSION
)

// cublasStatusNames names the statuses of cublas_api.h, for libraries older than
// cublasGetStatusName (cuBLAS 11.4.2).
var cublasStatusNames = map[cublasStatus]string{
	0:  "CUBLAS_STATUS_SUCCESS",
	1:  "CUBLAS_STATUS_NOT_INITIALIZED",
	3:  "CUBLAS_STATUS_ALLOC_FAILED",
	7:  "CUBLAS_STATUS_INVALID_VALUE",
	8:  "CUBLAS_STATUS_ARCH_MISMATCH",
	11: "CUBLAS_STATUS_MAPPING_ERROR",
	13: "CUBLAS_STATUS_EXECUTION_FAILED",
	14: "CUBLAS_STATUS_INTERNAL_ERROR",
	15: "CUBLAS_STATUS_NOT_SUPPORTED",
	16: "CUBLAS_STATUS_LICENSE_ERROR",
}

// cublasStatusAllocFailed is CUBLAS_STATUS_ALLOC_FAILED: cuBLAS could not get device memory
// (its workspace).
const cublasStatusAllocFailed cublasStatus = 3

// cublas holds the entry points of libcublas (cublas_api.h). Matrices are device pointers
// (uint64); alpha and beta are host pointers (CUBLAS_POINTER_MODE_HOST, the default), read
// before the call returns.
type cublas struct {
	lib   *dl.Lib
	major int // the soname's major version: 11, 12 or 13

	create      func(handle *uintptr) cublasStatus
	destroy     func(handle uintptr) cublasStatus
	setStream   func(handle, stream uintptr) cublasStatus
	getProperty func(prop int32, value *int32) cublasStatus
	sgemm       func(handle uintptr, transa, transb, m, n, k int32, alpha *float32, a uint64, lda int32, b uint64, ldb int32, beta *float32, c uint64, ldc int32) cublasStatus
	gemmEx      func(handle uintptr, transa, transb, m, n, k int32, alpha unsafe.Pointer, a uint64, atype, lda int32, b uint64, btype, ldb int32, beta unsafe.Pointer, c uint64, ctype, ldc int32, compute, algo int32) cublasStatus
	// statusName is nil before cuBLAS 11.4.2.
	statusName func(s cublasStatus) string
}

// cublasMajors returns the cuBLAS major versions worth trying with a driver that reports
// driverVersion (cuDriverGetVersion: 1000*major + 10*minor, 12040 for CUDA 12.4), newest
// first. A library of a newer major than the driver needs a newer driver and fails in
// cublasCreate, so those are left out; within a major, CUDA's minor version compatibility lets
// cuBLAS 12.8 run on a 12.4 driver.
func cublasMajors(driverVersion int) []int {
	var majors []int
	for _, m := range []int{13, 12, 11} {
		if m <= driverVersion/1000 {
			majors = append(majors, m)
		}
	}
	return majors
}

// loadCublas opens the newest cuBLAS that the driver supports, with its libcublasLt opened
// first (RTLD_GLOBAL), since libcublas needs it and pip's wheels keep the two in one folder
// that the system loader does not search.
func loadCublas(open func(names ...string) (*dl.Lib, error), driverVersion int) (*cublas, error) {
	majors := cublasMajors(driverVersion)
	if len(majors) == 0 {
		return nil, fmt.Errorf("CUDA %d.%d driver is older than any cuBLAS this build uses (11, 12, 13)", driverVersion/1000, driverVersion%1000/10)
	}
	var errs []error
	for _, m := range majors {
		if _, err := open(fmt.Sprintf("libcublasLt.so.%d", m)); err != nil {
			errs = append(errs, err)
			continue
		}
		lib, err := open(fmt.Sprintf("libcublas.so.%d", m))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c := &cublas{lib: lib, major: m}
		for _, b := range []struct {
			fn   any
			syms []string
		}{
			{&c.create, []string{"cublasCreate_v2"}},
			{&c.destroy, []string{"cublasDestroy_v2"}},
			{&c.setStream, []string{"cublasSetStream_v2"}},
			{&c.getProperty, []string{"cublasGetProperty"}},
			{&c.sgemm, []string{"cublasSgemm_v2"}},
			{&c.gemmEx, []string{"cublasGemmEx"}},
		} {
			if _, err := lib.Bind(b.fn, b.syms...); err != nil {
				return nil, err
			}
		}
		if lib.Has("cublasGetStatusName") {
			if _, err := lib.Bind(&c.statusName, "cublasGetStatusName"); err != nil {
				return nil, err
			}
		}
		return c, nil
	}
	return nil, fmt.Errorf("no cuBLAS for a CUDA %d.%d driver: %v", driverVersion/1000, driverVersion%1000/10, errs)
}

// cublasError is a failed cuBLAS call. CUBLAS_STATUS_ALLOC_FAILED matches ErrOutOfMemory.
type cublasError struct {
	call   string
	status cublasStatus
	name   string
}

func (e *cublasError) Error() string {
	return fmt.Sprintf("cuda: %s: %s", e.call, e.name)
}

func (e *cublasError) Is(target error) bool {
	return e.status == cublasStatusAllocFailed && isOutOfMemory(target)
}

// check turns a status into nil or a *cublasError naming call.
func (c *cublas) check(call string, s cublasStatus) error {
	if s == 0 {
		return nil
	}
	name := cublasStatusNames[s]
	if c != nil && c.statusName != nil {
		name = c.statusName(s)
	}
	if name == "" {
		name = fmt.Sprintf("cublasStatus %d", s)
	}
	return &cublasError{call: call, status: s, name: name}
}

// gemm is one column-major cuBLAS GEMM, C(m,n) = alpha·op(A)·op(B) + beta·C, with A, B and C
// device pointers and leading dimensions lda, ldb, ldc (elements).
type gemm struct {
	transA, transB int32
	m, n, k        int32
	a              uint64
	lda            int32
	b              uint64
	ldb            int32
	c              uint64
	ldc            int32
	beta           float32 // alpha is always 1
}

// Row-major to column-major. A row-major (r, c) matrix is, to cuBLAS, the column-major (c, r)
// matrix: its transpose, with leading dimension c. So a row-major product Y = X·W^T becomes
// the column-major Y^T = W·X^T, and each row-major GEMM below names its operands in the
// swapped order. These are the calls of llm.c's train_gpt2.cu (matmul_forward_cublas,
// matmul_backward). Leading dimensions are at least 1, which cuBLAS requires even when a
// dimension is 0.

// forwardGemm is out(N,OC) = inp(N,C)·weight(OC,C)^T: column-major out^T(OC,N) =
// op_T(weight^T(C,OC))·inp^T(C,N).
func forwardGemm(out, inp, weight uint64, N, C, OC int) gemm {
	return gemm{transA: cublasOpT, transB: cublasOpN, m: int32(OC), n: int32(N), k: int32(C),
		a: weight, lda: ld(C), b: inp, ldb: ld(C), c: out, ldc: ld(OC), beta: 0}
}

// backwardInputGemm is dinp(N,C) += dout(N,OC)·weight(OC,C): column-major dinp^T(C,N) +=
// weight^T(C,OC)·dout^T(OC,N).
func backwardInputGemm(dinp, dout, weight uint64, N, C, OC int) gemm {
	return gemm{transA: cublasOpN, transB: cublasOpN, m: int32(C), n: int32(N), k: int32(OC),
		a: weight, lda: ld(C), b: dout, ldb: ld(OC), c: dinp, ldc: ld(C), beta: 1}
}

// backwardWeightGemm is dweight(OC,C) += dout(N,OC)^T·inp(N,C): column-major dweight^T(C,OC)
// += inp^T(C,N)·op_T(dout^T(OC,N)).
func backwardWeightGemm(dweight, dout, inp uint64, N, C, OC int) gemm {
	return gemm{transA: cublasOpN, transB: cublasOpT, m: int32(C), n: int32(OC), k: int32(N),
		a: inp, lda: ld(C), b: dout, ldb: ld(OC), c: dweight, ldc: ld(C), beta: 1}
}

func ld(n int) int32 { return int32(max(n, 1)) }

// run calls cublasGemmEx with fp32 matrices and the given compute type (cublasCompute32F or
// cublasCompute32FFastTF32) on handle. An empty output (m or n 0) is nothing to do; k 0 leaves
// beta·C, which cuBLAS handles.
func (c *cublas) run(handle uintptr, g gemm, compute int32) error {
	if g.m == 0 || g.n == 0 {
		return nil
	}
	alpha, beta := float32(1), g.beta
	return c.check("cublasGemmEx", c.gemmEx(handle, g.transA, g.transB, g.m, g.n, g.k,
		unsafe.Pointer(&alpha), g.a, cudaR32F, g.lda, g.b, cudaR32F, g.ldb,
		unsafe.Pointer(&beta), g.c, cudaR32F, g.ldc, compute, cublasGemmDefault))
}
