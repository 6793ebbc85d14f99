package cuda

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/modeld-dev/modeld/backend/cuda/internal/nvrtc"
)

// cubinCache compiles kernel sources to CUBINs for the device's exact architecture with NVRTC
// and keeps them on disk, so that only the first start on a machine pays the compile. A CUBIN
// needs no JIT at load and is built by a compiler that knows the device, where the committed
// PTX targets an old virtual architecture and is compiled by the driver at every start.
type cubinCache struct {
	// dir is where CUBINs are kept; "" keeps none.
	dir string
	// opts are the NVRTC options besides the architecture (nvrtc.KernelOptions, those the
	// committed PTX was made with).
	opts []string
	// available, version and compile are nvrtc's Available, Version and CompileCUBIN.
	available func() error
	version   func() (major, minor int, err error)
	compile   func(src []byte, name, arch string, opts ...string) ([]byte, error)
}

// newCubinCache returns the cache under os.UserCacheDir()/modeld/cuda ($XDG_CACHE_HOME or
// ~/.cache), backed by internal/nvrtc; without a cache folder it compiles at every start.
func newCubinCache() *cubinCache {
	c := &cubinCache{opts: nvrtc.KernelOptions, available: nvrtc.Available, version: nvrtc.Version, compile: nvrtc.CompileCUBIN}
	if dir, err := os.UserCacheDir(); err == nil {
		c.dir = filepath.Join(dir, "modeld", "cuda")
	}
	return c
}

// cubin returns the CUBIN of m for arch ("sm_90") from the cache, or compiles and caches it.
// It fails when NVRTC is missing, when NVRTC is of a newer major version than the driver
// (driverVersion as cuDriverGetVersion reports it: a CUBIN from a newer toolkit than the driver
// may not load), or when the compile fails (an NVRTC too old for arch). cached reports a hit.
func (c *cubinCache) cubin(m kernelModule, arch string, driverVersion int) (image []byte, cached bool, err error) {
	if err := c.available(); err != nil {
		return nil, false, err
	}
	major, minor, err := c.version()
	if err != nil {
		return nil, false, err
	}
	if major > driverVersion/1000 {
		return nil, false, fmt.Errorf("NVRTC %d.%d is newer than the CUDA %d.%d driver", major, minor, driverVersion/1000, driverVersion%1000/10)
	}
	path := c.path(m, arch, major, minor)
	if path != "" {
		if image, err := os.ReadFile(path); err == nil && len(image) > 0 {
			return image, true, nil
		}
	}
	image, err = c.compile(m.CU, m.Name+".cu", arch, c.opts...)
	if err != nil {
		return nil, false, err
	}
	if path != "" {
		// A cache that cannot be written only costs the next start a compile.
		_ = writeAtomic(path, image)
	}
	return image, false, nil
}

// forget removes m's cached CUBIN for arch, after the driver refused to load it.
func (c *cubinCache) forget(m kernelModule, arch string) {
	major, minor, err := c.version()
	if path := c.path(m, arch, major, minor); err == nil && path != "" {
		os.Remove(path)
	}
}

