package cuda

import (
	"errors"
	"fmt"
	"math"
	"sync"
)

// rawMemory is what the caching allocator gets memory from: cuMemAlloc_v2 and cuMemFree_v2 on
// the device, a fake in tests.
type rawMemory interface {
	malloc(bytes uint64) (uint64, error)
	free(ptr uint64) error
}

// block is one device allocation of size bytes (a bucket size) at ptr.
type block struct {
	ptr, size uint64
}

// cachedBlock is a block in a free list: ptr, and seq, the number of the last batch of calls
// that the releasing handle had handed to the worker when it gave the block back (see
// device.send). Calls that use the block are in batches up to seq, so the block may go back to
// the driver only once the worker has passed batch seq.
type cachedBlock struct {
	ptr, seq uint64
}

// Bucket sizes, as PyTorch's CUDACachingAllocator rounds (kMinBlockSize, kSmallSize,
// kRoundLarge): small requests to 512 bytes, so that any tensor is 512-byte aligned and
// requests of similar sizes share a bucket, and requests over 1 MiB to 2 MiB, the driver's own
// allocation granularity, which wastes nothing the driver would not waste anyway.
const (
	smallRound = 512
	smallLimit = 1 << 20
	largeRound = 2 << 20
)

// bucketSize is the size of the block that serves a request of bytes.
func bucketSize(bytes uint64) uint64 {
	if bytes <= smallLimit {
		return roundUp(max(bytes, 1), smallRound)
	}
	return roundUp(bytes, largeRound)
}

func roundUp(n, to uint64) uint64 { return (n + to - 1) / to * to }

// cachingAllocator keeps freed device blocks in free lists by bucket size and hands them out
// again, because cuMemAlloc and cuMemFree synchronise the device and cost tens of
// microseconds to milliseconds, while a model allocates the same sizes step after step (the
// idea of PyTorch's caching allocator, without its block splitting). All work on the device
// goes through one stream, so a block freed after the kernels that use it were enqueued may be
// handed out at once: whatever the new owner enqueues runs after them.
//
// Handles take cached blocks and give blocks back on their own goroutines (no round trip to
// the worker); only the worker asks the driver for memory (alloc) or gives it back
// (emptyCache). A handle hands its queued calls to the worker before it gives a block back, so
// whoever takes the block next queues its work after them. Those calls may still wait in the
// worker's queue behind the call that runs alloc (another handle's), so a cached block records
// the batch they are in and alloc gives back to the driver only blocks of batches it has passed.
type cachingAllocator struct {
	mu  sync.Mutex // guards free, cached, inUse
	raw rawMemory
	// drain waits for the work queued on the device before cached blocks go back to the
	// driver, since queued kernels may still use them.
	drain  func() error
	free   map[uint64][]cachedBlock // bucket size -> cached blocks
	cached uint64                   // bytes in free
	inUse  uint64                   // bytes handed out
}

func newCachingAllocator(raw rawMemory, drain func() error) *cachingAllocator {
	return &cachingAllocator{raw: raw, drain: drain, free: map[uint64][]cachedBlock{}}
}

// take returns a cached block for a request of bytes, if its bucket has one.
func (a *cachingAllocator) take(bytes uint64) (block, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.takeLocked(bucketSize(bytes))
}

func (a *cachingAllocator) takeLocked(size uint64) (block, bool) {
	list := a.free[size]
	if len(list) == 0 {
		return block{}, false
	}
	c := list[len(list)-1]
	a.free[size] = list[:len(list)-1]
	a.cached -= size
	a.inUse += size
	return block{ptr: c.ptr, size: size}, true
}

// alloc returns a block of at least bytes bytes, from the cache when one of its bucket is
// there, else from the driver (on the worker, running batch number running). When the driver is
// out of memory it gives the cached blocks of batches before running back to the driver and
// tries once more, as PyTorch does; the error then wraps ErrOutOfMemory.
func (a *cachingAllocator) alloc(bytes, running uint64) (block, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	size := bucketSize(bytes)
	if b, ok := a.takeLocked(size); ok {
		return b, nil
	}
	ptr, err := a.raw.malloc(size)
	if errors.Is(err, ErrOutOfMemory) && a.cached > 0 {
		if err := a.emptyCacheLocked(running); err != nil {
			return block{}, err
		}
		ptr, err = a.raw.malloc(size)
	}
	if err != nil {
		return block{}, fmt.Errorf("cuda: alloc of %d bytes (%d in use, %d cached): %w", size, a.inUse, a.cached, err)
	}
	a.inUse += size
	return block{ptr: ptr, size: size}, nil
}

// release puts b back in the cache; seq is the last batch the releasing handle handed to the
// worker (the calls that use b are in it or before it).
func (a *cachingAllocator) release(b block, seq uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.free[b.size] = append(a.free[b.size], cachedBlock{ptr: b.ptr, seq: seq})
	a.cached += b.size
	a.inUse -= b.size
}

// emptyCache gives every cached block back to the driver, after the queued work is done (on
// the worker, when no handle queues work any more: at teardown).
func (a *cachingAllocator) emptyCache() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.emptyCacheLocked(math.MaxUint64)
}

// emptyCacheLocked gives the cached blocks released in batches before running back to the
// driver, after the work on the stream is done. Later blocks stay cached: calls that use them
// are still queued behind the current one.
func (a *cachingAllocator) emptyCacheLocked(running uint64) error {
	if a.cached == 0 {
		return nil
	}
	if err := a.drain(); err != nil {
		return err
	}
	var errs []error
	for size, list := range a.free {
		keep := list[:0]
		for _, c := range list {
			if c.seq >= running {
				keep = append(keep, c)
				continue
			}
			if err := a.raw.free(c.ptr); err != nil {
				errs = append(errs, err)
			}
			a.cached -= size
		}
		if len(keep) == 0 {
			delete(a.free, size)
		} else {
			a.free[size] = keep
		}
	}
	return errors.Join(errs...)
}
