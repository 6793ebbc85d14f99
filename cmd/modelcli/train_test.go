package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/backend/cpu"
	"github.com/modeld-dev/modeld/internal/engine"
	"github.com/modeld-dev/modeld/internal/oracletest"
	"github.com/modeld-dev/modeld/internal/registry"
	"github.com/modeld-dev/modeld/internal/server"
	"github.com/modeld-dev/modeld/internal/train"
	modeldv1 "github.com/modeld-dev/modeld/proto/modeld/v1"
)

// startTrainServer is startServer with training enabled: a real server on 127.0.0.1:0 serving
// the oracle model as "tiny", with a train.Manager whose data directory is in t.TempDir(). opts
// are added to the gRPC server's options. It returns the server's address.
func startTrainServer(t *testing.T, opts ...grpc.ServerOption) string {
	t.Helper()
	dir := oracletest.ModelsDir(t)
	log := slog.New(slog.DiscardHandler)
	newBackend := func() (backend.Backend, error) { return cpu.New(), nil }
	reg, err := registry.New(registry.Options{Dir: dir, Backend: newBackend, Engine: engine.Config{}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := train.Open(train.Options{DataDir: filepath.Join(t.TempDir(), "data"), Registry: reg, Backend: newBackend, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Options{Registry: reg, Train: jobs, DefaultModel: "tiny", Log: log})
	g := srv.GRPCServer(append([]grpc.ServerOption{grpc.WaitForHandlers(true)}, opts...)...)
	return serve(t, g, jobs.Close, reg.Close) // jobs.Close cancels a job still running
}

// writeFile writes data to name in a new temporary directory and returns its path.
func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// catsText is a dataset the tiny model learns in a few steps.
var catsText = strings.Repeat("the cat sat on the mat. ", 60)

// trainOutput is what train --output json prints: the upload responses, the created job, then
// the events.
type trainOutput struct {
	uploads []*modeldv1.UploadDatasetResponse
	job     *modeldv1.TrainingJob
	events  []*modeldv1.TrainingEvent
}

// parseTrainOutput parses the stdout of train --output json with uploads uploaded files.
func parseTrainOutput(t *testing.T, out string, uploads int) trainOutput {
	t.Helper()
	lines := strings.SplitAfter(out, "\n")
	if len(lines) < uploads+1 {
		t.Fatalf("train --output json printed %d lines, want %d uploads and a job first:\n%s", len(lines), uploads, out)
	}
	var o trainOutput
	o.uploads = parseLines(t, strings.Join(lines[:uploads], ""), func() *modeldv1.UploadDatasetResponse { return &modeldv1.UploadDatasetResponse{} })
	o.job = parseLines(t, lines[uploads], func() *modeldv1.CreateTrainingJobResponse { return &modeldv1.CreateTrainingJobResponse{} })[0].GetJob()
	for _, r := range parseLines(t, strings.Join(lines[uploads+1:], ""), newWatchResponse) {
		o.events = append(o.events, r.GetEvent())
	}
	return o
}

func newWatchResponse() *modeldv1.WatchTrainingJobResponse {
	return &modeldv1.WatchTrainingJobResponse{}
}

// steps returns the step metrics among events.
func steps(events []*modeldv1.TrainingEvent) []*modeldv1.StepMetrics {
	var s []*modeldv1.StepMetrics
	for _, ev := range events {
		if ev.GetStep() != nil {
			s = append(s, ev.GetStep())
		}
	}
	return s
}

// TestTrain fine-tunes the tiny model on a repeated sentence, generates with the result, and
// works the jobs commands on the finished jobs.
func TestTrain(t *testing.T) {
	addr := startTrainServer(t)
	cats := writeFile(t, "cats.txt", catsText)
	var ids []string // in creation order

	out, _ := mustRun(t, addr, "train", "--base", "tiny", "--data", cats, "--output-model", "tiny-cats", "--max-steps", "20",
		"--batch-size", "4", "--seq-len", "32", "--learning-rate", "3e-3", "--lr-scheduler", "constant", "--output", "json")
	o := parseTrainOutput(t, out, 1)
	ids = append(ids, o.job.GetId())
	if got := o.uploads[0].GetSizeBytes(); got != uint64(len(catsText)) {
		t.Errorf("upload size_bytes = %d, want %d", got, len(catsText))
	}
	if o.job.GetState() != modeldv1.JobState_JOB_STATE_QUEUED || o.job.GetOutputModel() != "tiny-cats" || o.job.GetTotalSteps() != 20 {
		t.Errorf("created job: %v; want queued, output tiny-cats, 20 steps", o.job)
	}
	if got := o.job.GetHyperparameters(); got.GetLearningRate() != 3e-3 || got.GetLrScheduler() != modeldv1.LrScheduler_LR_SCHEDULER_CONSTANT || got.GetBatchSize() != 4 {
		t.Errorf("job hyperparameters %v; want learning_rate 3e-3, constant, batch_size 4", got)
	}
	s := steps(o.events)
	if len(s) != 20 || s[0].GetStep() != 1 || s[19].GetStep() != 20 {
		t.Fatalf("got %d step events, want steps 1 to 20:\n%s", len(s), out)
	}
	if first, last := s[0].GetLoss(), s[19].GetLoss(); !(last < first-1) {
		t.Errorf("loss went from %v to %v; want a fall of more than 1", first, last)
	}
	if got := o.events[len(o.events)-1].GetStateChange().GetState(); got != modeldv1.JobState_JOB_STATE_SUCCEEDED {
		t.Errorf("last event %v, want the change to SUCCEEDED", o.events[len(o.events)-1])
	}

	out, _ = mustRun(t, addr, "generate", "--model", "tiny-cats", "--temperature", "0", "--ignore-eos", "--max-new-tokens", "12", "the cat")
	if !strings.Contains(out, "sat on the") {
		t.Errorf("the fine-tuned model continues %q with %q; want it to contain %q", "the cat", out, "sat on the")
	}

	// Text mode, with an evaluation and a checkpoint.
	out, stderr := mustRun(t, addr, "train", "--base", "tiny", "--data", cats, "--output-model", "tiny-cats-eval", "--max-steps", "2",
		"--batch-size", "2", "--seq-len", "16", "--eval-split", "0.2", "--save-every", "1")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	ids = append(ids, lines[0])
	for _, want := range []string{"state queued", "state running", "step 1/2  loss ", "step 2/2  loss ", "eval step 2  eval_loss ",
		"checkpoint step 1  ", "state succeeded", "job " + lines[0] + " succeeded: 2 steps in "} {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, want) }) {
			t.Errorf("train printed no line starting %q:\n%s", want, out)
		}
	}
	if !strings.HasPrefix(lines[0], "ftjob-") || !strings.Contains(stderr, "uploaded "+cats+" as ds-") {
		t.Errorf("train printed %q first and %q on stderr; want the job id, and the upload", lines[0], stderr)
	}

	// --detach returns with the id; get and watch find the job.
	out, stderr = mustRun(t, addr, "train", "--base", "tiny", "--data", cats, "--output-model", "tiny-cats-2", "--max-steps", "3",
		"--batch-size", "2", "--seq-len", "16", "--detach")
	id := strings.TrimSuffix(out, "\n")
	ids = append(ids, id)
	if !strings.HasPrefix(id, "ftjob-") || strings.Contains(id, "\n") || !strings.Contains(stderr, "modelcli jobs watch "+id) {
		t.Fatalf("train --detach printed %q, stderr %q; want the job id alone, and how to follow it", out, stderr)
	}
	out, _ = mustRun(t, addr, "jobs", "get", id, "--output", "json")
	got := parseLines(t, out, func() *modeldv1.GetTrainingJobResponse { return &modeldv1.GetTrainingJobResponse{} })
	if len(got) != 1 || got[0].GetJob().GetId() != id || got[0].GetJob().GetOutputModel() != "tiny-cats-2" {
		t.Errorf("jobs get %s --output json printed %q", id, out)
	}
	out, _ = mustRun(t, addr, "jobs", "watch", id)
	if !strings.Contains(out, "step 3/3  loss ") || !strings.Contains(out, "job "+id+" succeeded: 3 steps") {
		t.Errorf("jobs watch %s printed:\n%s", id, out)
	}
	out, _ = mustRun(t, addr, "jobs", "watch", id, "--after-sequence", "3", "--output", "json")
	if evs := parseLines(t, out, newWatchResponse); len(evs) == 0 || evs[0].GetEvent().GetSequence() != 4 {
		t.Errorf("jobs watch --after-sequence 3 printed:\n%s", out)
	}
	out, _ = mustRun(t, addr, "jobs", "get", id)
	for _, want := range []string{"id:", id, "state:", "succeeded", "base:", "tiny", "output model:", "tiny-cats-2", "step:", "3/3",
		"max_steps=3", "batch_size=2", "seq_len=16", "learning_rate=5e-05", "lr_scheduler=linear", "seed=42", "finished:"} {
		if !strings.Contains(out, want) {
			t.Errorf("jobs get lacks %q:\n%s", want, out)
		}
	}

	out, _ = mustRun(t, addr, "jobs", "list")
	rows := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(rows) != 1+len(ids) || !slices.Equal(strings.Fields(rows[0]), []string{"ID", "STATE", "BASE", "OUTPUT", "STEP", "LOSS", "CREATED"}) {
		t.Fatalf("jobs list printed:\n%s\nwant a header and %d jobs", out, len(ids))
	}
	newestFirst := slices.Clone(ids)
	slices.Reverse(newestFirst)
	for i, id := range newestFirst {
		row := strings.Fields(rows[1+i])
		if len(row) != 8 || row[0] != id || row[1] != "succeeded" || row[2] != "tiny" {
			t.Errorf("jobs list row %d = %q; want job %s, succeeded, tiny (newest first)", 1+i, row, id)
		}
	}
	if row := strings.Fields(rows[len(ids)]); len(row) > 4 && (row[3] != "tiny-cats" || row[4] != "20/20") {
		t.Errorf("jobs list row of the first job = %q; want output tiny-cats at 20/20", row)
	}
	out, stderr = mustRun(t, addr, "jobs", "list", "--page-size", "1")
	if rows := strings.Split(strings.TrimSpace(out), "\n"); len(rows) != 2 || !strings.HasPrefix(rows[1], ids[len(ids)-1]) ||
		!strings.Contains(stderr, "modelcli jobs list --page-token "+ids[len(ids)-1]) {
		t.Errorf("jobs list --page-size 1 printed %q, stderr %q; want the newest job and the next page's token", out, stderr)
	}
	out, _ = mustRun(t, addr, "jobs", "list", "--output", "json")
	list := parseLines(t, out, func() *modeldv1.ListTrainingJobsResponse { return &modeldv1.ListTrainingJobsResponse{} })
	var listed []string
	for _, j := range list[0].GetJobs() {
		listed = append(listed, j.GetId())
	}
	if diff := cmp.Diff(newestFirst, listed); diff != "" {
		t.Errorf("jobs list --output json ids (-want +got):\n%s", diff)
	}

	code, out, stderr := cliRun(t, addr, "jobs", "cancel", ids[0])
	if code != exitError || out != "" || !strings.HasPrefix(stderr, "modelcli: FailedPrecondition: ") {
		t.Errorf("jobs cancel of a finished job: exit %d, stdout %q, stderr %q; want 1 and FailedPrecondition", code, out, stderr)
	}
}

