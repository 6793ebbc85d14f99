package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/internal/engine"
	"github.com/modeld-dev/modeld/internal/registry"
)

// TestToStatusCodes checks the mapping of wrapped errors from the layers below, among them a
// GPU's out-of-memory, which must reach the client as ResourceExhausted and not Internal.
func TestToStatusCodes(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("model: alloc activations: %w", backend.ErrOutOfMemory), codes.ResourceExhausted},
		{fmt.Errorf("queue: %w", engine.ErrOverloaded), codes.ResourceExhausted},
		{fmt.Errorf("load: %w", registry.ErrNotFound), codes.NotFound},
		{fmt.Errorf("generate: %w", context.Canceled), codes.Canceled},
		{status.Error(codes.PermissionDenied, "kept"), codes.PermissionDenied},
	} {
		if got := status.Code(toStatus(context.Background(), log, c.err)); got != c.want {
			t.Errorf("toStatus(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
