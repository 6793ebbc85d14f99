package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"

	modeldv1 "github.com/modeld-dev/modeld/proto/modeld/v1"
)

const jobsAbout = `Manage the server's training jobs.

  list            table of the jobs, newest first: id, state, base model, output model,
                  step/total, last training loss, creation time (the default action);
                  flags --page-size, --page-token
  get ID          everything the server knows about a job, hyperparameters included
  watch ID        follow a job as train does, from its first event (or after --after-sequence)
                  until it ends; exit 0 if it succeeds, 1 if it fails or is cancelled
  cancel ID       stop a queued or running job; a running one stops at the end of its step

With --output json, list, get and cancel print their response as one protojson line, and watch
one line per WatchTrainingJobResponse.`

// jobs implements "modelcli jobs": the action is the first argument.
func (c *cli) jobs(ctx context.Context, args []string) error {
	fs := c.flagSet("jobs", "list [--page-size N] [--page-token T]|get ID|watch ID [--after-sequence N]|cancel ID", jobsAbout)
	if err := fs.Parse(args); err != nil {
		return parseError(err)
	}
	action, args := "list", fs.Args()
	if len(args) > 0 {
		action, args = args[0], args[1:]
	}
	switch action {
	case "list", "get", "watch", "cancel":
	default:
		return usagef("jobs: unknown action %q: want list, get, watch or cancel", action)
	}

	fs = c.flagSet("jobs "+action, map[string]string{
		"list": "[--page-size N] [--page-token T]", "get": "ID", "watch": "ID [--after-sequence N]", "cancel": "ID",
	}[action], jobsAbout)
	var pageSize uint32
	fs.Var(uint32Flag{&pageSize}, "page-size", "list: jobs per page, up to 1000 (0: the server's default)")
	pageToken := fs.String("page-token", "", "list: the `token` printed after the previous page")
	afterSeq := fs.Uint64("after-sequence", 0, "watch: show only the events after this sequence number")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	want := 1
	if action == "list" {
		want = 0
	}
	if len(pos) != want {
		return usagef("jobs %s: want %d argument(s), got %d; run 'modelcli jobs -h'", action, want, len(pos))
	}
	if action != "list" && (pageSize != 0 || *pageToken != "") {
		return usagef("jobs %s: --page-size and --page-token are for list", action)
	}
	if action != "watch" && *afterSeq != 0 {
		return usagef("jobs %s: --after-sequence is for watch", action)
	}

	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ts := modeldv1.NewTrainServiceClient(conn)
	if action == "watch" {
		return c.follow(ctx, ts, pos[0], *afterSeq)
	}
	ctx, cancel := c.callContext(ctx)
	defer cancel()

	switch action {
	case "list":
		resp, err := ts.ListTrainingJobs(ctx, &modeldv1.ListTrainingJobsRequest{PageSize: pageSize, PageToken: *pageToken})
		if err != nil {
			return err
		}
		if c.json() {
			return c.printJSON(resp)
		}
		if err := printJobTable(c.stdout, resp.GetJobs()); err != nil {
			return err
		}
		if t := resp.GetNextPageToken(); t != "" {
			fmt.Fprintf(c.stderr, "more jobs: modelcli jobs list --page-token %s\n", t)
		}
		return nil
	case "get":
		resp, err := ts.GetTrainingJob(ctx, &modeldv1.GetTrainingJobRequest{Id: pos[0]})
		if err != nil {
			return err
		}
		if c.json() {
			return c.printJSON(resp)
		}
		return printJob(c.stdout, resp.GetJob())
	}
	resp, err := ts.CancelTrainingJob(ctx, &modeldv1.CancelTrainingJobRequest{Id: pos[0]})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	job := resp.GetJob()
	note := ""
	if job.GetState() == modeldv1.JobState_JOB_STATE_RUNNING {
		note = " (cancelling: it stops at the end of its current step)"
	}
	_, err = fmt.Fprintf(c.stdout, "%s: %s%s\n", job.GetId(), jobStateName(job.GetState()), note)
	return err
}

