// Package nvrtc compiles CUDA C++ to PTX or CUBIN at run time with NVIDIA's runtime compiler
// (libnvrtc), loaded with purego through [dl.Open], so that no CUDA toolkit is needed to build.
//
// It serves two callers: internal/ptxgen, which turns backend/cuda/kernels/*.cu into the PTX
// committed beside them, and the CUDA backend, which may compile a CUBIN for the device's own
// architecture when NVRTC is present. The library is searched as libnvrtc.so.13, .12, .11.2
// (the soname of every 11.x release from 11.2 on) and libnvrtc.so.
package nvrtc

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/modeld-dev/modeld/backend/cuda/internal/dl"
)

// KernelOptions are the options every kernel of backend/cuda is compiled with, besides the
// architecture: C++17, functions without an execution space are __device__, and float32 math
// as written (no --use_fast_math: the kernels match the CPU reference's expf, tanhf, sqrtf and
// division to the ulp; fused multiply-adds stay on, NVRTC's default).
var KernelOptions = []string{"--std=c++17", "-default-device"}

// libNames are the sonames tried, newest first.
var libNames = []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"}

// program is an nvrtcProgram handle; result is nvrtcResult (0 is NVRTC_SUCCESS).
type (
	program uintptr
	result  int32
)

// api holds the bound entry points of libnvrtc (nvrtc.h).
type api struct {
	lib            *dl.Lib
	version        func(major, minor *int32) result
	errorString    func(r result) string
	createProgram  func(prog *program, src, name *byte, numHeaders int32, headers, includeNames unsafe.Pointer) result
	destroyProgram func(prog *program) result
	compileProgram func(prog program, numOptions int32, options unsafe.Pointer) result
	getPTXSize     func(prog program, size *uintptr) result
	getPTX         func(prog program, ptx *byte) result
	getLogSize     func(prog program, size *uintptr) result
	getLog         func(prog program, log *byte) result
	// getCUBINSize and getCUBIN are nil before NVRTC 11.1.
	getCUBINSize func(prog program, size *uintptr) result
	getCUBIN     func(prog program, cubin *byte) result
}

var (
	loadOnce sync.Once
	loaded   *api
	loadErr  error
)

// load opens libnvrtc and binds its functions, once per process.
func load() (*api, error) {
	loadOnce.Do(func() {
		lib, err := dl.Open(libNames...)
		if err != nil {
			loadErr = fmt.Errorf("nvrtc: %w", err)
			return
		}
		a := &api{lib: lib}
		for _, b := range []struct {
			fn  any
			sym string
		}{
			{&a.version, "nvrtcVersion"},
			{&a.errorString, "nvrtcGetErrorString"},
			{&a.createProgram, "nvrtcCreateProgram"},
			{&a.destroyProgram, "nvrtcDestroyProgram"},
			{&a.compileProgram, "nvrtcCompileProgram"},
			{&a.getPTXSize, "nvrtcGetPTXSize"},
			{&a.getPTX, "nvrtcGetPTX"},
			{&a.getLogSize, "nvrtcGetProgramLogSize"},
			{&a.getLog, "nvrtcGetProgramLog"},
		} {
			if _, err := lib.Bind(b.fn, b.sym); err != nil {
				loadErr = fmt.Errorf("nvrtc: %w", err)
				return
			}
		}
		if lib.Has("nvrtcGetCUBIN") && lib.Has("nvrtcGetCUBINSize") {
			if _, err := lib.Bind(&a.getCUBINSize, "nvrtcGetCUBINSize"); err != nil {
				loadErr = fmt.Errorf("nvrtc: %w", err)
				return
			}
			if _, err := lib.Bind(&a.getCUBIN, "nvrtcGetCUBIN"); err != nil {
				loadErr = fmt.Errorf("nvrtc: %w", err)
				return
			}
		}
		loaded = a
	})
	return loaded, loadErr
}

// Available returns nil when libnvrtc loads and exports what this package calls, or the error
// (wrapping dl.ErrNotFound when no library was found).
func Available() error {
	_, err := load()
	return err
}

// Path returns the library that was opened, or "" when none was.
func Path() string {
	a, err := load()
	if err != nil {
		return ""
	}
	return a.lib.Path
}

