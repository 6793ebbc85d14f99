// Package metrics holds modeld's Prometheus metrics: go-grpc-middleware's gRPC server metrics,
// the serving metrics of the generation engines, named as vLLM names them (modeld_ in place of
// vllm:), and the metrics of the training jobs, with the Go runtime and process collectors.
//
// The engines and the training manager know nothing of Prometheus. They report events to the
// observers made here (engine.Observer, train.Observer), which feed histograms and counters
// through label values bound once, so that a generated token costs an atomic add or two and
// no allocation; gauges (running and waiting requests, KV-cache usage, jobs) are read from the
// engines and the manager when Prometheus scrapes.
package metrics

import (
	"net/http"
	"slices"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
)

// grpcBuckets are the bounds of grpc_server_handling_seconds, in seconds: Prometheus' default
// buckets for unary calls, then up to an hour for the streams of Generate and
// WatchTrainingJob.
var grpcBuckets = slices.Concat(prometheus.DefBuckets, []float64{30, 60, 120, 300, 600, 1800, 3600})

// Metrics is a Prometheus registry holding every modeld metric. Its methods are safe for
// concurrent use.
type Metrics struct {
	reg     *prometheus.Registry
	grpc    *grpcprom.ServerMetrics
	serving *serving
	train   *training
}

// New returns the metrics in a registry of their own, with the Go runtime and process
// collectors. The scrape-time gauges join it with WatchEngines and WatchJobs.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		grpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets(grpcBuckets))),
		serving: newServing(),
		train:   newTraining(),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.grpc,
	)
	m.serving.register(m.reg)
	m.train.register(m.reg)
	return m
}

// Gatherer returns the registry, for tests and other exporters.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Handler serves the metrics in Prometheus' text format (or OpenMetrics when asked), counting
// its own scrapes in promhttp_metric_handler_requests_total.
func (m *Metrics) Handler() http.Handler {
	return promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
}

// UnaryServerInterceptor and StreamServerInterceptor record go-grpc-middleware's server
// metrics: grpc_server_started_total, grpc_server_handled_total (with grpc_code),
// grpc_server_msg_received_total, grpc_server_msg_sent_total and the
// grpc_server_handling_seconds histogram, each labelled grpc_type, grpc_service and
// grpc_method. Put them first in the chain, so that they see calls that later interceptors
// refuse.
func (m *Metrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return m.grpc.UnaryServerInterceptor()
}

// StreamServerInterceptor: see UnaryServerInterceptor.
func (m *Metrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return m.grpc.StreamServerInterceptor()
}

// InitializeGRPC creates the gRPC series of every method registered on g at zero, so that
// rates and ratios exist before the first call.
func (m *Metrics) InitializeGRPC(g *grpc.Server) { m.grpc.InitializeMetrics(g) }
