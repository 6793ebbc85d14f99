//go:build !amd64

package cpu

// vecKernelSets returns the vector kernel sets this CPU can run: only the portable Go set.
func vecKernelSets() []vecKernels { return []vecKernels{vecGo} }