// follow prints the events of job id after sequence after until the job ends, then returns nil
// if it succeeded and an error saying how it ended otherwise. In text mode a summary line
// follows the events. If ctx is cancelled (Ctrl-C), it stops following and says how to resume;
// the job goes on.
func (c *cli) follow(ctx context.Context, ts modeldv1.TrainServiceClient, id string, after uint64) error {
	callCtx, cancel := c.callContext(ctx)
	defer cancel()
	stream, err := ts.WatchTrainingJob(callCtx, &modeldv1.WatchTrainingJobRequest{Id: id, AfterSequence: after})
	if err != nil {
		return err
	}
	p := &eventPrinter{w: c.stdout, tty: !c.json() && isTerminal(c.stdout)}
	defer p.close()
	for received := false; ; received = true {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p.close()
			switch {
			case ctx.Err() != nil:
				return errors.New("job continues on the server: modelcli jobs watch " + id)
			case received:
				return fmt.Errorf("watching %s (resume with modelcli jobs watch %s --after-sequence %d): %w", id, id, after, err)
			}
			return err
		}
		after = resp.GetEvent().GetSequence()
		if c.json() {
			err = c.printJSON(resp)
		} else {
			err = p.event(resp.GetEvent())
		}
		if err != nil {
			return err
		}
	}
	p.close()

	// The job's record says how it ended, even when --after-sequence skipped the final events.
	getCtx, getCancel := c.callContext(ctx)
	defer getCancel()
	resp, err := ts.GetTrainingJob(getCtx, &modeldv1.GetTrainingJobRequest{Id: id})
	if err != nil {
		return err
	}
	job := resp.GetJob()
	switch job.GetState() {
	case modeldv1.JobState_JOB_STATE_SUCCEEDED:
		if c.json() {
			return nil
		}
		took := ""
		if job.GetStartTime() != nil && job.GetFinishTime() != nil {
			took = " in " + fmtDuration(job.GetFinishTime().AsTime().Sub(job.GetStartTime().AsTime()))
		}
		_, err := fmt.Fprintf(c.stdout, "job %s succeeded: %d steps%s, final loss %s; model %s is available\n",
			id, job.GetStep(), took, fmtLoss(job), job.GetOutputModel())
		return err
	case modeldv1.JobState_JOB_STATE_FAILED:
		return fmt.Errorf("job %s failed at step %d: %s", id, job.GetStep(), job.GetError())
	case modeldv1.JobState_JOB_STATE_CANCELLED:
		return fmt.Errorf("job %s was cancelled at step %d", id, job.GetStep())
	}
	return fmt.Errorf("the server ended the watch of job %s while it is %s", id, jobStateName(job.GetState()))
}

// eventPrinter writes a job's events in text mode, one line per event. On a terminal the steps
// drive a progress bar instead, and the other events are printed above it.
type eventPrinter struct {
	w   io.Writer
	tty bool
	bar *progressbar.ProgressBar // on a terminal, from the first step until close
}

func (p *eventPrinter) event(ev *modeldv1.TrainingEvent) error {
	if s := ev.GetStep(); s != nil && p.tty {
		return p.step(s)
	}
	line := eventLine(ev)
	if p.bar == nil || p.bar.IsFinished() {
		_, err := fmt.Fprintln(p.w, line)
		return err
	}
	if err := p.bar.Clear(); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(p.w, line); err != nil {
		return err
	}
	return p.bar.RenderBlank()
}

// step moves the progress bar to s.
func (p *eventPrinter) step(s *modeldv1.StepMetrics) error {
	total := int64(max(s.GetTotalSteps(), s.GetStep(), 1))
	if p.bar == nil {
		p.bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(p.w), progressbar.OptionFullWidth(),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(false), progressbar.OptionShowDescriptionAtLineEnd(),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }))
	} else if p.bar.GetMax64() != total {
		p.bar.ChangeMax64(total)
	}
	p.bar.Describe(stepMetrics(s))
	return p.bar.Set64(int64(s.GetStep()))
}

// close ends the progress bar's line, if it is not finished.
func (p *eventPrinter) close() {
	if p.bar != nil && !p.bar.IsFinished() {
		p.bar.Exit()
	}
	p.bar = nil
}

// eventLine is the text form of an event.
func eventLine(ev *modeldv1.TrainingEvent) string {
	switch k := ev.GetKind().(type) {
	case *modeldv1.TrainingEvent_StateChange:
		return "state " + jobStateName(k.StateChange.GetState())
	case *modeldv1.TrainingEvent_Step:
		return fmt.Sprintf("step %d/%d  %s", k.Step.GetStep(), k.Step.GetTotalSteps(), stepMetrics(k.Step))
	case *modeldv1.TrainingEvent_Eval:
		return fmt.Sprintf("eval step %d  eval_loss %.4f  perplexity %.4g", k.Eval.GetStep(), k.Eval.GetEvalLoss(), k.Eval.GetPerplexity())
	case *modeldv1.TrainingEvent_Checkpoint:
		return fmt.Sprintf("checkpoint step %d  %s", k.Checkpoint.GetStep(), k.Checkpoint.GetPath())
	case *modeldv1.TrainingEvent_Error:
		return "error " + k.Error.GetMessage()
	}
	return fmt.Sprintf("event %d of an unknown kind", ev.GetSequence())
}

// stepMetrics is the metrics of a step: loss, learning rate, gradient norm, throughput and ETA.
func stepMetrics(s *modeldv1.StepMetrics) string {
	return fmt.Sprintf("loss %.4f  lr %.3g  grad_norm %.3g  %s tok/s  eta %s", s.GetLoss(), s.GetLearningRate(),
		s.GetGradNorm(), fmtCount(uint64(s.GetTokensPerSecond())), fmtETA(s.GetEta().AsDuration()))
}

// fmtETA rounds a time to come to what a person reads: 0s, 2.4s, 1m5s.
func fmtETA(d time.Duration) string {
	if d < time.Minute {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// printJobTable writes the jobs as a table.
func printJobTable(w io.Writer, jobs []*modeldv1.TrainingJob) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tBASE\tOUTPUT\tSTEP\tLOSS\tCREATED")
	for _, j := range jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.GetId(), jobStateName(j.GetState()), jobBase(j), j.GetOutputModel(),
			fmtSteps(j), fmtLoss(j), j.GetCreateTime().AsTime().Local().Format(time.DateTime))
	}
	return tw.Flush()
}

