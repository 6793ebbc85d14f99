package cpu

import (
	"runtime"
	"sync"
)

// parallelFor splits [0, n) into at most GOMAXPROCS contiguous ranges of at least minChunk
// items and runs fn on each, the last range on the calling goroutine. It returns when all are
// done.
func parallelFor(n, minChunk int, fn func(lo, hi int)) {
	workers := chunks(n, minChunk)
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for w := range workers - 1 {
		wg.Go(func() { fn(w*n/workers, (w+1)*n/workers) })
	}
	fn((workers-1)*n/workers, n)
	wg.Wait()
}

// parallelReduce is parallelFor for a range whose items add into shared state: each range gets
// its own zeroed partial of size width, and merge folds the partials in range order, so the
// result does not depend on scheduling.
func parallelReduce(n, minChunk, width int, fn func(lo, hi int, part []float32), merge func(part []float32)) {
	workers := max(chunks(n, minChunk), 1)
	parts := make([]float32, workers*width)
	parallelFor(workers, 1, func(lo, hi int) {
		for w := lo; w < hi; w++ {
			fn(w*n/workers, (w+1)*n/workers, parts[w*width:(w+1)*width])
		}
	})
	for w := range workers {
		merge(parts[w*width : (w+1)*width])
	}
}

// chunks is the number of ranges parallelFor uses for n items.
func chunks(n, minChunk int) int {
	return min(runtime.GOMAXPROCS(0), n/max(minChunk, 1))
}
