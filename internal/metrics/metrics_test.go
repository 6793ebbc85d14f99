package metrics_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/backend/cpu"
	"github.com/modeld-dev/modeld/internal/engine"
	"github.com/modeld-dev/modeld/internal/metrics"
	"github.com/modeld-dev/modeld/internal/oracletest"
	"github.com/modeld-dev/modeld/internal/registry"
	"github.com/modeld-dev/modeld/internal/server"
	"github.com/modeld-dev/modeld/internal/train"
	modeldv1 "github.com/modeld-dev/modeld/proto/modeld/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func cpuBackend() (backend.Backend, error) { return cpu.New(), nil }

// series finds name{labels} in families and returns its value: a counter's or gauge's value,
// a histogram's sample count.
func series(t *testing.T, families []*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metric
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue(), true
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue(), true
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
			t.Fatalf("%s has type %s", name, f.GetType())
		}
	}
	return 0, false
}

func gather(t *testing.T, m *metrics.Metrics) []*dto.MetricFamily {
	t.Helper()
	families, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	return families
}

type want struct {
	name   string
	labels map[string]string
	value  float64
}

func check(t *testing.T, families []*dto.MetricFamily, wants []want) {
	t.Helper()
	for _, w := range wants {
		got, ok := series(t, families, w.name, w.labels)
		if !ok {
			t.Errorf("%s%v is missing", w.name, w.labels)
		} else if got != w.value {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.value)
		}
	}
}

// engineGate passes events to the metrics' observer and holds the engine at the first token
// after a first token (the second step of a request), until release is closed.
type engineGate struct {
	engine.Observer
	held           bool
	first, release chan struct{}
}

func (g *engineGate) NextToken(itl time.Duration) {
	g.Observer.NextToken(itl)
	if !g.held {
		g.held = true
		close(g.first)
		<-g.release
	}
}