// TestTrainUpload uploads a 200 KB file: it arrives intact, in chunks of at most 64 KiB.
func TestTrainUpload(t *testing.T) {
	var (
		mu     sync.Mutex
		chunks []int
	)
	record := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if info.FullMethod == modeldv1.TrainService_UploadDataset_FullMethodName {
			ss = &chunkRecorder{ServerStream: ss, record: func(n int) {
				mu.Lock()
				defer mu.Unlock()
				chunks = append(chunks, n)
			}}
		}
		return handler(srv, ss)
	}
	addr := startTrainServer(t, grpc.ChainStreamInterceptor(record))

	// Lines of random words: 200 KB that a change of any byte would show in the hash.
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("the cat sat on a mat while dogs ran far away from home and café ümlaut")
	var b strings.Builder
	for b.Len() < 200_000 {
		for range 12 {
			b.WriteString(words[rng.IntN(len(words))] + " ")
		}
		fmt.Fprintf(&b, "%d\n", rng.Uint64())
	}
	data := b.String()
	path := writeFile(t, "big.txt", data)

	out, _ := mustRun(t, addr, "train", "--base", "tiny", "--data", path, "--output-model", "tiny-big", "--max-steps", "1",
		"--batch-size", "1", "--seq-len", "8", "--output", "json")
	o := parseTrainOutput(t, out, 1)
	sum := sha256.Sum256([]byte(data))
	up := o.uploads[0]
	if up.GetSizeBytes() != uint64(len(data)) || up.GetSha256() != hex.EncodeToString(sum[:]) || up.GetNumExamples() != 1 {
		t.Errorf("upload response %v; want size_bytes %d, sha256 %x, 1 example", up, len(data), sum)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := (len(data) + uploadChunk - 1) / uploadChunk; len(chunks) != want || slices.Max(chunks) != uploadChunk {
		t.Errorf("the server received chunks of %v bytes; want %d of at most %d", chunks, want, uploadChunk)
	}
}

