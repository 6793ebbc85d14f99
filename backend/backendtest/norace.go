//go:build !race

package backendtest

// raceEnabled reports whether the race detector is on.
const raceEnabled = false
