package cuda

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/backend/cuda/internal/dl"
)

// unavailableError says why the CUDA backend cannot run on this machine. It wraps
// backend.ErrUnavailable and the underlying error, if any.
type unavailableError struct {
	reason string
	err    error
}

func (e *unavailableError) Error() string {
	if e.err == nil {
		return e.reason
	}
	return e.reason + ": " + e.err.Error()
}

func (e *unavailableError) Unwrap() []error {
	if e.err == nil {
		return []error{backend.ErrUnavailable}
	}
	return []error{backend.ErrUnavailable, e.err}
}

func unavailable(reason string, err error) error { return &unavailableError{reason: reason, err: err} }

// loader is how a device finds its libraries and kernels: the seam that lets tests open a
// device on a machine with a driver as if it had none.
type loader struct {
	// open opens the first library of names that exists (dl.Open).
	open func(names ...string) (*dl.Lib, error)
	// modules returns the kernel sources and PTX (kernelModules).
	modules func() []kernelModule
	// cubins finds or compiles CUBINs (NVRTC and the disk cache); nil never compiles.
	cubins *cubinCache
}

// defaultLoader is the loader of every device outside tests.
func defaultLoader() loader {
	return loader{open: dl.Open, modules: kernelModules, cubins: newCubinCache()}
}

// device is one GPU, shared by every Backend opened on it: the driver and cuBLAS, the primary
// context, one stream, one cuBLAS handle, the kernels and the caching allocator. One worker
// goroutine, locked to its OS thread, makes every CUDA call, because a context is current per
// thread and cuBLAS handles and streams are not meant to be shared across threads. Everything
// below ops is owned by the worker.
type device struct {
	ordinal int
	ops     chan []func()
	// sendMu orders the batches sent on ops with their numbers: sent is the number of the last
	// batch sent (the first is 1). running is the number of the batch the worker runs, which
	// only the worker touches; batches before it have been issued to the stream.
	sendMu  sync.Mutex
	sent    uint64
	running uint64

	drv           *driver
	blas          *cublas
	driverVersion int // cuDriverGetVersion: 12040 for CUDA 12.4
	dev           int32
	name          string
	cc            [2]int // compute capability (major, minor)
	sms           int
	ctx           uintptr // the primary context, retained
	stream        uintptr // CU_STREAM_NON_BLOCKING: never waits on the legacy default stream
	handle        uintptr // cuBLAS, bound to stream

	mem     *cachingAllocator
	modules []module
	funcs   map[string]*function
	kernels string // how the kernels were loaded, for Device
}

// module is a loaded CUmodule and what was loaded ("CUBIN sm_90", "PTX").
type module struct {
	name   string
	handle uintptr
	from   string
}

// function is a kernel looked up in a module, with the dynamic shared memory limit set on it.
type function struct {
	handle uintptr
	shared int
}

// startWorker starts the goroutine that runs d's batches of calls, in order, on one locked OS
// thread, counting them in d.running. The goroutine ends when ops is closed; it never unlocks
// the thread, so the thread, which held a CUDA context, ends with it.
func (d *device) startWorker() {
	d.ops = make(chan []func(), 256)
	go func(ops chan []func()) {
		runtime.LockOSThread()
		for batch := range ops {
			d.running++
			for _, op := range batch {
				op()
			}
		}
	}(d.ops)
}

// send hands a batch of calls to the worker and returns its number. Never call it on the
// worker: the channel may be full.
func (d *device) send(batch []func()) uint64 {
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	d.ops <- batch
	d.sent++
	return d.sent
}

// do runs fn on the worker after everything queued before it and returns its error.
func (d *device) do(fn func() error) error {
	done := make(chan error, 1)
	d.send([]func(){func() { done <- fn() }})
	return <-done
}

// openDevice opens GPU ordinal: it loads the driver, creates the context, stream and cuBLAS
// handle and loads the kernels. Any failure releases what was made and returns an error
// wrapping backend.ErrUnavailable.
func openDevice(l loader, ordinal int) (*device, error) {
	d := &device{ordinal: ordinal, funcs: map[string]*function{}}
	d.startWorker()
	err := d.do(func() error { return d.init(l) })
	if err != nil {
		d.shutdown()
		return nil, err
	}
	return d, nil
}

// shutdown releases the device and ends its worker, after init failed or the smoke test did.
// An opened device otherwise lives as long as the process, as the CUDA runtime's state does.
func (d *device) shutdown() {
	d.do(func() error { d.teardown(); return nil })
	close(d.ops)
}

// init runs on the worker.
func (d *device) init(l loader) error {
	drv, err := loadDriver(l.open)
	if errors.Is(err, dl.ErrNotFound) {
		return unavailable("no CUDA driver ("+driverLib+" not found)", nil)
	}
	if err != nil {
		return unavailable("CUDA driver", err)
	}
	if r := drv.init(0); r != cudaSuccess {
		if r == cudaErrorNoDevice {
			return unavailable("no CUDA device", drv.check("cuInit", r))
		}
		return unavailable("CUDA driver does not start", drv.check("cuInit", r))
	}
	var v, count int32
	if err := drv.check("cuDriverGetVersion", drv.driverGetVersion(&v)); err != nil {
		return unavailable("CUDA driver", err)
	}
	if err := drv.check("cuDeviceGetCount", drv.deviceGetCount(&count)); err != nil {
		return unavailable("CUDA driver", err)
	}
	if count == 0 {
		return unavailable("no CUDA device", nil)
	}
	if d.ordinal < 0 || d.ordinal >= int(count) {
		return unavailable(fmt.Sprintf("no CUDA device %d (the driver sees %d)", d.ordinal, count), nil)
	}
	d.drv, d.driverVersion = drv, int(v)
	if err := d.initContext(); err != nil {
		return unavailable(fmt.Sprintf("CUDA device %d", d.ordinal), err)
	}
	d.mem = newCachingAllocator(d, d.syncStream)
	if err := d.initCublas(l); err != nil {
		return unavailable("no usable cuBLAS", err)
	}
	if err := d.loadModules(l); err != nil {
		return unavailable("kernels do not load", err)
	}
	return nil
}

