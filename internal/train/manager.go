package train

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/internal/registry"
	"github.com/modeld-dev/modeld/model"
	"github.com/modeld-dev/modeld/tokenizer"
)

// ErrQueueFull is returned by Create when MaxQueued jobs are waiting; a server maps it to
// ResourceExhausted.
var ErrQueueFull = errors.New("training queue full")

// Options configure a Manager.
type Options struct {
	// DataDir holds the jobs, their events and checkpoints, and uploaded datasets; data_paths
	// of a job must lie inside it.
	DataDir string
	// Registry is where base models are read and trained models are written.
	Registry *registry.Registry
	// Backend opens the backend a job trains on.
	Backend func() (backend.Backend, error)
	// MaxQueued is the most jobs waiting [16].
	MaxQueued int
	// Observer is told of every optimizer step, for metrics; nil observes nothing.
	Observer Observer
	Log      *slog.Logger
}

// Observer receives the optimizer steps of the running job, for metrics. Step runs on the
// runner's goroutine between steps: it must return at once, without calling the Manager.
type Observer interface {
	// Step is called after each optimizer step of a job; took is the step's time in the
	// runner (forward, backward and AdamW over its micro-batches).
	Step(took time.Duration)
}

type nopObserver struct{}

func (nopObserver) Step(time.Duration) {}

// Stats is a snapshot of the jobs, for metrics.
type Stats struct {
	// Jobs counts the jobs in each state.
	Jobs map[State]int
	// Running is the job training now (at most one); its ID is "" when none is.
	Running Job
	// Last is the running job's latest optimizer step; zero before its first.
	Last StepMetrics
}

// Manager runs training jobs one at a time, in creation order, and keeps their state, events
// and datasets under DataDir so that a restarted server reports them truthfully. Each job
// trains on a backend of its own; on the CPU it shares the cores with serving through the Go
// scheduler, so generation goes on (more slowly) while a job runs. Its methods are safe for
// concurrent use.
type Manager struct {
	opt  Options
	root *os.Root // DataDir, for data_paths that must not escape it

	mu    sync.Mutex
	jobs  map[string]*jobState
	order []string // ids in creation order
	queue []string
	wake  chan struct{}

	stop context.CancelFunc
	done chan struct{}
}

type jobState struct {
	job     Job
	events  []Event
	changed chan struct{} // closed and replaced when the job or its events change
	cancel  context.CancelFunc
	last    StepMetrics // the latest step while the job runs
}

