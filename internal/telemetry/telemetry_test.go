package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/backend/cpu"
	"github.com/modeld-dev/modeld/internal/oracletest"
	"github.com/modeld-dev/modeld/internal/registry"
	"github.com/modeld-dev/modeld/internal/server"
	"github.com/modeld-dev/modeld/internal/telemetry"
	modeldv1 "github.com/modeld-dev/modeld/proto/modeld/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// unsetOTEL clears every variable that turns tracing on, for the length of the test.
func unsetOTEL(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"} {
		t.Setenv(k, "")
	}
}

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"unset", nil, false},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{"exporter", map[string]string{"OTEL_TRACES_EXPORTER": "console"}, true},
		{"exporter none", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, false},
		{"sdk disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unsetOTEL(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if got := telemetry.Enabled(); got != tc.want {
				t.Errorf("Enabled() = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestStartOff checks that with no OTEL_* variable set nothing is made: no tracing, so no stats
// handler for the server.
func TestStartOff(t *testing.T) {
	unsetOTEL(t)
	tr, err := telemetry.Start(t.Context(), slog.New(slog.DiscardHandler))
	if tr != nil || err != nil {
		t.Errorf("Start() = %v, %v; want nil, nil", tr, err)
	}
}

func TestStartFromEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantErr string // "" for none
	}{
		{"otlp http", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ""},
		{"otlp grpc", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ""},
		{"console and otlp", map[string]string{"OTEL_TRACES_EXPORTER": "console, otlp"}, ""},
		{"otlp json", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, `OTLP protocol "http/json"`},
		{"unknown exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, `OTEL_TRACES_EXPORTER "zipkin"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unsetOTEL(t)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			tr, err := telemetry.Start(t.Context(), slog.New(slog.DiscardHandler))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Start() error = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || tr == nil {
				t.Fatalf("Start() = %v, %v; want tracing", tr, err)
			}
			// Nothing was traced, so shutting down exports nothing and needs no collector.
			if err := tr.Shutdown(t.Context()); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
	}
}

// TestGenerateSpan serves the oracle model with tracing into an in-memory exporter: a Generate
// call from a traced client makes one server span, named after the method, in the client's
// trace; health checks make none.
func TestGenerateSpan(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tr := telemetry.New(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)))
	log := slog.New(slog.DiscardHandler)
	reg, err := registry.New(registry.Options{Dir: oracletest.ModelsDir(t), Backend: func() (backend.Backend, error) { return cpu.New(), nil }, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	// GracefulStop waits for the handlers, and so for the end of their spans.
	g := server.New(server.Options{Registry: reg, DefaultModel: "tiny", Log: log}).GRPCServer(tr.ServerOption())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- g.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// The client's span context travels in the traceparent header.
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	ctx := metadataWithTraceparent(t.Context(), parent)
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	stream, err := modeldv1.NewGenerateServiceClient(conn).Generate(ctx, &modeldv1.GenerateRequest{PromptTokenIds: []int32{1, 2, 3}, MaxNewTokens: 4})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	g.GracefulStop()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans() // before Shutdown, which empties the exporter
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(spans) != 1 {
		names := make([]string, len(spans))
		for i, s := range spans {
			names[i] = s.Name
		}
		t.Fatalf("%d spans %q, want only Generate's", len(spans), names)
	}
	s := spans[0]
	if s.Name != "modeld.v1.GenerateService/Generate" || s.SpanKind != trace.SpanKindServer {
		t.Errorf("span %q of kind %v, want modeld.v1.GenerateService/Generate of kind server", s.Name, s.SpanKind)
	}
	if s.Parent.TraceID() != parent.TraceID() || s.Parent.SpanID() != parent.SpanID() || !s.Parent.IsRemote() {
		t.Errorf("span parent %v, want the client's %v", s.Parent, parent)
	}
	if s.Status.Code == codes.Error {
		t.Errorf("span status %v", s.Status)
	}
}

// metadataWithTraceparent returns ctx carrying sc in the W3C traceparent header of the calls
// made with it.
func metadataWithTraceparent(ctx context.Context, sc trace.SpanContext) context.Context {
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(ctx, sc), carrier)
	return metadata.AppendToOutgoingContext(ctx, "traceparent", carrier.Get("traceparent"))
}