// path is where the CUBIN of m for arch by NVRTC major.minor is kept, or "" without a cache
// folder. The name is the SHA-256 of everything the CUBIN depends on: the source, the
// architecture, the options and the compiler's version.
func (c *cubinCache) path(m kernelModule, arch string, major, minor int) string {
	if c.dir == "" {
		return ""
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%q\x00nvrtc %d.%d\x00", m.CU, arch, c.opts, major, minor)
	return filepath.Join(c.dir, hex.EncodeToString(h.Sum(nil))+".cubin")
}

// writeAtomic writes data to path through a temporary file in the same folder and a rename,
// so that a concurrent reader (another modeld starting) sees the whole file or none.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".cubin-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// cubinResult is what cubin returned for one module.
type cubinResult struct {
	image  []byte
	cached bool
	err    error
}

// all returns the CUBINs of mods, compiled concurrently: NVRTC compiles separate programs on
// separate threads, and the first start on a machine compiles every module.
func (c *cubinCache) all(mods []kernelModule, arch string, driverVersion int) []cubinResult {
	res := make([]cubinResult, len(mods))
	var wg sync.WaitGroup
	for i, m := range mods {
		wg.Go(func() { res[i].image, res[i].cached, res[i].err = c.cubin(m, arch, driverVersion) })
	}
	wg.Wait()
	return res
}

// loadModules loads every kernel module on the worker: the CUBIN for the device's architecture
// when NVRTC can make one, otherwise the committed PTX, which the driver compiles.
func (d *device) loadModules(l loader) error {
	arch := fmt.Sprintf("sm_%d%d", d.cc[0], d.cc[1])
	mods := l.modules()
	cubins := make([]cubinResult, len(mods))
	if l.cubins != nil {
		cubins = l.cubins.all(mods, arch, d.driverVersion)
	}
	var how []string
	for i, m := range mods {
		cubinErr := cubins[i].err
		if cubins[i].image != nil {
			h, err := d.loadImage(cubins[i].image)
			if err == nil {
				from := "CUBIN " + arch + " (compiled)"
				if cubins[i].cached {
					from = "CUBIN " + arch + " (cached)"
				}
				d.modules = append(d.modules, module{name: m.Name, handle: h, from: from})
				how = append(how, m.Name+": "+from)
				continue
			}
			if cubins[i].cached {
				l.cubins.forget(m, arch)
			}
			cubinErr = err
		}
		// cuModuleLoadData reads PTX as a C string.
		h, err := d.loadImage(append(slices.Clip(m.PTX), 0))
		if err != nil {
			if cubinErr != nil {
				return fmt.Errorf("%s: PTX: %w (and no CUBIN: %v)", m.Name, err, cubinErr)
			}
			return fmt.Errorf("%s: PTX: %w", m.Name, err)
		}
		d.modules = append(d.modules, module{name: m.Name, handle: h, from: "PTX"})
		why := ""
		if cubinErr != nil {
			why = " (no CUBIN: " + firstLine(cubinErr.Error()) + ")"
		}
		how = append(how, m.Name+": PTX"+why)
	}
	d.kernels = strings.Join(how, "; ")
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// loadImage loads a CUBIN or NUL-terminated PTX image.
func (d *device) loadImage(image []byte) (uintptr, error) {
	if len(image) == 0 {
		return 0, errors.New("empty image")
	}
	var h uintptr
	err := d.drv.check("cuModuleLoadData", d.drv.moduleLoadData(&h, unsafe.Pointer(&image[0])))
	runtime.KeepAlive(image)
	return h, err
}

// function returns the kernel called name (its extern "C" name), looking it up in the modules
// on first use.
func (d *device) function(name string) (*function, error) {
	if f, ok := d.funcs[name]; ok {
		return f, nil
	}
	cname := append([]byte(name), 0)
	for _, m := range d.modules {
		var h uintptr
		r := d.drv.moduleGetFunction(&h, m.handle, &cname[0])
		if r == cudaErrorNotFound {
			continue
		}
		if err := d.drv.check("cuModuleGetFunction "+name, r); err != nil {
			return nil, err
		}
		f := &function{handle: h, shared: defaultSharedLimit}
		d.funcs[name] = f
		return f, nil
	}
	return nil, fmt.Errorf("cuda: unknown kernel %q (not in any of the %d modules)", name, len(d.modules))
}

// launch runs kernel on the worker with its parameters already packed, one 8-byte slot each
// (see packArgs).
func (d *device) launch(kernel string, grid, block dim3, sharedBytes int, slots []uint64) error {
	f, err := d.function(kernel)
	if err != nil {
		return err
	}
	if sharedBytes > f.shared {
		// Over 48 KiB of dynamic shared memory a kernel must opt in (Volta and later).
		if err := d.drv.check("cuFuncSetAttribute "+kernel, d.drv.funcSetAttribute(f.handle, funcAttrMaxDynamicShared, int32(sharedBytes))); err != nil {
			return err
		}
		f.shared = sharedBytes
	}
	// kernelParams is an array of pointers to the values. It is Go memory that C reads, holding
	// pointers to Go memory, so the slots are pinned for the call (the cgo rules, which purego
	// follows); cuLaunchKernel copies the values before it returns.
	var params []unsafe.Pointer
	var pin runtime.Pinner
	defer pin.Unpin()
	if len(slots) > 0 {
		pin.Pin(&slots[0])
		params = make([]unsafe.Pointer, len(slots))
		for i := range slots {
			params[i] = unsafe.Pointer(&slots[i])
		}
	}
	var p unsafe.Pointer
	if len(params) > 0 {
		p = unsafe.Pointer(&params[0])
	}
	err = d.drv.check("cuLaunchKernel "+kernel, d.drv.launchKernel(f.handle, grid.X, grid.Y, grid.Z,
		block.X, block.Y, block.Z, uint32(sharedBytes), d.stream, p, nil))
	runtime.KeepAlive(params)
	return err
}
