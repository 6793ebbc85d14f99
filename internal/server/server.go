// Package server implements modeld's gRPC services on top of the model registry and the
// generation engines. It is the only place where errors become gRPC status codes.
package server

import (
	"context"
	"log/slog"
	"runtime/debug"
	"sync"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/validator"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/modeld-dev/modeld/internal/registry"
	"github.com/modeld-dev/modeld/internal/train"
	modeldv1 "github.com/modeld-dev/modeld/proto/modeld/v1"
)

// Options configure the services.
type Options struct {
	Registry *registry.Registry
	// Train runs TrainService's jobs; nil answers Unimplemented.
	Train *train.Manager
	// MaxUploadBytes limits UploadDataset [DefaultMaxUploadBytes].
	MaxUploadBytes int64
	// Hub is where PullModel downloads from.
	Hub registry.Hub
	// DefaultModel serves requests that name no model; "" requires a name.
	DefaultModel string
	// MaxPromptTokens and MaxNewTokens bound a request (0: only the model's context does).
	MaxPromptTokens, MaxNewTokens int
	Log                           *slog.Logger
}

// Server holds the service implementations and the health status they report.
type Server struct {
	opt    Options
	health *health.Server

	mu       sync.Mutex
	draining bool
}

// New returns the services. Health starts NOT_SERVING for GenerateService until a model
// loads; ModelService serves at once.
func New(opt Options) *Server {
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	s := &Server{opt: opt, health: health.NewServer()}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(modeldv1.GenerateService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(modeldv1.ModelService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	if opt.Train != nil {
		s.health.SetServingStatus(modeldv1.TrainService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	}
	return s
}

// GRPCServer returns a gRPC server with the services, grpc.health.v1 and server reflection
// registered behind go-grpc-middleware's interceptors: request logging (slog), validation of
// each request's Validate method (InvalidArgument), and panic recovery last, so that a panic
// in a handler becomes Internal instead of a crash. opts are added after those.
func (s *Server) GRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		s.opt.Log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	logOpts := []logging.Option{logging.WithLogOnEvents(logging.FinishCall)}
	onPanic := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		s.opt.Log.ErrorContext(ctx, "panic in handler", "panic", p, "stack", string(debug.Stack()))
		return status.Errorf(codes.Internal, "internal error")
	})
	opts = append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(
			logging.UnaryServerInterceptor(logger, logOpts...),
			validator.UnaryServerInterceptor(),
			recovery.UnaryServerInterceptor(onPanic),
		),
		grpc.ChainStreamInterceptor(
			logging.StreamServerInterceptor(logger, logOpts...),
			validator.StreamServerInterceptor(),
			recovery.StreamServerInterceptor(onPanic),
		),
	}, opts...)
	g := grpc.NewServer(opts...)
	modeldv1.RegisterGenerateServiceServer(g, &generateService{s: s})
	modeldv1.RegisterModelServiceServer(g, &modelService{s: s})
	modeldv1.RegisterTrainServiceServer(g, &trainService{s: s})
	healthpb.RegisterHealthServer(g, s.health)
	reflection.Register(g)
	return g
}

// markServing reports GenerateService SERVING once a model is loaded, unless draining.
func (s *Server) markServing() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.draining {
		s.health.SetServingStatus(modeldv1.GenerateService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	}
}

// Drain reports every service NOT_SERVING, so that load balancers stop sending requests
// while the running ones finish.
func (s *Server) Drain() {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	s.health.Shutdown()
}

// Load loads the model name (as LoadModel does), so that GenerateService reports SERVING.
func (s *Server) Load(ctx context.Context, name string) error {
	_, err := s.engineFor(ctx, name)
	return err
}