// Open loads the jobs in opt.DataDir and starts the runner. A job that was running when the
// server stopped is marked failed (training resumes from nothing: start a new job); queued jobs
// run again in their order.
func Open(opt Options) (*Manager, error) {
	if opt.MaxQueued <= 0 {
		opt.MaxQueued = 16
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	if opt.Observer == nil {
		opt.Observer = nopObserver{}
	}
	for _, d := range []string{"jobs", "datasets"} {
		if err := os.MkdirAll(filepath.Join(opt.DataDir, d), 0o755); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
	}
	root, err := os.OpenRoot(opt.DataDir)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	m := &Manager{opt: opt, root: root, jobs: map[string]*jobState{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if err := m.loadJobs(); err != nil {
		root.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.stop = cancel
	go m.runner(ctx)
	return m, nil
}

// Close stops the runner: a running job is cancelled and recorded as failed by the restart
// rule when the manager opens again. It returns when the runner has stopped.
func (m *Manager) Close() {
	m.stop()
	<-m.done
	m.root.Close()
}

func (m *Manager) jobDir(id string) string { return filepath.Join(m.opt.DataDir, "jobs", id) }

func (m *Manager) loadJobs() error {
	entries, err := os.ReadDir(filepath.Join(m.opt.DataDir, "jobs"))
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	var loaded []*jobState
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		js, err := m.readJob(e.Name())
		if err != nil {
			m.opt.Log.Error("skipping an unreadable job", "job", e.Name(), "err", err)
			continue
		}
		loaded = append(loaded, js)
	}
	slices.SortFunc(loaded, func(a, b *jobState) int { return a.job.Created.Compare(b.job.Created) })
	for _, js := range loaded {
		m.jobs[js.job.ID] = js
		m.order = append(m.order, js.job.ID)
		switch js.job.State {
		case Running:
			m.finish(js, Failed, fmt.Sprintf("interrupted by a server restart at step %d of %d", js.job.Step, js.job.TotalSteps))
		case Queued:
			m.queue = append(m.queue, js.job.ID)
		}
	}
	return nil
}

func (m *Manager) readJob(id string) (*jobState, error) {
	js := &jobState{changed: make(chan struct{})}
	data, err := os.ReadFile(filepath.Join(m.jobDir(id), "job.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &js.job); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(m.jobDir(id), "events.jsonl"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			break // a torn last line from a crash: the events before it stand
		}
		js.events = append(js.events, ev)
	}
	return js, nil
}

// persist writes the job's record atomically. Called with m.mu held.
func (m *Manager) persist(js *jobState) {
	data, err := json.MarshalIndent(js.job, "", "  ")
	if err == nil {
		err = model.WriteFileAtomic(filepath.Join(m.jobDir(js.job.ID), "job.json"), func(w *bufio.Writer) error {
			_, err := w.Write(data)
			return err
		})
	}
	if err != nil {
		m.opt.Log.Error("cannot save job", "job", js.job.ID, "err", err)
	}
}

// emit appends an event to the job's history and wakes its watchers. Called with m.mu held.
func (m *Manager) emit(js *jobState, ev Event) {
	ev.Seq = uint64(len(js.events)) + 1
	ev.Time = time.Now()
	js.events = append(js.events, ev)
	if line, err := json.Marshal(ev); err == nil {
		f, err := os.OpenFile(filepath.Join(m.jobDir(js.job.ID), "events.jsonl"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			_, err = f.Write(append(line, '\n'))
			f.Close()
		}
		if err != nil {
			m.opt.Log.Error("cannot save job event", "job", js.job.ID, "err", err)
		}
	}
	close(js.changed)
	js.changed = make(chan struct{})
}

// finish ends a job in state with an error message (may be ""). Called with m.mu held.
func (m *Manager) finish(js *jobState, state State, msg string) {
	js.job.State, js.job.Error, js.job.Finished = state, msg, time.Now()
	js.cancel = nil
	if msg != "" {
		m.emit(js, Event{Error: msg})
	}
	m.emit(js, Event{State: state})
	m.persist(js)
}

func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// prepared is what a job needs to run, checked at creation and built again at the start.
type prepared struct {
	cfg      model.Config
	tok      *tokenizer.Tokenizer
	tokFS    fs.FS // the tokenizer files the output ships; nil if none
	hyper    Hyperparameters
	train    []Example
	eval     []Example
	baseDir  string
	stepsPer int // optimizer steps per epoch
	total    int
}

// prepare resolves the job's models, reads and packs its datasets, and computes its steps.
// Errors wrap ErrInvalidJob, ErrInvalidData or fs.ErrNotExist.
func (m *Manager) prepare(ctx context.Context, s Spec) (*prepared, error) {
	p := &prepared{}
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("train: %w: %s", ErrInvalidJob, fmt.Sprintf(format, args...))
	}
	switch {
	case s.BaseModel != "" && s.FromScratch != nil:
		return nil, invalid("give base_model or from_scratch, not both")
	case s.BaseModel != "":
		info, err := m.opt.Registry.Get(s.BaseModel)
		if err != nil {
			return nil, err
		}
		if info.Err != "" {
			return nil, invalid("base model %q: %s", s.BaseModel, info.Err)
		}
		p.cfg, p.baseDir = info.Config, info.Path
		if info.HasTokenizer {
			p.tokFS = os.DirFS(info.Path)
		}
	case s.FromScratch != nil:
		if err := s.FromScratch.Validate(); err != nil {
			return nil, invalid("from_scratch: %v", err)
		}
		p.cfg = *s.FromScratch
	default:
		return nil, invalid("base_model or from_scratch is required")
	}
	switch s.TokenizerModel {
	case "":
	case tokenizer.ByteLevelName:
		p.tokFS = tokenizer.ByteLevelFS()
	default:
		info, err := m.opt.Registry.Get(s.TokenizerModel)
		if err != nil {
			return nil, err
		}
		if !info.HasTokenizer {
			return nil, invalid("tokenizer_model %q has no tokenizer files", s.TokenizerModel)
		}
		p.tokFS = os.DirFS(info.Path)
	}
	if p.tokFS != nil {
		tok, err := tokenizer.Load(p.tokFS)
		if err != nil {
			return nil, invalid("tokenizer: %v", err)
		}
		if tok.VocabSize() > p.cfg.VocabSize {
			return nil, invalid("the tokenizer has %d tokens, above the model's vocab_size %d", tok.VocabSize(), p.cfg.VocabSize)
		}
		p.tok = tok
	}
	if err := registry.ValidName(s.OutputModel); err != nil {
		return nil, fmt.Errorf("train: %w: output_model: %w", ErrInvalidJob, err)
	}
	if _, err := m.opt.Registry.Get(s.OutputModel); err == nil {
		return nil, fmt.Errorf("train: %w: output_model %q: %w", ErrInvalidJob, s.OutputModel, registry.ErrExists)
	}
	h, err := s.Hyper.resolve(p.cfg)
	if err != nil {
		return nil, err
	}
	p.hyper = h
	if len(s.DatasetIDs)+len(s.DataPaths) == 0 {
		return nil, invalid("no training data: give dataset_ids or data_paths")
	}
	if s.EvalSplit < 0 || s.EvalSplit >= 1 || math.IsNaN(s.EvalSplit) {
		return nil, invalid("eval_split = %v, want [0, 1)", s.EvalSplit)
	}
	pad := int32(p.cfg.EOSTokenID)
	if p.train, err = m.examples(ctx, s.DatasetIDs, s.DataPaths, p, pad); err != nil {
		return nil, err
	}
	if len(s.EvalDatasetIDs)+len(s.EvalDataPaths) > 0 {
		if p.eval, err = m.examples(ctx, s.EvalDatasetIDs, s.EvalDataPaths, p, pad); err != nil {
			return nil, err
		}
	} else if s.EvalSplit > 0 {
		if p.train, p.eval, err = SplitExamples(p.train, s.EvalSplit, h.Seed); err != nil {
			return nil, fmt.Errorf("train: %w: eval_split: %w", ErrInvalidJob, err)
		}
	}
	micro := (len(p.train) + h.BatchSize - 1) / h.BatchSize
	p.stepsPer = max(1, micro/h.GradientAccumulationSteps)
	p.total = h.MaxSteps
	if p.total == 0 {
		p.total = h.Epochs * p.stepsPer
	}
	if h.WarmupSteps > p.total {
		return nil, invalid("warmup_steps = %d is above the %d steps of the job", h.WarmupSteps, p.total)
	}
	return p, nil
}

// examples reads and packs the documents of datasets and data paths.
func (m *Manager) examples(ctx context.Context, ids, paths []string, p *prepared, pad int32) ([]Example, error) {
	var docs [][]int32
	var labels []string
	opts := ReadOptions{Tokenizer: p.tok, VocabSize: p.cfg.VocabSize}
	read := func(fsys fs.FS, name, label string, f Format) error {
		o := opts
		o.Format = f
		file, err := fsys.Open(name)
		if err != nil {
			return fmt.Errorf("train: %w: %s: %w", ErrInvalidJob, label, err)
		}
		defer file.Close()
		d, err := ReadDocuments(ctx, file, label, o)
		if err != nil {
			return err
		}
		docs = append(docs, d...)
		labels = append(labels, label)
		return nil
	}
	for _, id := range ids {
		meta, err := m.dataset(id)
		if err != nil {
			return nil, err
		}
		if err := read(os.DirFS(m.datasetDir(id)), "data", meta.Name, meta.Format); err != nil {
			return nil, err
		}
	}
	for _, path := range paths {
		if !filepath.IsLocal(path) {
			return nil, fmt.Errorf("train: %w: data path %q is outside the data directory", ErrInvalidJob, path)
		}
		if err := read(m.root.FS(), filepath.ToSlash(path), path, FormatAuto); err != nil {
			return nil, err
		}
	}
	ex, err := Examples(docs, p.hyper.SeqLen, p.hyper.Packing, pad)
	if de := (*DataError)(nil); errors.As(err, &de) && de.File == "" {
		de.File = strings.Join(labels, ", ")
	}
	return ex, err
}

// Create validates and queues a job. Its datasets are read in full now, so bad data fails here
// (ErrInvalidData naming file and line) rather than in the job.
func (m *Manager) Create(ctx context.Context, s Spec) (Job, error) {
	p, err := m.prepare(ctx, s)
	if err != nil {
		return Job{}, err
	}
	s.Hyper = p.hyper
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.queue) >= m.opt.MaxQueued {
		return Job{}, fmt.Errorf("train: %w: %d jobs are waiting", ErrQueueFull, len(m.queue))
	}
	for _, js := range m.jobs {
		if !js.job.State.ended() && js.job.Spec.OutputModel == s.OutputModel {
			return Job{}, fmt.Errorf("train: %w: job %s already trains output_model %q", ErrInvalidJob, js.job.ID, s.OutputModel)
		}
	}
	js := &jobState{changed: make(chan struct{}), job: Job{ID: newID("ftjob-"), Spec: s, State: Queued, Created: time.Now(), TotalSteps: p.total}}
	if err := os.MkdirAll(m.jobDir(js.job.ID), 0o755); err != nil {
		return Job{}, fmt.Errorf("train: %w", err)
	}
	m.jobs[js.job.ID] = js
	m.order = append(m.order, js.job.ID)
	m.queue = append(m.queue, js.job.ID)
	m.persist(js)
	m.emit(js, Event{State: Queued})
	select {
	case m.wake <- struct{}{}:
	default:
	}
	m.opt.Log.Info("training job queued", "job", js.job.ID, "output_model", s.OutputModel, "steps", p.total)
	return js.job, nil
}

// Get returns the job id.
func (m *Manager) Get(id string) (Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	js, ok := m.jobs[id]
	if !ok {
		return Job{}, fmt.Errorf("train: %w: %q", ErrJobNotFound, id)
	}
	return js.job, nil
}

// List returns up to limit jobs after the job named by after ("" for the first), newest first,
// and the id to continue from ("" at the end).
func (m *Manager) List(after string, limit int) ([]Job, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := len(m.order) - 1
	if after != "" {
		i = slices.Index(m.order, after) - 1
		if i < -1 {
			i = -1
		}
	}
	var out []Job
	for ; i >= 0 && len(out) < limit; i-- {
		out = append(out, m.jobs[m.order[i]].job)
	}
	if i >= 0 && len(out) > 0 {
		return out, out[len(out)-1].ID
	}
	return out, ""
}

// Stats counts the jobs by state and describes the running one.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := Stats{Jobs: map[State]int{}}
	for _, js := range m.jobs {
		st.Jobs[js.job.State]++
		if js.job.State == Running {
			st.Running, st.Last = js.job, js.last
		}
	}
	return st
}

// Cancel stops a queued or running job; a running one stops within one step. It fails with
// ErrNotCancellable for a job that already ended.
func (m *Manager) Cancel(id string) (Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	js, ok := m.jobs[id]
	if !ok {
		return Job{}, fmt.Errorf("train: %w: %q", ErrJobNotFound, id)
	}
	switch js.job.State {
	case Queued:
		m.queue = slices.DeleteFunc(m.queue, func(q string) bool { return q == id })
		m.finish(js, Cancelled, "")
	case Running:
		js.cancel()
	default:
		return js.job, fmt.Errorf("train: job %s is %s: %w", id, js.job.State, ErrNotCancellable)
	}
	return js.job, nil
}

// Watch calls send for each event of the job after sequence after, as they happen, until the
// job has ended and every event was sent, send fails, or ctx ends.
func (m *Manager) Watch(ctx context.Context, id string, after uint64, send func(Event) error) error {
	for {
		m.mu.Lock()
		js, ok := m.jobs[id]
		if !ok {
			m.mu.Unlock()
			return fmt.Errorf("train: %w: %q", ErrJobNotFound, id)
		}
		pending := slices.Clone(js.events[min(int(after), len(js.events)):])
		ended, changed := js.job.State.ended(), js.changed
		m.mu.Unlock()
		for _, ev := range pending {
			if err := send(ev); err != nil {
				return err
			}
			after = ev.Seq
		}
		if ended && len(pending) == 0 {
			return nil
		}
		if len(pending) > 0 {
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (m *Manager) runner(ctx context.Context) {
	defer close(m.done)
	for {
		m.mu.Lock()
		var js *jobState
		if len(m.queue) > 0 {
			js = m.jobs[m.queue[0]]
			m.queue = m.queue[1:]
		}
		m.mu.Unlock()
		if js == nil {
			select {
			case <-ctx.Done():
				return
			case <-m.wake:
				continue
			}
		}
		m.run(ctx, js)
		if ctx.Err() != nil {
			return
		}
	}
}

// run trains one job to its end.
func (m *Manager) run(parent context.Context, js *jobState) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	m.mu.Lock()
	js.cancel = cancel
	js.job.State, js.job.Started = Running, time.Now()
	m.emit(js, Event{State: Running})
	m.persist(js)
	spec := js.job.Spec
	m.mu.Unlock()

	err := m.train(ctx, js, spec)
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case err == nil:
		m.finish(js, Succeeded, "")
		m.opt.Log.Info("training job succeeded", "job", js.job.ID, "output_model", spec.OutputModel)
	case parent.Err() != nil:
		// The server is stopping: leave the job running on disk, so the next start reports it
		// as interrupted.
		m.opt.Log.Warn("training job interrupted by shutdown", "job", js.job.ID)
	case ctx.Err() != nil:
		m.finish(js, Cancelled, "")
	default:
		m.finish(js, Failed, err.Error())
		m.opt.Log.Error("training job failed", "job", js.job.ID, "err", err)
	}
}

// train runs the steps of a job and publishes the output model.
func (m *Manager) train(ctx context.Context, js *jobState, spec Spec) error {
	p, err := m.prepare(ctx, spec)
	if err != nil {
		return err
	}
	h := p.hyper
	b, err := m.opt.Backend()
	if err != nil {
		return err
	}
	defer b.Close()
	var mdl *model.Model
	if p.baseDir != "" {
		mdl, err = model.Load(ctx, b, os.DirFS(p.baseDir))
	} else {
		mdl, err = model.New(b, p.cfg)
		if err == nil {
			err = mdl.Init(ctx, h.Seed)
		}
	}
	if err != nil {
		return err
	}
	defer mdl.Close()
	tr, err := mdl.NewTrainer(h.BatchSize, h.SeqLen)
	if err != nil {
		return err
	}
	defer tr.Close()
	loader, err := NewLoader(p.train, h.BatchSize, h.Shuffle, h.Seed)
	if err != nil {
		return err
	}
	opt := model.Optimizer{Beta1: h.AdamBeta1, Beta2: h.AdamBeta2, Eps: h.AdamEpsilon, WeightDecay: h.WeightDecay, MaxGradNorm: h.MaxGradNorm}
	tokensPerStep := float64(h.BatchSize * h.SeqLen * h.GradientAccumulationSteps)
	start := time.Now()
	for step := 1; step <= p.total; step++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		t0 := time.Now()
		opt.LearningRate = learningRate(h, step-1, p.total)
		tr.ZeroGrad()
		var loss float64
		var epoch float64
		for range h.GradientAccumulationSteps {
			inputs, targets, e := loader.Next()
			epoch = e
			l, err := tr.Forward(ctx, inputs, targets)
			if err != nil {
				return fmt.Errorf("step %d: %w", step, err)
			}
			if err := tr.Backward(ctx, 1/float32(h.GradientAccumulationSteps)); err != nil {
				return fmt.Errorf("step %d: %w", step, err)
			}
			loss += l / float64(h.GradientAccumulationSteps)
		}
		norm, err := tr.Step(ctx, opt)
		if err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
		took, elapsed := time.Since(t0), time.Since(start)
		l32 := float32(loss)
		sm := StepMetrics{Step: step, TotalSteps: p.total, Epoch: epoch, Loss: l32,
			LearningRate: opt.LearningRate, GradNorm: float32(norm),
			TokensPerSecond: tokensPerStep / took.Seconds(),
			ETA:             time.Duration(float64(elapsed) / float64(step) * float64(p.total-step))}
		m.mu.Lock()
		js.job.Step = step
		js.job.Loss = &l32
		js.last = sm
		if step%h.LogEvery == 0 || step == p.total {
			m.emit(js, Event{Step: &sm})
			m.persist(js)
		}
		m.mu.Unlock()
		m.opt.Observer.Step(took)
		if len(p.eval) > 0 && ((h.EvalEvery > 0 && step%h.EvalEvery == 0) || step == p.total) {
			evalLoss, err := evaluate(ctx, tr, p.eval, h.BatchSize, h.SeqLen)
			if err != nil {
				return fmt.Errorf("eval at step %d: %w", step, err)
			}
			m.mu.Lock()
			m.emit(js, Event{Eval: &EvalMetrics{Step: step, EvalLoss: float32(evalLoss), Perplexity: math.Exp(evalLoss)}})
			m.mu.Unlock()
		}
		if h.SaveEvery > 0 && step%h.SaveEvery == 0 && step != p.total {
			dir := filepath.Join(m.jobDir(js.job.ID), fmt.Sprintf("checkpoint-%d", step))
			if err := saveFolder(ctx, mdl, p.tokFS, dir); err != nil {
				return fmt.Errorf("checkpoint at step %d: %w", step, err)
			}
			m.mu.Lock()
			m.emit(js, Event{Checkpoint: &Checkpoint{Step: step, Path: dir}})
			m.mu.Unlock()
		}
	}
	return m.publish(ctx, js, mdl, p, spec.OutputModel)
}

// evaluate returns the mean loss over the examples, in batches of B (the last one padded with
// ignored targets).
func evaluate(ctx context.Context, tr *model.Trainer, ex []Example, B, T int) (float64, error) {
	var sum float64
	var count int
	losses := make([]float32, B*T)
	for i := 0; i < len(ex); i += B {
		inputs := make([]int32, B*T)
		targets := make([]int32, B*T)
		for j := range targets {
			targets[j] = backend.IgnoreIndex
		}
		for r := 0; r < B && i+r < len(ex); r++ {
			copy(inputs[r*T:], ex[i+r].Inputs)
			copy(targets[r*T:], ex[i+r].Targets)
		}
		if _, err := tr.Forward(ctx, inputs, targets); err != nil {
			return 0, err
		}
		tr.Losses(losses)
		for j, t := range targets {
			if t != backend.IgnoreIndex {
				sum += float64(losses[j])
				count++
			}
		}
	}
	return sum / float64(max(count, 1)), nil
}

// tokenizerFiles are copied from the tokenizer's folder into every model folder a job writes.
var tokenizerFiles = []string{"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}

// saveFolder writes the model and the tokenizer files of tokFS (nil: none) into dir.
func saveFolder(ctx context.Context, mdl *model.Model, tokFS fs.FS, dir string) error {
	if err := mdl.Save(ctx, dir); err != nil {
		return err
	}
	if tokFS == nil {
		return nil
	}
	for _, f := range tokenizerFiles {
		src, err := tokFS.Open(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		err = model.WriteFileAtomic(filepath.Join(dir, f), func(w *bufio.Writer) error {
			_, err := io.Copy(w, src)
			return err
		})
		src.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// publish writes the trained model into the models directory under name, through a temporary
// folder renamed into place, so that it appears whole or not at all.
func (m *Manager) publish(ctx context.Context, js *jobState, mdl *model.Model, p *prepared, name string) error {
	dst, err := m.opt.Registry.Path(name)
	if err != nil {
		return err
	}
	tmp := filepath.Join(m.opt.Registry.Dir(), ".train-"+js.job.ID)
	os.RemoveAll(tmp)
	if err := saveFolder(ctx, mdl, p.tokFS, tmp); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("saving the model: %w", err)
	}
	if _, err := os.Stat(dst); err == nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("output_model %q appeared while the job ran: %w", name, registry.ErrExists)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("publishing the model: %w", err)
	}
	return nil
}
