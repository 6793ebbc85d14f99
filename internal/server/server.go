// Package server implements modeld's gRPC services on top of the model registry and the
// generation engines. It is the only place where errors become gRPC status codes.
package server

import (
	"context"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/ratelimit"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
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

	// AuthTokens are the bearer tokens a call must carry (metadata "authorization: Bearer
	// TOKEN"), compared in constant time; a call without one of them is Unauthenticated.
	// grpc.health.v1 and server reflection stay open. Empty: no authentication.
	AuthTokens []string
	// RateLimit is the calls per second each client may start (a stream counts once), keyed by
	// its token when AuthTokens are set, else by its IP address; above it, and above bursts of
	// RateBurst calls (0: ceil(RateLimit), at least 1), calls are ResourceExhausted. Health and
	// reflection are not limited. 0: no limit.
	RateLimit float64
	RateBurst int
	// MaxRecvMsgBytes is the largest request message, in bytes (grpc.MaxRecvMsgSize): a larger
	// one is ResourceExhausted. 0: gRPC's default of 4 MiB.
	MaxRecvMsgBytes int
	// LogPayloads logs every request and response message (prompts, generated text, training
	// data) with the call's log line. Off, no message content is logged.
	LogPayloads bool
	// UnaryInterceptors and StreamInterceptors run first, outside the server's own chain
	// (request id, logging, auth, rate limit, validation, recovery), so that they see every call,
	// including the ones auth, the rate limit or validation refuse: metrics and tracing go here.
	UnaryInterceptors  []grpc.UnaryServerInterceptor
	StreamInterceptors []grpc.StreamServerInterceptor
}

// Server holds the service implementations and the health status they report.
type Server struct {
	opt Options
	// log is opt.Log adding the call's fields (request_id, grpc.method, client) from the context.
	log    *slog.Logger
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
	s := &Server{opt: opt, log: slog.New(fieldsHandler{opt.Log.Handler()}), health: health.NewServer()}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(modeldv1.GenerateService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(modeldv1.ModelService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	if opt.Train != nil {
		s.health.SetServingStatus(modeldv1.TrainService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	}
	return s
}

// GRPCServer returns a gRPC server with the services, grpc.health.v1 and server reflection
// registered behind go-grpc-middleware's interceptors, in this order:
//
//   - Options.UnaryInterceptors / StreamInterceptors, if any;
//   - the request id: the client's x-request-id metadata when sane (SaneRequestID), else a
//     random one; it is returned in the response header x-request-id and is the request_id field
//     of every log line of the call;
//   - request logging (slog): one line per finished call, and each message with LogPayloads;
//   - authentication (auth, behind selector so that health and reflection stay open) when
//     Options.AuthTokens are set: Unauthenticated without a valid bearer token;
//   - the per-client rate limit (ratelimit) when Options.RateLimit > 0: ResourceExhausted;
//   - validation of each request's Validate method: InvalidArgument;
//   - panic recovery, last, so that a panic in a handler becomes Internal instead of a crash.
//
// Logging comes before auth and the rate limit so that refused calls are logged too. opts are
// added after the server's own options (grpc.MaxRecvMsgSize from Options.MaxRecvMsgBytes).
func (s *Server) GRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		s.opt.Log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	events := []logging.LoggableEvent{logging.FinishCall}
	if s.opt.LogPayloads {
		events = append(events, logging.PayloadReceived, logging.PayloadSent)
	}
	logOpts := []logging.Option{logging.WithLogOnEvents(events...)}
	onPanic := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		s.log.ErrorContext(ctx, "panic in handler", "panic", p, "stack", string(debug.Stack()))
		return status.Errorf(codes.Internal, "internal error")
	})
	unary := append(slices.Clone(s.opt.UnaryInterceptors), requestIDUnary, logging.UnaryServerInterceptor(logger, logOpts...))
	stream := append(slices.Clone(s.opt.StreamInterceptors), requestIDStream, logging.StreamServerInterceptor(logger, logOpts...))
	if len(s.opt.AuthTokens) > 0 {
		check := newTokens(s.opt.AuthTokens).authenticate
		unary = append(unary, selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(check), selector.MatchFunc(guarded)))
		stream = append(stream, selector.StreamServerInterceptor(auth.StreamServerInterceptor(check), selector.MatchFunc(guarded)))
	}
	if s.opt.RateLimit > 0 {
		l := newLimiter(s.opt.RateLimit, s.opt.RateBurst)
		unary = append(unary, selector.UnaryServerInterceptor(ratelimit.UnaryServerInterceptor(l), selector.MatchFunc(guarded)))
		stream = append(stream, selector.StreamServerInterceptor(ratelimit.StreamServerInterceptor(l), selector.MatchFunc(guarded)))
	}
	unary = append(unary, validator.UnaryServerInterceptor(), recovery.UnaryServerInterceptor(onPanic))
	stream = append(stream, validator.StreamServerInterceptor(), recovery.StreamServerInterceptor(onPanic))
	own := []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...)}
	if s.opt.MaxRecvMsgBytes > 0 {
		own = append(own, grpc.MaxRecvMsgSize(s.opt.MaxRecvMsgBytes))
	}
	opts = append(own, opts...)
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