// chunkRecorder calls record with the size of each chunk an UploadDataset stream receives.
type chunkRecorder struct {
	grpc.ServerStream
	record func(n int)
}

func (r *chunkRecorder) RecvMsg(m any) error {
	err := r.ServerStream.RecvMsg(m)
	if req, ok := m.(*modeldv1.UploadDatasetRequest); ok && err == nil && req.GetInfo() == nil {
		r.record(len(req.GetChunk()))
	}
	return err
}

// cancelWriter is a stdout that cancels a context once the output contains a string.
type cancelWriter struct {
	bytes.Buffer
	after  string
	cancel context.CancelFunc
}

func (w *cancelWriter) Write(p []byte) (int, error) {
	n, err := w.Buffer.Write(p)
	if strings.Contains(w.String(), w.after) {
		w.cancel()
	}
	return n, err
}

// TestTrainInterrupt stops following a job with Ctrl-C: the job goes on until jobs cancel.
func TestTrainInterrupt(t *testing.T) {
	addr := startTrainServer(t)
	cats := writeFile(t, "cats.txt", catsText)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &cancelWriter{after: "step 1/", cancel: cancel} // Ctrl-C after the first step
	var stderr bytes.Buffer
	code := run(ctx, []string{"--addr", addr, "train", "--base", "tiny", "--data", cats, "--output-model", "tiny-long",
		"--max-steps", "1000000", "--batch-size", "1", "--seq-len", "8"}, out, &stderr)
	id, _, _ := strings.Cut(out.String(), "\n")
	if want := "modelcli: job continues on the server: modelcli jobs watch " + id + "\n"; code != exitInterrupted || !strings.HasSuffix(stderr.String(), want) {
		t.Fatalf("exit %d, stderr %q; want %d and a stderr ending %q", code, stderr.String(), exitInterrupted, want)
	}

	jobOut, _ := mustRun(t, addr, "jobs", "get", id)
	if !strings.Contains(jobOut, "running") {
		t.Errorf("after Ctrl-C, jobs get %s printed:\n%s\nwant the job running", id, jobOut)
	}
	cancelOut, _ := mustRun(t, addr, "jobs", "cancel", id)
	if !strings.HasPrefix(cancelOut, id+": ") {
		t.Errorf("jobs cancel printed %q", cancelOut)
	}
	code, watchOut, watchErr := cliRun(t, addr, "jobs", "watch", id)
	if code != exitError || !strings.HasPrefix(watchErr, "modelcli: job "+id+" was cancelled at step ") || !strings.HasSuffix(watchOut, "state cancelled\n") {
		t.Errorf("jobs watch of the cancelled job: exit %d, stderr %q, stdout ending %q; want 1, cancelled", code, watchErr, watchOut[max(0, len(watchOut)-100):])
	}
}

