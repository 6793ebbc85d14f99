package cuda

import (
	"fmt"
	"math"

	"github.com/modeld-dev/modeld/backend"
)

// dim3 is a grid or block size in CUDA's dim3 sense: X, Y, Z counts. As in CUDA C++, where
// dim3(n) means (n, 1, 1), a Y or Z of 0 counts as 1, so dim3{X: n} is a 1-D size.
type dim3 struct{ X, Y, Z uint32 }

// full returns d with a Y or Z of 0 made 1.
func (d dim3) full() dim3 {
	return dim3{X: d.X, Y: max(d.Y, 1), Z: max(d.Z, 1)}
}

// launch queues the kernel called kernel (its extern "C" name) on grid blocks of block
// threads with sharedBytes of dynamic shared memory. Each argument becomes one kernel
// parameter:
//
//   - a backend.Buffer of this GPU: its device address (a view's, with its offset), for a
//     float* or int* parameter; a nil Buffer is NULL
//   - an int (it must fit a C int), an int32 or a uint32: a 4-byte integer
//   - a float32: a 4-byte float
//
// Any other argument, a buffer of another backend, or a kernel that no module defines records
// an error, as does a failed launch; launch never panics. A grid with X 0 launches nothing, so
// that empty tensors need no special case. It enqueues nothing once the handle has an error.
// Sizes are the caller's to check: launch checks nothing else.
func (b *Backend) launch(kernel string, grid, block dim3, sharedBytes int, args ...any) {
	if b.failed() {
		return
	}
	slots, err := b.packArgs(args)
	if err != nil {
		b.fail(fmt.Errorf("cuda: launch %s: %w", kernel, err))
		return
	}
	if grid.X == 0 {
		return
	}
	grid, block = grid.full(), block.full()
	b.enqueue(b.call(func(d *device) error { return d.launch(kernel, grid, block, sharedBytes, slots) }))
}

// packArgs turns launch's arguments into kernel parameter values, one 8-byte slot each:
// cuLaunchKernel reads each parameter through its own pointer, as many bytes as the kernel's
// signature says, so a 4-byte value sits in the low half of its slot (every CUDA host is
// little-endian).
func (b *Backend) packArgs(args []any) ([]uint64, error) {
	slots := make([]uint64, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case nil:
			slots[i] = 0
		case backend.Buffer:
			x, ok := v.(*buffer)
			switch {
			case !ok:
				return nil, fmt.Errorf("argument %d is a %T, not a cuda buffer", i, v)
			case x == nil:
				slots[i] = 0
			case x.dev != b.dev:
				return nil, fmt.Errorf("argument %d is a buffer of device %d, not %d", i, x.dev.ordinal, b.dev.ordinal)
			default:
				slots[i] = x.ptr
			}
		case int:
			if v < math.MinInt32 || v > math.MaxInt32 {
				return nil, fmt.Errorf("argument %d is %d, outside a C int", i, v)
			}
			slots[i] = uint64(uint32(int32(v)))
		case int32:
			slots[i] = uint64(uint32(v))
		case uint32:
			slots[i] = uint64(v)
		case float32:
			slots[i] = uint64(math.Float32bits(v))
		default:
			return nil, fmt.Errorf("argument %d has type %T (want a backend.Buffer, int, int32, uint32 or float32)", i, a)
		}
	}
	return slots, nil
}