// Version returns NVRTC's version (for example 11, 8).
func Version() (major, minor int, err error) {
	a, err := load()
	if err != nil {
		return 0, 0, err
	}
	var ma, mi int32
	if r := a.version(&ma, &mi); r != 0 {
		return 0, 0, a.err("nvrtcVersion", r)
	}
	return int(ma), int(mi), nil
}

// err describes a failed call.
func (a *api) err(call string, r result) error {
	return fmt.Errorf("nvrtc: %s: %s (%d)", call, a.errorString(r), r)
}

// CompilePTX compiles the CUDA C++ source src (name is used in messages and as the file name in
// diagnostics) with the given nvrtc options (for example "--gpu-architecture=compute_70") and
// returns the PTX text, without a trailing NUL. A compile error includes NVRTC's log.
func CompilePTX(src []byte, name string, opts ...string) ([]byte, error) {
	return compile(src, name, opts, false)
}

// CompileCUBIN compiles src for the real architecture arch (for example "sm_90") and returns
// the CUBIN. It fails when NVRTC predates nvrtcGetCUBIN (11.1). opts must not set the
// architecture.
func CompileCUBIN(src []byte, name, arch string, opts ...string) ([]byte, error) {
	if !strings.HasPrefix(arch, "sm_") {
		return nil, fmt.Errorf("nvrtc: CompileCUBIN of %s: arch %q is not a real architecture (sm_XY)", name, arch)
	}
	return compile(src, name, append([]string{"--gpu-architecture=" + arch}, opts...), true)
}

// cstr returns s as a NUL-terminated byte slice.
func cstr(s string) []byte { return append([]byte(s), 0) }

func compile(src []byte, name string, opts []string, cubin bool) ([]byte, error) {
	a, err := load()
	if err != nil {
		return nil, err
	}
	if cubin && (a.getCUBIN == nil || a.getCUBINSize == nil) {
		return nil, fmt.Errorf("nvrtc: %s has no nvrtcGetCUBIN (NVRTC 11.1 or later needed)", a.lib.Path)
	}
	csrc, cname := cstr(string(src)), cstr(name)
	var prog program
	if r := a.createProgram(&prog, &csrc[0], &cname[0], 0, nil, nil); r != 0 {
		return nil, fmt.Errorf("%s: %w", name, a.err("nvrtcCreateProgram", r))
	}
	defer a.destroyProgram(&prog)

	// The options as a C array of C strings: Go memory that C reads, holding pointers to Go
	// memory, so the strings are pinned for the call (the cgo rules, which purego follows), as
	// the backend's kernel launch pins its parameters.
	var pin runtime.Pinner
	copts := make([][]byte, len(opts))
	ptrs := make([]*byte, len(opts)+1)
	for i, o := range opts {
		copts[i] = cstr(o)
		ptrs[i] = &copts[i][0]
		pin.Pin(ptrs[i])
	}
	r := a.compileProgram(prog, int32(len(opts)), unsafe.Pointer(&ptrs[0]))
	pin.Unpin()
	if r != 0 {
		return nil, fmt.Errorf("%s: %w\n%s", name, a.err("nvrtcCompileProgram", r), a.log(prog))
	}
	getSize, get := a.getPTXSize, a.getPTX
	what := "PTX"
	if cubin {
		getSize, get, what = a.getCUBINSize, a.getCUBIN, "CUBIN"
	}
	var n uintptr
	if r := getSize(prog, &n); r != 0 {
		return nil, fmt.Errorf("%s: %w", name, a.err("nvrtcGet"+what+"Size", r))
	}
	if n == 0 {
		return nil, fmt.Errorf("nvrtc: %s: empty %s", name, what)
	}
	out := make([]byte, n)
	if r := get(prog, &out[0]); r != 0 {
		return nil, fmt.Errorf("%s: %w", name, a.err("nvrtcGet"+what, r))
	}
	if !cubin {
		// The PTX size counts its terminating NUL.
		out = []byte(strings.TrimRight(string(out), "\x00"))
	}
	return out, nil
}

// log returns the program's compile log, trimmed.
func (a *api) log(prog program) string {
	var n uintptr
	if a.getLogSize(prog, &n) != 0 || n <= 1 {
		return ""
	}
	buf := make([]byte, n)
	if a.getLog(prog, &buf[0]) != 0 {
		return ""
	}
	return strings.TrimSpace(strings.TrimRight(string(buf), "\x00"))
}
