package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modeld-dev/modeld/internal/engine"
)

// The buckets of vLLM's histograms (vllm/v1/metrics/loggers.py), in seconds, so that dashboards
// and SLOs written for vLLM read modeld the same way.
var (
	ttftBuckets = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
		1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}
	itlBuckets = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
		1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}
	requestLatencyBuckets = []float64{0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0,
		30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0}
)

// finishReasons are the values of the finished_reason label, created at zero for each model.
var finishReasons = []engine.FinishReason{engine.FinishStop, engine.FinishLength, engine.FinishCancelled}

// serving holds the generation metrics fed by the engines' observers. Every series is labelled
// model_name. As in vLLM, each of the n sequences of a request counts as a request.
type serving struct {
	ttft, itl, e2e, queue *prometheus.HistogramVec
	prompt, generation    *prometheus.CounterVec
	success               *prometheus.CounterVec // model_name, finished_reason

	// Read from the engines at scrape time.
	running, waiting, kvUsage *prometheus.Desc
}

func newServing() *serving {
	hist := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, []string{"model_name"})
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append([]string{"model_name"}, labels...))
	}
	gauge := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"model_name"}, nil)
	}
	return &serving{
		ttft: hist("modeld_time_to_first_token_seconds",
			"Time from a request's arrival to the first token of each of its sequences, in seconds (vllm:time_to_first_token_seconds).", ttftBuckets),
		itl: hist("modeld_inter_token_latency_seconds",
			"Time between two consecutive tokens of a sequence, in seconds (vllm:inter_token_latency_seconds, formerly time_per_output_token_seconds).", itlBuckets),
		e2e: hist("modeld_e2e_request_latency_seconds",
			"Time from a request's arrival to the end of each of its sequences, in seconds (vllm:e2e_request_latency_seconds).", requestLatencyBuckets),
		queue: hist("modeld_request_queue_time_seconds",
			"Time a request waited for admission into the batch, in seconds (vllm:request_queue_time_seconds).", requestLatencyBuckets),
		prompt: counter("modeld_prompt_tokens_total",
			"Prompt tokens of the requests admitted into the batch; the n sequences of a request share one prefill (vllm:prompt_tokens_total)."),
		generation: counter("modeld_generation_tokens_total",
			"Tokens generated, over all sequences (vllm:generation_tokens_total)."),
		success: counter("modeld_request_success_total",
			"Sequences finished, by finished_reason: stop (EOS, stop token or stop string), length (max_new_tokens) or cancelled (the client's cancellation or deadline) (vllm:request_success_total).",
			"finished_reason"),
		running: gauge("modeld_num_requests_running",
			"Sequences in the batch (prefilling or decoding) at the last step (vllm:num_requests_running)."),
		waiting: gauge("modeld_num_requests_waiting",
			"Requests waiting for admission (vllm:num_requests_waiting)."),
		kvUsage: gauge("modeld_kv_cache_usage_perc",
			"Fraction of the KV-cache blocks in use, from 0 to 1 (vllm:kv_cache_usage_perc)."),
	}
}

func (s *serving) register(reg prometheus.Registerer) {
	reg.MustRegister(s.ttft, s.itl, s.e2e, s.queue, s.prompt, s.generation, s.success)
}

// EngineObserver returns the observer of the engine serving model: pass it as
// engine.Config.Observer (registry.Options.Observer does so for every model).
func (m *Metrics) EngineObserver(model string) engine.Observer {
	s := m.serving
	o := &engineObserver{
		ttft:       s.ttft.WithLabelValues(model),
		itl:        s.itl.WithLabelValues(model),
		e2e:        s.e2e.WithLabelValues(model),
		queue:      s.queue.WithLabelValues(model),
		prompt:     s.prompt.WithLabelValues(model),
		generation: s.generation.WithLabelValues(model),
		success:    s.success.MustCurryWith(prometheus.Labels{"model_name": model}),
	}
	for _, r := range finishReasons {
		o.finished[r] = o.success.WithLabelValues(r.String())
	}
	return o
}

// engineObserver feeds one model's series, with its label values bound beforehand.
type engineObserver struct {
	ttft, itl, e2e, queue prometheus.Observer
	prompt, generation    prometheus.Counter
	success               *prometheus.CounterVec // curried with model_name
	finished              [engine.FinishCancelled + 1]prometheus.Counter
}

func (o *engineObserver) Admitted(queue time.Duration, promptTokens int) {
	o.queue.Observe(queue.Seconds())
	o.prompt.Add(float64(promptTokens))
}

func (o *engineObserver) FirstToken(ttft time.Duration) {
	o.ttft.Observe(ttft.Seconds())
	o.generation.Inc()
}

func (o *engineObserver) NextToken(itl time.Duration) {
	o.itl.Observe(itl.Seconds())
	o.generation.Inc()
}

func (o *engineObserver) Finished(f engine.Finish) {
	o.e2e.Observe(f.Total.Seconds())
	if f.Reason >= 0 && int(f.Reason) < len(o.finished) && o.finished[f.Reason] != nil {
		o.finished[f.Reason].Inc()
		return
	}
	o.success.WithLabelValues(f.Reason.String()).Inc()
}

// Engines is what the serving gauges read at scrape time: the engines serving now, by model
// name. *registry.Registry implements it.
type Engines interface {
	Engines() map[string]*engine.Engine
}

// WatchEngines adds the gauges read from src's engines at each scrape:
// modeld_num_requests_running, modeld_num_requests_waiting and modeld_kv_cache_usage_perc,
// labelled model_name; a model that is unloaded leaves them.
func (m *Metrics) WatchEngines(src Engines) {
	m.reg.MustRegister(&enginesCollector{s: m.serving, src: src})
}

type enginesCollector struct {
	s   *serving
	src Engines
}

func (c *enginesCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.s.running
	ch <- c.s.waiting
	ch <- c.s.kvUsage
}

func (c *enginesCollector) Collect(ch chan<- prometheus.Metric) {
	for name, e := range c.src.Engines() {
		st := e.Stats()
		ch <- prometheus.MustNewConstMetric(c.s.running, prometheus.GaugeValue, float64(st.Running), name)
		ch <- prometheus.MustNewConstMetric(c.s.waiting, prometheus.GaugeValue, float64(st.Waiting), name)
		usage := 0.0
		if total := st.KVBlocksUsed + st.KVBlocksFree; total > 0 {
			usage = float64(st.KVBlocksUsed) / float64(total)
		}
		ch <- prometheus.MustNewConstMetric(c.s.kvUsage, prometheus.GaugeValue, usage, name)
	}
}
