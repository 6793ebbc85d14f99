package server

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/internal/engine"
	"github.com/modeld-dev/modeld/internal/registry"
	"github.com/modeld-dev/modeld/internal/train"
	"github.com/modeld-dev/modeld/model"
	"github.com/modeld-dev/modeld/sampling"
	"github.com/modeld-dev/modeld/tokenizer"
)

// toStatus maps an error from the layers below to a gRPC status: the one place where errors
// become codes (see DESIGN.md, Errors). Unknown errors are Internal and logged with detail, with
// the call's fields from ctx.
func toStatus(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	// NotFound and AlreadyExists first: a job whose data file is missing or whose output
	// name is taken is also an invalid job, but the precise code helps the client more.
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, registry.ErrNotFound), errors.Is(err, train.ErrJobNotFound):
		code = codes.NotFound
	case errors.Is(err, registry.ErrExists), errors.Is(err, fs.ErrExist):
		code = codes.AlreadyExists
	case errors.Is(err, engine.ErrInvalid), errors.Is(err, sampling.ErrInvalidParams),
		errors.Is(err, registry.ErrInvalidName), errors.Is(err, tokenizer.ErrUnknownID),
		errors.Is(err, registry.ErrInvalidRepo), errors.Is(err, train.ErrInvalidJob), errors.Is(err, train.ErrInvalidData):
		code = codes.InvalidArgument
	case errors.Is(err, engine.ErrOverloaded), errors.Is(err, train.ErrQueueFull), errors.Is(err, train.ErrTooLarge),
		errors.Is(err, backend.ErrOutOfMemory):
		code = codes.ResourceExhausted
	case errors.Is(err, engine.ErrClosed):
		code = codes.Unavailable
	case errors.Is(err, model.ErrUnsupported), errors.Is(err, train.ErrNotCancellable):
		code = codes.FailedPrecondition
	case errors.Is(err, registry.ErrUnauthorized):
		code = codes.PermissionDenied
	case errors.As(err, new(net.Error)):
		code = codes.Unavailable // the Hub could not be reached
	}
	if code == codes.Internal {
		log.ErrorContext(ctx, "internal error", "err", err)
	}
	return status.Error(code, err.Error())
}
