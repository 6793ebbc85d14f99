// Package telemetry traces modeld's gRPC calls with OpenTelemetry: one server span per call,
// made by otelgrpc's stats handler, joined to the caller's trace through the W3C traceparent
// and baggage headers, and exported where the standard OTEL_* environment variables say.
//
// Tracing is off unless the environment asks for it (see Enabled): then no stats handler is
// installed and a call costs nothing more.
package telemetry

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
)

// Enabled reports whether the environment asks for traces: OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_TRACES_EXPORTER is set, OTEL_TRACES_EXPORTER is
// not "none" and OTEL_SDK_DISABLED is not "true".
func Enabled() bool {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") || os.Getenv("OTEL_TRACES_EXPORTER") == "none" {
		return false
	}
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"} {
		if os.Getenv(k) != "" {
			return true
		}
	}
	return false
}

// Tracing makes the spans of a gRPC server's calls. Its provider is not installed as
// OpenTelemetry's global one: the stats handler is modeld's only source of spans.
type Tracing struct {
	tp *sdktrace.TracerProvider
}

// Start returns the tracing the environment configures, or nil when !Enabled().
//
// OTEL_TRACES_EXPORTER lists the exporters, comma-separated: otlp (the default) or console
// (stdout). The OTLP exporter speaks OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or
// OTEL_EXPORTER_OTLP_PROTOCOL: http/protobuf (the default) or grpc, and reads its endpoint,
// headers, timeout, TLS files and compression from the OTEL_EXPORTER_OTLP_* variables. The SDK
// reads OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_* and, for the resource, OTEL_SERVICE_NAME
// (default "modeld") and OTEL_RESOURCE_ATTRIBUTES. Export errors go to log.
func Start(ctx context.Context, log *slog.Logger) (*Tracing, error) {
	if !Enabled() {
		return nil, nil
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("opentelemetry", "err", err) }))
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "modeld")),
		resource.WithFromEnv(), // after the default name, so that OTEL_SERVICE_NAME wins
		resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	for name := range strings.SplitSeq(cmp.Or(os.Getenv("OTEL_TRACES_EXPORTER"), "otlp"), ",") {
		exp, err := exporter(ctx, strings.TrimSpace(name))
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	return New(sdktrace.NewTracerProvider(opts...)), nil
}

// exporter returns the span exporter named by an OTEL_TRACES_EXPORTER value.
func exporter(ctx context.Context, name string) (sdktrace.SpanExporter, error) {
	switch name {
	case "otlp":
		proto := cmp.Or(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf")
		switch proto {
		case "http/protobuf":
			return otlptracehttp.New(ctx)
		case "grpc":
			return otlptracegrpc.New(ctx)
		}
		return nil, fmt.Errorf("telemetry: OTLP protocol %q: want http/protobuf or grpc", proto)
	case "console":
		return stdouttrace.New()
	}
	return nil, fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER %q: want otlp, console or none", name)
}

// New returns tracing through tp (Start builds one from the environment).
func New(tp *sdktrace.TracerProvider) *Tracing { return &Tracing{tp: tp} }

// ServerOption installs otelgrpc's stats handler: a server span per call, named
// "package.Service/Method", except grpc.health.v1 checks. It is a stats handler, not an
// interceptor, so it sees every call whatever the interceptor chain refuses.
func (t *Tracing) ServerOption() grpc.ServerOption {
	return grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(t.tp),
		otelgrpc.WithPropagators(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})),
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	))
}

// Shutdown exports the spans still buffered and stops the exporters; call it after the gRPC
// server has stopped, so that the last calls' spans have ended.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if err := t.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	return nil
}
