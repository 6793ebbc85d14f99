package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modeld-dev/modeld/internal/train"
)

// stepBuckets are the bounds of modeld_train_step_seconds, in seconds: from the milliseconds of
// a tiny model's step to the minutes of a large one on the CPU.
var stepBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500}

// jobStates are the values of modeld_train_jobs' state label, each reported even at zero.
var jobStates = []train.State{train.Queued, train.Running, train.Succeeded, train.Failed, train.Cancelled}

// training holds the metrics of the training jobs.
//
// Jobs run one at a time, so the step histogram has no job label: its rate over a window
// describes the job running in it, and a label per job would leave a set of buckets behind for
// every job ever run. The loss and tokens/s gauges are labelled job_id and output_model, but
// only the running job has them (they are read at scrape time), so there is at most one series
// of each and a finished job's series end with it.
type training struct {
	step prometheus.Histogram

	// Read from the manager at scrape time.
	jobs, loss, tokensPerSecond *prometheus.Desc
}

func newTraining() *training {
	return &training{
		step: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "modeld_train_step_seconds",
			Help:    "Time of one optimizer step of the running job (forward, backward and AdamW over its micro-batches), in seconds.",
			Buckets: stepBuckets}),
		jobs: prometheus.NewDesc("modeld_train_jobs",
			"Training jobs by state: queued, running, succeeded, failed or cancelled.", []string{"state"}, nil),
		loss: prometheus.NewDesc("modeld_train_loss",
			"Training loss of the running job's latest step (mean cross-entropy over its tokens, in nats).", []string{"job_id", "output_model"}, nil),
		tokensPerSecond: prometheus.NewDesc("modeld_train_tokens_per_second",
			"Tokens per second of the running job's latest step (batch size x sequence length x accumulation steps / step time).", []string{"job_id", "output_model"}, nil),
	}
}

func (t *training) register(reg prometheus.Registerer) { reg.MustRegister(t.step) }

// TrainObserver returns the observer of the training manager: pass it as
// train.Options.Observer.
func (m *Metrics) TrainObserver() train.Observer { return stepObserver{m.train.step} }

type stepObserver struct{ h prometheus.Histogram }

func (o stepObserver) Step(took time.Duration) { o.h.Observe(took.Seconds()) }

// Jobs is what the training gauges read at scrape time. *train.Manager implements it.
type Jobs interface {
	Stats() train.Stats
}

// WatchJobs adds the gauges read from src at each scrape: modeld_train_jobs by state, and
// modeld_train_loss and modeld_train_tokens_per_second of the running job, once it has made
// a step.
func (m *Metrics) WatchJobs(src Jobs) {
	m.reg.MustRegister(&jobsCollector{t: m.train, src: src})
}

type jobsCollector struct {
	t   *training
	src Jobs
}

func (c *jobsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.t.jobs
	ch <- c.t.loss
	ch <- c.t.tokensPerSecond
}

func (c *jobsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	for _, s := range jobStates {
		ch <- prometheus.MustNewConstMetric(c.t.jobs, prometheus.GaugeValue, float64(st.Jobs[s]), string(s))
	}
	if j := st.Running; j.ID != "" && st.Last.Step > 0 {
		ch <- prometheus.MustNewConstMetric(c.t.loss, prometheus.GaugeValue, float64(st.Last.Loss), j.ID, j.Spec.OutputModel)
		ch <- prometheus.MustNewConstMetric(c.t.tokensPerSecond, prometheus.GaugeValue, st.Last.TokensPerSecond, j.ID, j.Spec.OutputModel)
	}
}
