package cpu_test

import (
	"testing"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/backend/backendtest"
	"github.com/modeld-dev/modeld/backend/cpu"
)

func TestConformance(t *testing.T) {
	backendtest.RunAll(t, func() backend.Backend { return cpu.New() })
}