func TestTrainErrors(t *testing.T) {
	addr := startTrainServer(t)
	cats := writeFile(t, "cats.txt", catsText)
	bad := writeFile(t, "bad.jsonl", "{\"text\": \"the cat\"}\n{\"text\": 3}\n")
	csv := writeFile(t, "cats.csv", "a,b\n")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // prefix of a line of stderr
	}{
		{"bad dataset", []string{"train", "--base", "tiny", "--data", bad, "--output-model", "x"}, exitError, "modelcli: InvalidArgument: train: bad.jsonl:2: "},
		{"unknown base", []string{"train", "--base", "nope", "--data", cats, "--output-model", "x"}, exitError, "modelcli: NotFound: "},
		{"missing file", []string{"train", "--base", "tiny", "--data", filepath.Join(t.TempDir(), "no.txt"), "--output-model", "x"}, exitError, "modelcli: train: open "},
		{"unknown extension", []string{"train", "--base", "tiny", "--data", csv, "--output-model", "x"}, exitUsage, "modelcli: train: " + csv + ": cannot tell the format"},
		{"no base", []string{"train", "--data", cats, "--output-model", "x"}, exitUsage, "modelcli: train: give the model to fine-tune with --base"},
		{"base and scratch", []string{"train", "--base", "tiny", "--from-scratch-config", "layers=1", "--data", cats, "--output-model", "x"}, exitUsage, "modelcli: train: give --base or --from-scratch-config, not both"},
		{"no output model", []string{"train", "--base", "tiny", "--data", cats}, exitUsage, "modelcli: train: give the name of the trained model with --output-model"},
		{"no data", []string{"train", "--base", "tiny", "--output-model", "x"}, exitUsage, "modelcli: train: give the training data"},
		{"positional argument", []string{"train", "--base", "tiny", "--output-model", "x", cats}, exitUsage, "modelcli: train: unexpected argument"},
		{"bad scheduler", []string{"train", "--base", "tiny", "--data", cats, "--output-model", "x", "--lr-scheduler", "step"}, exitUsage, `modelcli: train: --lr-scheduler "step"`},
		{"bad packing", []string{"train", "--base", "tiny", "--data", cats, "--output-model", "x", "--packing", "none"}, exitUsage, `modelcli: train: --packing "none"`},
		{"bad format", []string{"train", "--base", "tiny", "--data", cats, "--output-model", "x", "--format", "csv"}, exitUsage, `modelcli: train: --format "csv"`},
		{"bad config", []string{"train", "--from-scratch-config", "layers=x", "--data", cats, "--output-model", "x"}, exitUsage, "invalid value"},
		{"get unknown job", []string{"jobs", "get", "ftjob-nope"}, exitError, "modelcli: NotFound: "},
		{"watch unknown job", []string{"jobs", "watch", "ftjob-nope"}, exitError, "modelcli: NotFound: "},
		{"cancel unknown job", []string{"jobs", "cancel", "ftjob-nope"}, exitError, "modelcli: NotFound: "},
		{"unknown jobs action", []string{"jobs", "nope"}, exitUsage, `modelcli: jobs: unknown action "nope"`},
		{"jobs get without an id", []string{"jobs", "get"}, exitUsage, "modelcli: jobs get: want 1 argument(s), got 0"},
		{"page size not for get", []string{"jobs", "get", "x", "--page-size", "2"}, exitUsage, "modelcli: jobs get: --page-size and --page-token are for list"},
		{"train help", []string{"train", "-h"}, exitOK, "usage: modelcli train --base MODEL"},
		{"jobs help", []string{"jobs", "-h"}, exitOK, "usage: modelcli jobs list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := cliRun(t, addr, tc.args...)
			if code != tc.code || !slices.ContainsFunc(strings.Split(stderr, "\n"), func(l string) bool { return strings.HasPrefix(l, tc.want) }) {
				t.Errorf("exit %d, stderr %q; want exit %d and a line starting %q", code, stderr, tc.code, tc.want)
			}
			if tc.code != exitOK && stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
		})
	}
}