// printJob writes everything about a job, one field a line.
func printJob(w io.Writer, j *modeldv1.TrainingJob) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\n", j.GetId())
	fmt.Fprintf(tw, "state:\t%s\n", jobStateName(j.GetState()))
	if j.GetError() != "" {
		fmt.Fprintf(tw, "error:\t%s\n", j.GetError())
	}
	fmt.Fprintf(tw, "base:\t%s\n", jobBase(j))
	if t := j.GetTokenizerModel(); t != "" {
		fmt.Fprintf(tw, "tokenizer:\t%s\n", t)
	}
	fmt.Fprintf(tw, "output model:\t%s\n", j.GetOutputModel())
	for _, l := range []struct {
		name string
		v    []string
	}{{"datasets", j.GetDatasetIds()}, {"data paths", j.GetDataPaths()}, {"eval datasets", j.GetEvalDatasetIds()}, {"eval data paths", j.GetEvalDataPaths()}} {
		if len(l.v) > 0 {
			fmt.Fprintf(tw, "%s:\t%s\n", l.name, strings.Join(l.v, " "))
		}
	}
	if s := j.GetEvalSplit(); s > 0 {
		fmt.Fprintf(tw, "eval split:\t%g\n", s)
	}
	fmt.Fprintf(tw, "step:\t%s\n", fmtSteps(j))
	fmt.Fprintf(tw, "loss:\t%s\n", fmtLoss(j))
	fmt.Fprintf(tw, "hyperparameters:\t%s\n", fmtHyperparameters(j.GetHyperparameters()))
	for _, t := range []struct {
		name string
		ok   bool
		t    time.Time
	}{{"created", j.GetCreateTime() != nil, j.GetCreateTime().AsTime()}, {"started", j.GetStartTime() != nil, j.GetStartTime().AsTime()},
		{"finished", j.GetFinishTime() != nil, j.GetFinishTime().AsTime()}} {
		if t.ok {
			fmt.Fprintf(tw, "%s:\t%s\n", t.name, t.t.Local().Format(time.RFC3339))
		}
	}
	return tw.Flush()
}

// fmtHyperparameters writes the set fields of h as key=value pairs with the proto field names.
func fmtHyperparameters(h *modeldv1.Hyperparameters) string {
	if h == nil {
		return "defaults"
	}
	var parts []string
	add := func(name string, v any) { parts = append(parts, fmt.Sprintf("%s=%v", name, v)) }
	if h.Epochs != nil {
		add("epochs", h.GetEpochs())
	}
	if h.MaxSteps != nil {
		add("max_steps", h.GetMaxSteps())
	}
	add("batch_size", h.GetBatchSize())
	add("seq_len", h.GetSeqLen())
	if h.LearningRate != nil {
		add("learning_rate", h.GetLearningRate())
	}
	add("lr_scheduler", enumName(h.GetLrScheduler().String(), "LR_SCHEDULER_"))
	add("warmup_steps", h.GetWarmupSteps())
	for _, f := range []struct {
		name string
		v    *float64
	}{{"weight_decay", h.WeightDecay}, {"adam_beta1", h.AdamBeta1}, {"adam_beta2", h.AdamBeta2}, {"adam_epsilon", h.AdamEpsilon}, {"max_grad_norm", h.MaxGradNorm}} {
		if f.v != nil {
			add(f.name, *f.v)
		}
	}
	add("gradient_accumulation_steps", h.GetGradientAccumulationSteps())
	if h.Seed != nil {
		add("seed", h.GetSeed())
	}
	if h.Shuffle != nil {
		add("shuffle", h.GetShuffle())
	}
	add("eval_every", h.GetEvalEvery())
	add("save_every", h.GetSaveEvery())
	add("log_every", h.GetLogEvery())
	add("packing", enumName(h.GetPacking().String(), "PACKING_"))
	return strings.Join(parts, " ")
}

// jobBase is what a job starts from: the base model's name, or "scratch:LAYERS/EMBD".
func jobBase(j *modeldv1.TrainingJob) string {
	if c := j.GetFromScratch(); c != nil {
		return fmt.Sprintf("scratch:%d/%d", c.GetNLayer(), c.GetNEmbd())
	}
	return j.GetBaseModel()
}

// fmtSteps is a job's progress, "12/20", with "?" for a total not yet known.
func fmtSteps(j *modeldv1.TrainingJob) string {
	if j.GetTotalSteps() == 0 {
		return fmt.Sprintf("%d/?", j.GetStep())
	}
	return fmt.Sprintf("%d/%d", j.GetStep(), j.GetTotalSteps())
}

// fmtLoss is a job's last training loss, or "-" before its first step.
func fmtLoss(j *modeldv1.TrainingJob) string {
	if j.Loss == nil {
		return "-"
	}
	return fmt.Sprintf("%.4f", j.GetLoss())
}

func jobStateName(s modeldv1.JobState) string { return enumName(s.String(), "JOB_STATE_") }
