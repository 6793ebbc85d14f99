package cuda

import (
	"fmt"
	"unsafe"

	"github.com/modeld-dev/modeld/backend/cuda/internal/dl"
)

// cuResult is the driver API's CUresult (a C enum, so int32). 0 is CUDA_SUCCESS.
type cuResult int32

// CUresult values this package tells apart (cuda.h).
const (
	cudaSuccess          cuResult = 0
	cudaErrorOutOfMemory cuResult = 2
	cudaErrorNoDevice    cuResult = 100
	cudaErrorNotFound    cuResult = 500
)

// Enum values passed to the driver (cuda.h).
const (
	attrComputeCapabilityMajor = 75 // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
	attrComputeCapabilityMinor = 76 // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR
	attrMultiprocessorCount    = 16 // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
	funcAttrMaxDynamicShared   = 8  // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
	streamNonBlocking          = 1  // CU_STREAM_NON_BLOCKING
	eventDefault               = 0  // CU_EVENT_DEFAULT
	// defaultSharedLimit is the dynamic shared memory a kernel may use without opting in with
	// cuFuncSetAttribute (48 KiB on every architecture since Kepler).
	defaultSharedLimit = 48 << 10
)

// driver holds the entry points of libcuda.so.1 (the CUDA driver API, cuda.h). Handles
// (CUcontext, CUstream, CUmodule, CUfunction, CUevent) are opaque pointers, so uintptr;
// CUdevice is int; CUdeviceptr is unsigned long long; size_t is uintptr. Every function is
// called on the device worker's thread only, where the context is current.
type driver struct {
	lib *dl.Lib

	init               func(flags uint32) cuResult
	driverGetVersion   func(version *int32) cuResult
	deviceGetCount     func(count *int32) cuResult
	deviceGet          func(dev *int32, ordinal int32) cuResult
	deviceGetName      func(name *byte, n int32, dev int32) cuResult
	deviceGetAttribute func(v *int32, attr int32, dev int32) cuResult
	primaryCtxRetain   func(ctx *uintptr, dev int32) cuResult
	primaryCtxRelease  func(dev int32) cuResult
	ctxSetCurrent      func(ctx uintptr) cuResult
	streamCreate       func(stream *uintptr, flags uint32) cuResult
	streamSynchronize  func(stream uintptr) cuResult
	streamDestroy      func(stream uintptr) cuResult
	memAlloc           func(dptr *uint64, bytes uintptr) cuResult
	memFree            func(dptr uint64) cuResult
	memGetInfo         func(free, total *uintptr) cuResult
	memcpyHtoDAsync    func(dst uint64, src unsafe.Pointer, bytes uintptr, stream uintptr) cuResult
	memcpyDtoHAsync    func(dst unsafe.Pointer, src uint64, bytes uintptr, stream uintptr) cuResult
	memcpyDtoDAsync    func(dst, src uint64, bytes uintptr, stream uintptr) cuResult
	memsetD32Async     func(dst uint64, value uint32, n uintptr, stream uintptr) cuResult
	moduleLoadData     func(module *uintptr, image unsafe.Pointer) cuResult
	moduleUnload       func(module uintptr) cuResult
	moduleGetFunction  func(fn *uintptr, module uintptr, name *byte) cuResult
	funcSetAttribute   func(fn uintptr, attr int32, value int32) cuResult
	launchKernel       func(fn uintptr, gridX, gridY, gridZ, blockX, blockY, blockZ, sharedBytes uint32, stream uintptr, params, extra unsafe.Pointer) cuResult
	eventCreate        func(event *uintptr, flags uint32) cuResult
	eventRecord        func(event, stream uintptr) cuResult
	eventSynchronize   func(event uintptr) cuResult
	eventElapsedTime   func(ms *float32, start, end uintptr) cuResult
	eventDestroy       func(event uintptr) cuResult
	getErrorName       func(r cuResult, s **byte) cuResult
	getErrorString     func(r cuResult, s **byte) cuResult
}

// driverLib is the soname of the driver API library, installed with the NVIDIA driver itself
// (not the toolkit), so it is the test of "is there a driver".
const driverLib = "libcuda.so.1"

