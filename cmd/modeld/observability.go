package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"google.golang.org/grpc"

	"github.com/modeld-dev/modeld/internal/engine"
	"github.com/modeld-dev/modeld/internal/metrics"
	"github.com/modeld-dev/modeld/internal/registry"
	"github.com/modeld-dev/modeld/internal/telemetry"
	"github.com/modeld-dev/modeld/internal/train"
)

// observability is modeld's Prometheus endpoint (--metrics-addr) and OpenTelemetry tracing
// (the OTEL_* environment variables). Either may be off, and then costs nothing: its parts
// are nil and its methods give nothing to install.
type observability struct {
	log     *slog.Logger
	metrics *metrics.Metrics   // nil: no --metrics-addr
	tracing *telemetry.Tracing // nil: no OTEL_* variable asks for traces
	http    *http.Server
	served  chan error
}

// startObservability serves /metrics on metricsAddr ("" for none) and starts tracing if the
// environment asks for it. close stops both.
func startObservability(ctx context.Context, metricsAddr string, log *slog.Logger) (*observability, error) {
	o := &observability{log: log}
	tr, err := telemetry.Start(ctx, log)
	if err != nil {
		return nil, err
	}
	if tr != nil {
		o.tracing = tr
		log.Info("tracing on", "exporters", cmp.Or(os.Getenv("OTEL_TRACES_EXPORTER"), "otlp"))
	}
	if metricsAddr == "" {
		return o, nil
	}
	lis, err := net.Listen("tcp", metricsAddr)
	if err != nil {
		o.close()
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	o.metrics, o.served = metrics.New(), make(chan error, 1)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", o.metrics.Handler())
	o.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { o.served <- o.http.Serve(lis) }()
	log.Info("metrics serving", "addr", lis.Addr().String(), "path", "/metrics")
	return o, nil
}

// engineObserver is registry.Options.Observer: the metrics of model's engine, or nil.
func (o *observability) engineObserver(model string) engine.Observer {
	if o.metrics == nil {
		return nil
	}
	return o.metrics.EngineObserver(model)
}

// trainObserver is train.Options.Observer, or nil.
func (o *observability) trainObserver() train.Observer {
	if o.metrics == nil {
		return nil
	}
	return o.metrics.TrainObserver()
}

// unaryInterceptors and streamInterceptors go first in the server's chain
// (server.Options.UnaryInterceptors and StreamInterceptors), so that the gRPC metrics count
// the calls that authentication, the rate limit or validation refuse.
func (o *observability) unaryInterceptors() []grpc.UnaryServerInterceptor {
	if o.metrics == nil {
		return nil
	}
	return []grpc.UnaryServerInterceptor{o.metrics.UnaryServerInterceptor()}
}

func (o *observability) streamInterceptors() []grpc.StreamServerInterceptor {
	if o.metrics == nil {
		return nil
	}
	return []grpc.StreamServerInterceptor{o.metrics.StreamServerInterceptor()}
}

// serverOptions holds the tracing stats handler, when tracing is on.
func (o *observability) serverOptions() []grpc.ServerOption {
	if o.tracing == nil {
		return nil
	}
	return []grpc.ServerOption{o.tracing.ServerOption()}
}

// watch adds the gauges read at scrape time from the engines of reg and the jobs of jobs (nil
// without TrainService), and the gRPC series of g's methods at zero.
func (o *observability) watch(g *grpc.Server, reg *registry.Registry, jobs *train.Manager) {
	if o.metrics == nil {
		return
	}
	o.metrics.InitializeGRPC(g)
	o.metrics.WatchEngines(reg)
	if jobs != nil {
		o.metrics.WatchJobs(jobs)
	}
}

// close stops the metrics endpoint and exports the spans still buffered; call it after the
// gRPC server has stopped.
func (o *observability) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if o.http != nil {
		if err := o.http.Shutdown(ctx); err != nil {
			o.log.Warn("metrics endpoint shutdown", "err", err)
		}
		if err := <-o.served; !errors.Is(err, http.ErrServerClosed) {
			o.log.Error("metrics endpoint failed", "err", err)
		}
	}
	if o.tracing != nil {
		if err := o.tracing.Shutdown(ctx); err != nil {
			o.log.Warn("tracing shutdown", "err", err)
		}
	}
}