// initContext makes the device's primary context current on the worker's thread (the
// context the CUDA runtime inside cuBLAS uses too; cuCtxCreate would make a second one) and
// creates the stream.
func (d *device) initContext() error {
	drv := d.drv
	if err := drv.check("cuDeviceGet", drv.deviceGet(&d.dev, int32(d.ordinal))); err != nil {
		return err
	}
	var name [256]byte
	if err := drv.check("cuDeviceGetName", drv.deviceGetName(&name[0], int32(len(name)), d.dev)); err != nil {
		return err
	}
	d.name = cString(&name[0])
	for _, a := range []struct {
		attr int32
		v    *int
	}{{attrComputeCapabilityMajor, &d.cc[0]}, {attrComputeCapabilityMinor, &d.cc[1]}, {attrMultiprocessorCount, &d.sms}} {
		var v int32
		if err := drv.check("cuDeviceGetAttribute", drv.deviceGetAttribute(&v, a.attr, d.dev)); err != nil {
			return err
		}
		*a.v = int(v)
	}
	if err := drv.check("cuDevicePrimaryCtxRetain", drv.primaryCtxRetain(&d.ctx, d.dev)); err != nil {
		return err
	}
	if err := drv.check("cuCtxSetCurrent", drv.ctxSetCurrent(d.ctx)); err != nil {
		return err
	}
	return drv.check("cuStreamCreate", drv.streamCreate(&d.stream, streamNonBlocking))
}

// initCublas loads cuBLAS and creates the handle, bound to the device's stream.
func (d *device) initCublas(l loader) error {
	blas, err := loadCublas(l.open, d.driverVersion)
	if err != nil {
		return err
	}
	if err := blas.check("cublasCreate_v2", blas.create(&d.handle)); err != nil {
		return err
	}
	d.blas = blas
	return blas.check("cublasSetStream_v2", blas.setStream(d.handle, d.stream))
}

// teardown releases what init made, in reverse order, on the worker.
func (d *device) teardown() {
	if d.drv == nil {
		return
	}
	if d.handle != 0 && d.blas != nil {
		d.blas.destroy(d.handle)
	}
	for _, m := range d.modules {
		d.drv.moduleUnload(m.handle)
	}
	if d.mem != nil {
		d.mem.emptyCache()
	}
	if d.stream != 0 {
		d.drv.streamDestroy(d.stream)
	}
	if d.ctx != 0 {
		d.drv.primaryCtxRelease(d.dev)
	}
}

// syncStream waits for the work queued on the device. An error here is usually a kernel's
// fault (CUDA_ERROR_ILLEGAL_ADDRESS...), which CUDA makes sticky: every later call on the
// context fails with it too.
func (d *device) syncStream() error {
	return d.drv.check("cuStreamSynchronize", d.drv.streamSynchronize(d.stream))
}

// malloc and free make the device the caching allocator's rawMemory.
func (d *device) malloc(bytes uint64) (uint64, error) {
	var p uint64
	err := d.drv.check("cuMemAlloc_v2", d.drv.memAlloc(&p, uintptr(bytes)))
	return p, err
}

func (d *device) free(ptr uint64) error {
	return d.drv.check("cuMemFree_v2", d.drv.memFree(ptr))
}

// describe says what the device is and how it was set up, on the worker.
func (d *device) describe() string {
	var free, total uintptr
	mem := ""
	if d.drv.memGetInfo(&free, &total) == cudaSuccess {
		mem = fmt.Sprintf(", %.1f of %.1f GiB free", float64(free)/(1<<30), float64(total)/(1<<30))
	}
	var major, minor int32
	d.blas.getProperty(cublasMajorVersion, &major)
	d.blas.getProperty(cublasMinorVersion, &minor)
	return fmt.Sprintf("%s (device %d, sm_%d%d, %d SMs%s), driver CUDA %d.%d, cuBLAS %d.%d (%s), kernels %s",
		d.name, d.ordinal, d.cc[0], d.cc[1], d.sms, mem, d.driverVersion/1000, d.driverVersion%1000/10,
		major, minor, d.blas.lib.Path, d.kernels)
}

// devices holds the opened devices by ordinal, and the error of one that failed to open, so
// that every Open after the first (each model load opens a backend) is cheap, and "auto" on a
// machine without CUDA pays the failed dlopen once.
var devices = struct {
	sync.Mutex
	m map[int]deviceResult
}{m: map[int]deviceResult{}}

type deviceResult struct {
	d   *device
	err error
}

// sharedDevice returns GPU ordinal, opening it and running the smoke test on first use.
func sharedDevice(ordinal int) (*device, error) {
	devices.Lock()
	defer devices.Unlock()
	if r, ok := devices.m[ordinal]; ok {
		return r.d, r.err
	}
	d, err := openDevice(defaultLoader(), ordinal)
	if err == nil {
		if err = smokeTest(d); err != nil {
			d.shutdown()
			d, err = nil, unavailable("smoke test", err)
		}
	}
	devices.m[ordinal] = deviceResult{d, err}
	return d, err
}