// loadDriver opens the driver library with open (dl.Open outside tests) and binds every entry
// point, versioned names first: cuda.h maps cuMemAlloc to cuMemAlloc_v2 and so on, and a
// binary must call the name the header would have chosen. The error wraps dl.ErrNotFound when
// the library is missing.
func loadDriver(open func(names ...string) (*dl.Lib, error)) (*driver, error) {
	lib, err := open(driverLib)
	if err != nil {
		return nil, err
	}
	d := &driver{lib: lib}
	for _, b := range []struct {
		fn   any
		syms []string
	}{
		{&d.init, []string{"cuInit"}},
		{&d.driverGetVersion, []string{"cuDriverGetVersion"}},
		{&d.deviceGetCount, []string{"cuDeviceGetCount"}},
		{&d.deviceGet, []string{"cuDeviceGet"}},
		{&d.deviceGetName, []string{"cuDeviceGetName"}},
		{&d.deviceGetAttribute, []string{"cuDeviceGetAttribute"}},
		{&d.primaryCtxRetain, []string{"cuDevicePrimaryCtxRetain"}},
		{&d.primaryCtxRelease, []string{"cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease"}},
		{&d.ctxSetCurrent, []string{"cuCtxSetCurrent"}},
		{&d.streamCreate, []string{"cuStreamCreate"}},
		{&d.streamSynchronize, []string{"cuStreamSynchronize"}},
		{&d.streamDestroy, []string{"cuStreamDestroy_v2", "cuStreamDestroy"}},
		{&d.memAlloc, []string{"cuMemAlloc_v2"}},
		{&d.memFree, []string{"cuMemFree_v2"}},
		{&d.memGetInfo, []string{"cuMemGetInfo_v2"}},
		{&d.memcpyHtoDAsync, []string{"cuMemcpyHtoDAsync_v2"}},
		{&d.memcpyDtoHAsync, []string{"cuMemcpyDtoHAsync_v2"}},
		{&d.memcpyDtoDAsync, []string{"cuMemcpyDtoDAsync_v2"}},
		{&d.memsetD32Async, []string{"cuMemsetD32Async"}},
		{&d.moduleLoadData, []string{"cuModuleLoadData"}},
		{&d.moduleUnload, []string{"cuModuleUnload"}},
		{&d.moduleGetFunction, []string{"cuModuleGetFunction"}},
		{&d.funcSetAttribute, []string{"cuFuncSetAttribute"}},
		{&d.launchKernel, []string{"cuLaunchKernel"}},
		{&d.eventCreate, []string{"cuEventCreate"}},
		{&d.eventRecord, []string{"cuEventRecord"}},
		{&d.eventSynchronize, []string{"cuEventSynchronize"}},
		// CUDA 12.8 added cuEventElapsedTime_v2 (same signature) and deprecated the first.
		{&d.eventElapsedTime, []string{"cuEventElapsedTime_v2", "cuEventElapsedTime"}},
		{&d.eventDestroy, []string{"cuEventDestroy_v2", "cuEventDestroy"}},
		{&d.getErrorName, []string{"cuGetErrorName"}},
		{&d.getErrorString, []string{"cuGetErrorString"}},
	} {
		if _, err := lib.Bind(b.fn, b.syms...); err != nil {
			return nil, fmt.Errorf("driver too old: %w", err)
		}
	}
	return d, nil
}

// cString reads the NUL-terminated C string at p (static strings of the driver and cuBLAS).
func cString(p *byte) string {
	if p == nil {
		return ""
	}
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}

// cuError is a failed driver call. It matches ErrOutOfMemory (errors.Is) for
// CUDA_ERROR_OUT_OF_MEMORY.
type cuError struct {
	call string
	code cuResult
	name string // "CUDA_ERROR_OUT_OF_MEMORY", from cuGetErrorName
	desc string // "out of memory", from cuGetErrorString
}

func (e *cuError) Error() string {
	name := e.name
	if name == "" {
		name = fmt.Sprintf("CUresult %d", e.code)
	}
	if e.desc != "" {
		return fmt.Sprintf("cuda: %s: %s (%s)", e.call, name, e.desc)
	}
	return fmt.Sprintf("cuda: %s: %s", e.call, name)
}

func (e *cuError) Is(target error) bool {
	return e.code == cudaErrorOutOfMemory && isOutOfMemory(target)
}

// check turns a CUresult into nil or a *cuError naming call, with the driver's own name and
// description of the code.
func (d *driver) check(call string, r cuResult) error {
	if r == cudaSuccess {
		return nil
	}
	e := &cuError{call: call, code: r}
	if d != nil && d.getErrorName != nil {
		var s *byte
		if d.getErrorName(r, &s) == cudaSuccess {
			e.name = cString(s)
		}
		s = nil
		if d.getErrorString(r, &s) == cudaSuccess {
			e.desc = cString(s)
		}
	}
	return e
}