// TestTrainRequest checks which fields the flags set: proto3 optional fields only when given.
func TestTrainRequest(t *testing.T) {
	req := func(hp *modeldv1.Hyperparameters) *modeldv1.CreateTrainingJobRequest {
		return &modeldv1.CreateTrainingJobRequest{Base: &modeldv1.CreateTrainingJobRequest_BaseModel{BaseModel: "gpt2"},
			OutputModel: "out", DataPaths: []string{"d.txt"}, Hyperparameters: hp}
	}
	required := []string{"--base", "gpt2", "--output-model", "out", "--data-path", "d.txt"}
	f64 := proto.Float64
	for _, tc := range []struct {
		name string
		args []string
		want *trainCommand
	}{
		{"defaults", required, &trainCommand{req: req(nil)}},
		{"zero values sent when given", append([]string{"--learning-rate", "0", "--weight-decay", "0", "--max-grad-norm", "0", "--seed", "0", "--epochs", "0"}, required...),
			&trainCommand{req: req(&modeldv1.Hyperparameters{LearningRate: f64(0), WeightDecay: f64(0), MaxGradNorm: f64(0), Seed: proto.Uint64(0), Epochs: proto.Uint32(0)})}},
		{"every flag", append([]string{"--data", "a.txt", "--data", "b.jsonl", "--eval-data", "c.txt", "--eval-data-path", "e.txt", "--eval-split", "0.1",
			"--format", "jsonl_text", "--epochs", "2", "--max-steps", "100", "--batch-size", "4", "--seq-len", "32", "--learning-rate", "3e-3",
			"--lr-scheduler", "cosine", "--warmup-steps", "10", "--weight-decay", "0.01", "--adam-beta1", "0.8", "--adam-beta2", "0.99",
			"--adam-epsilon", "1e-6", "--max-grad-norm", "0.5", "--grad-accum", "2", "--seed", "7", "--no-shuffle", "--eval-every", "5",
			"--save-every", "50", "--log-every", "2", "--packing", "pad", "--detach"}, required...),
			&trainCommand{req: &modeldv1.CreateTrainingJobRequest{Base: &modeldv1.CreateTrainingJobRequest_BaseModel{BaseModel: "gpt2"},
				OutputModel: "out", DataPaths: []string{"d.txt"}, EvalDataPaths: []string{"e.txt"}, EvalSplit: 0.1,
				Hyperparameters: &modeldv1.Hyperparameters{Epochs: proto.Uint32(2), MaxSteps: proto.Uint32(100), BatchSize: 4, SeqLen: 32,
					LearningRate: f64(3e-3), LrScheduler: modeldv1.LrScheduler_LR_SCHEDULER_COSINE, WarmupSteps: 10, WeightDecay: f64(0.01),
					AdamBeta1: f64(0.8), AdamBeta2: f64(0.99), AdamEpsilon: f64(1e-6), MaxGradNorm: f64(0.5), GradientAccumulationSteps: 2,
					Seed: proto.Uint64(7), Shuffle: proto.Bool(false), EvalEvery: 5, SaveEvery: 50, LogEvery: 2, Packing: modeldv1.Packing_PACKING_PAD}},
				data: []string{"a.txt", "b.jsonl"}, evalData: []string{"c.txt"}, format: modeldv1.DatasetFormat_DATASET_FORMAT_JSONL_TEXT, detach: true}},
		{"from scratch", []string{"--from-scratch-config", "vocab=257,positions=256,embd=192,layers=4,heads=6", "--tokenizer-model", "bytes",
			"--output-model", "out", "--data", "a.txt"},
			&trainCommand{req: &modeldv1.CreateTrainingJobRequest{OutputModel: "out", TokenizerModel: "bytes",
				Base: &modeldv1.CreateTrainingJobRequest_FromScratch{FromScratch: &modeldv1.ModelConfig{VocabSize: 257, NPositions: 256, NEmbd: 192, NLayer: 4, NHead: 6}}},
				data: []string{"a.txt"}}},
		{"from scratch, proto names and defaults", []string{"--from-scratch-config", "n_layer=2,n_head=2", "--output-model", "out", "--data", "a.txt"},
			&trainCommand{req: &modeldv1.CreateTrainingJobRequest{OutputModel: "out",
				Base: &modeldv1.CreateTrainingJobRequest_FromScratch{FromScratch: &modeldv1.ModelConfig{NLayer: 2, NHead: 2}}},
				data: []string{"a.txt"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &cli{globals: globals{output: "text"}, stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
			got, err := c.parseTrain(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, protocmp.Transform(), cmp.AllowUnexported(trainCommand{})); diff != "" {
				t.Errorf("train command (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDetectFormat(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       modeldv1.DatasetFormat
	}{
		{"a.txt", "hello", modeldv1.DatasetFormat_DATASET_FORMAT_TEXT},
		{"a.TXT", "{\"input_ids\": [1]}", modeldv1.DatasetFormat_DATASET_FORMAT_TEXT},
		{"a.jsonl", "\n{\"text\": \"hi\"}\n", modeldv1.DatasetFormat_DATASET_FORMAT_JSONL_TEXT},
		{"a.jsonl", "\n  \n{\"input_ids\": [1, 2]}\n{\"text\": \"hi\"}\n", modeldv1.DatasetFormat_DATASET_FORMAT_JSONL_TOKENS},
		{"a.json", "not json", modeldv1.DatasetFormat_DATASET_FORMAT_JSONL_TEXT},
	} {
		t.Run(fmt.Sprintf("file=%s/data=%q", tc.name, tc.data), func(t *testing.T) {
			got, err := detectFormat(writeFile(t, tc.name, tc.data))
			if err != nil || got != tc.want {
				t.Errorf("detectFormat = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	if _, err := detectFormat(writeFile(t, "a.csv", "x")); err == nil {
		t.Errorf("detectFormat(a.csv) succeeded; want an error")
	}
}
