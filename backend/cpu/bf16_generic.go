//go:build !amd64

package cpu

// bf16KernelSets returns the bfloat16 kernel sets this CPU can run: only the portable Go set.
func bf16KernelSets() []bf16KernelSet { return []bf16KernelSet{bf16Go} }
