//go:build !amd64

package cpu

// matmulKernels is the kernel set that matmulForward, matmulBackwardInput and
// matmulBackwardWeight use: portable Go on this architecture.
var matmulKernels = gemmGo

// matmulKernelSets returns the kernel sets this CPU can run: only the portable Go set.
func matmulKernelSets() []gemmKernels { return []gemmKernels{gemmGo} }