// TestServingMetrics runs one Generate of n = 2 sequences on a real server and reads the
// metrics while the engine is held at its second step, then after the stream ends: every
// event of the request is counted once, and the gauges move and come back to rest.
func TestServingMetrics(t *testing.T) {
	m := metrics.New()
	log := slog.New(slog.DiscardHandler)
	gate := &engineGate{first: make(chan struct{}), release: make(chan struct{})}
	observe := func(model string) engine.Observer { gate.Observer = m.EngineObserver(model); return gate }
	reg, err := registry.New(registry.Options{Dir: oracletest.ModelsDir(t), Backend: cpuBackend, Observer: observe, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	m.WatchEngines(reg)
	srv := server.New(server.Options{Registry: reg, DefaultModel: "tiny", Log: log})
	g := srv.GRPCServer(grpc.ChainUnaryInterceptor(m.UnaryServerInterceptor()), grpc.ChainStreamInterceptor(m.StreamServerInterceptor()))
	m.InitializeGRPC(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	defer g.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	before := gather(t, m)
	check(t, before, []want{
		{"grpc_server_handled_total", map[string]string{"grpc_service": "modeld.v1.GenerateService", "grpc_method": "Generate", "grpc_code": "OK"}, 0},
	})
	if _, ok := series(t, before, "modeld_num_requests_running", nil); ok {
		t.Errorf("modeld_num_requests_running exists before a model is loaded")
	}

	prompt := []int32{10, 20, 30, 40, 50}
	stream, err := modeldv1.NewGenerateServiceClient(conn).Generate(t.Context(), &modeldv1.GenerateRequest{
		PromptTokenIds: prompt, MaxNewTokens: 8, N: 2, IgnoreEos: true,
		Sampling: &modeldv1.SamplingParams{Temperature: proto.Float32(0)}})
	if err != nil {
		close(gate.release)
		t.Fatal(err)
	}
	<-gate.first
	mid := gather(t, m)
	close(gate.release)
	tiny := map[string]string{"model_name": "tiny"}
	check(t, mid, []want{
		{"modeld_num_requests_running", tiny, 2},
		{"modeld_num_requests_waiting", tiny, 0},
		{"modeld_time_to_first_token_seconds", tiny, 2},
		{"modeld_prompt_tokens_total", tiny, float64(len(prompt))},
	})
	if kv, _ := series(t, mid, "modeld_kv_cache_usage_perc", tiny); kv <= 0 || kv > 1 {
		t.Errorf("modeld_kv_cache_usage_perc = %v mid-request, want in (0, 1]", kv)
	}
	streamed := 0
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		streamed += len(resp.GetTokenIds())
	}
	if streamed != 16 {
		t.Fatalf("%d tokens streamed, want 2 x 8", streamed)
	}

	check(t, gather(t, m), []want{
		{"modeld_time_to_first_token_seconds", tiny, 2},
		{"modeld_inter_token_latency_seconds", tiny, 2 * 7},
		{"modeld_e2e_request_latency_seconds", tiny, 2},
		{"modeld_request_queue_time_seconds", tiny, 1},
		{"modeld_generation_tokens_total", tiny, float64(streamed)},
		{"modeld_prompt_tokens_total", tiny, float64(len(prompt))},
		{"modeld_request_success_total", map[string]string{"model_name": "tiny", "finished_reason": "length"}, 2},
		{"modeld_request_success_total", map[string]string{"model_name": "tiny", "finished_reason": "stop"}, 0},
		{"modeld_num_requests_running", tiny, 0},
		{"modeld_num_requests_waiting", tiny, 0},
		{"modeld_kv_cache_usage_perc", tiny, 0},
		{"grpc_server_handled_total", map[string]string{"grpc_service": "modeld.v1.GenerateService", "grpc_method": "Generate", "grpc_code": "OK"}, 1},
		{"grpc_server_handling_seconds", map[string]string{"grpc_service": "modeld.v1.GenerateService", "grpc_method": "Generate"}, 1},
		{"grpc_server_msg_sent_total", map[string]string{"grpc_service": "modeld.v1.GenerateService", "grpc_method": "Generate"}, 16},
	})

	// An unloaded model's gauges leave; its counters stay.
	if err := reg.Unload("tiny"); err != nil {
		t.Fatal(err)
	}
	after := gather(t, m)
	if _, ok := series(t, after, "modeld_kv_cache_usage_perc", tiny); ok {
		t.Errorf("modeld_kv_cache_usage_perc of an unloaded model is still reported")
	}
	check(t, after, []want{{"modeld_generation_tokens_total", tiny, float64(streamed)}})
}

// gate passes steps to the metrics' observer and holds the job after its first step until
// release is closed, so that the test reads the running job's gauges.
type gate struct {
	train.Observer
	steps   int
	first   chan struct{}
	release chan struct{}
}

func (g *gate) Step(took time.Duration) {
	g.Observer.Step(took)
	if g.steps++; g.steps == 1 {
		close(g.first)
		<-g.release
	}
}

// TestTrainingMetrics runs a job of two steps on the oracle model and reads the metrics while it
// is held after its first step and once it has ended.
func TestTrainingMetrics(t *testing.T) {
	m := metrics.New()
	log := slog.New(slog.DiscardHandler)
	reg, err := registry.New(registry.Options{Dir: oracletest.ModelsDir(t), Backend: cpuBackend, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	data := filepath.Join(t.TempDir(), "data")
	obs := &gate{Observer: m.TrainObserver(), first: make(chan struct{}), release: make(chan struct{})}
	jobs, err := train.Open(train.Options{DataDir: data, Registry: reg, Backend: cpuBackend, Observer: obs, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer jobs.Close()
	m.WatchJobs(jobs)

	var in struct{ Case1 struct{ Stream []int32 } }
	raw, err := os.ReadFile(filepath.Join(oracletest.Dir(), "refs", "inputs.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		t.Fatal(err)
	}
	ids, _ := json.Marshal(map[string]any{"input_ids": in.Case1.Stream})
	if err := os.WriteFile(filepath.Join(data, "case1.jsonl"), append(ids, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	h := train.DefaultHyperparameters()
	h.MaxSteps, h.BatchSize, h.SeqLen, h.LearningRate = 2, 2, 16, 1e-3
	job, err := jobs.Create(t.Context(), train.Spec{BaseModel: "tiny", OutputModel: "tiny-metrics", DataPaths: []string{"case1.jsonl"}, Hyper: h})
	if err != nil {
		close(obs.release)
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- jobs.Watch(t.Context(), job.ID, 0, func(train.Event) error { return nil }) }()
	select {
	case <-obs.first:
	case err := <-ended:
		j, _ := jobs.Get(job.ID)
		t.Fatalf("the job ended before its first step: %v, %s: %s", err, j.State, j.Error)
	}
	running := gather(t, m)
	close(obs.release)
	check(t, running, []want{
		{"modeld_train_jobs", map[string]string{"state": "running"}, 1},
		{"modeld_train_jobs", map[string]string{"state": "succeeded"}, 0},
		{"modeld_train_step_seconds", nil, 1},
	})
	this := map[string]string{"job_id": job.ID, "output_model": "tiny-metrics"}
	if loss, ok := series(t, running, "modeld_train_loss", this); !ok || loss <= 0 {
		t.Errorf("modeld_train_loss%v = %v (present %v), want the first step's positive loss", this, loss, ok)
	}
	if tps, ok := series(t, running, "modeld_train_tokens_per_second", this); !ok || tps <= 0 {
		t.Errorf("modeld_train_tokens_per_second%v = %v (present %v), want > 0", this, tps, ok)
	}

	if err := <-ended; err != nil {
		t.Fatal(err)
	}
	if j, _ := jobs.Get(job.ID); j.State != train.Succeeded {
		t.Fatalf("job %s: %s", j.State, j.Error)
	}
	done := gather(t, m)
	check(t, done, []want{
		{"modeld_train_jobs", map[string]string{"state": "running"}, 0},
		{"modeld_train_jobs", map[string]string{"state": "succeeded"}, 1},
		{"modeld_train_step_seconds", nil, 2},
	})
	if _, ok := series(t, done, "modeld_train_loss", nil); ok {
		t.Errorf("modeld_train_loss is still reported after the job ended")
	}
}

// TestObserverDoesNotAllocate checks the per-token path: bound series, no allocation.
func TestObserverDoesNotAllocate(t *testing.T) {
	o := metrics.New().EngineObserver("tiny")
	for name, f := range map[string]func(){
		"Admitted":   func() { o.Admitted(5*time.Millisecond, 7) },
		"FirstToken": func() { o.FirstToken(50 * time.Millisecond) },
		"NextToken":  func() { o.NextToken(20 * time.Millisecond) },
		"Finished":   func() { o.Finished(engine.Finish{Reason: engine.FinishStop, Total: time.Second}) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s allocates %v times", name, n)
		}
	}
	if n := testing.AllocsPerRun(100, func() { o.Finished(engine.Finish{Reason: engine.FinishCancelled, Total: time.Second}) }); n != 0 {
		t.Errorf("Finished(cancelled) allocates %v times", n)
	}
}
