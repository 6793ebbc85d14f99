package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"google.golang.org/protobuf/proto"

	modeldv1 "github.com/modeld-dev/modeld/proto/modeld/v1"
)

const trainAbout = `Fine-tune --base (or train a --from-scratch-config model) on the local --data files, which
are uploaded first, and on the server-side --data-path files; then follow the job until it ends,
with a progress bar of step/total, loss, learning rate, tokens/s and ETA on a terminal, or one
line per step elsewhere. Evaluations, checkpoints and state changes are printed as they happen.
The exit code is 0 when the job succeeds and 1 when it fails or is cancelled.

The job id is printed first on stdout. With --detach the command returns once the job is queued;
follow it later with 'modelcli jobs watch ID'. Ctrl-C stops following, not the job: it goes on
on the server (cancel it with 'modelcli jobs cancel ID').

Hyperparameter flags that are not given are not sent: the server's defaults apply, those of
Hugging Face's TrainingArguments (3 epochs, batch size 8, seq-len n_positions, learning rate
5e-5 with linear decay, AdamW 0.9/0.999/1e-8, weight decay 0, gradient clipping at 1, seed 42).

Formats (--format): text (*.txt: UTF-8, documents separated by <|endoftext|>), jsonl_text
(*.jsonl, {"text": "..."} a line) and jsonl_tokens (*.jsonl, {"input_ids": [...]} a line); auto
chooses by the extension and, for .jsonl, the first line. --format applies to the uploaded
files; the server chooses the format of --data-path files by their names.

--output json prints one protojson line per response message: the UploadDatasetResponse of each
uploaded file, the CreateTrainingJobResponse, then every WatchTrainingJobResponse.`

// uploadChunk is the size of the chunks UploadDataset sends; the server takes up to 1 MiB.
const uploadChunk = 64 << 10

// uploadThrottle is the shortest time between two redraws of the upload progress bar.
const uploadThrottle = 100 * time.Millisecond

// trainCommand is a parsed train command line.
type trainCommand struct {
	// req is the job, without the ids of the datasets still to upload.
	req            *modeldv1.CreateTrainingJobRequest
	data, evalData []string // local files to upload as training and evaluation data
	// format is the format of the uploads; DATASET_FORMAT_UNSPECIFIED chooses by each file.
	format modeldv1.DatasetFormat
	detach bool
}

var (
	lrSchedulers = map[string]modeldv1.LrScheduler{
		"constant": modeldv1.LrScheduler_LR_SCHEDULER_CONSTANT,
		"linear":   modeldv1.LrScheduler_LR_SCHEDULER_LINEAR,
		"cosine":   modeldv1.LrScheduler_LR_SCHEDULER_COSINE,
	}
	packings = map[string]modeldv1.Packing{
		"concat": modeldv1.Packing_PACKING_CONCAT,
		"pad":    modeldv1.Packing_PACKING_PAD,
	}
	datasetFormats = map[string]modeldv1.DatasetFormat{
		"auto":         modeldv1.DatasetFormat_DATASET_FORMAT_UNSPECIFIED,
		"text":         modeldv1.DatasetFormat_DATASET_FORMAT_TEXT,
		"jsonl_text":   modeldv1.DatasetFormat_DATASET_FORMAT_JSONL_TEXT,
		"jsonl_tokens": modeldv1.DatasetFormat_DATASET_FORMAT_JSONL_TOKENS,
	}
)

// parseTrain parses a train command line. Proto3 optional hyperparameters are set only if their
// flag is given (flag.Visit), so that the server's defaults apply; Hyperparameters is sent only
// if some flag sets a field of it.
func (c *cli) parseTrain(args []string) (*trainCommand, error) {
	fs := c.flagSet("train", "--base MODEL --data FILE... --output-model NAME [flags]", trainAbout)
	var (
		tc  = &trainCommand{req: &modeldv1.CreateTrainingJobRequest{}}
		req = tc.req
		h   = &modeldv1.Hyperparameters{}

		base, scheduler, packing, format  string
		scratch                           *modeldv1.ModelConfig
		epochs, maxSteps                  uint32
		lr, weightDecay, maxGradNorm      float64
		adamBeta1, adamBeta2, adamEpsilon float64
		seed                              uint64
		noShuffle                         bool
	)
	fs.StringVar(&base, "base", "", "`name` of the model to fine-tune")
	fs.Var(configFlag{&scratch}, "from-scratch-config", "train a new model of this `shape` instead of --base, e.g. vocab=257,positions=256,embd=192,layers=4,heads=6\n(a missing or 0 field takes GPT-2 small's value)")
	fs.StringVar(&req.TokenizerModel, "tokenizer-model", "", "with --from-scratch-config: `name` of the model whose tokenizer to use, or \"bytes\"")
	fs.StringVar(&req.OutputModel, "output-model", "", "`name` under which the trained model is registered (required)")
	fs.Var(stringsFlag{&tc.data}, "data", "local training `file` to upload; repeat for several")
	fs.Var(stringsFlag{&req.DataPaths}, "data-path", "training file on the server, a `path` inside its --data-dir; repeat for several")
	fs.Var(stringsFlag{&tc.evalData}, "eval-data", "local evaluation `file` to upload; repeat for several")
	fs.Var(stringsFlag{&req.EvalDataPaths}, "eval-data-path", "evaluation file on the server, a `path` inside its --data-dir; repeat for several")
	fs.Float64Var(&req.EvalSplit, "eval-split", 0, "`fraction` of the training examples held out for evaluation, in [0, 0.5], without --eval-data")
	fs.StringVar(&format, "format", "auto", "`format` of the uploaded files: auto, text, jsonl_text or jsonl_tokens")
	fs.Var(uint32Flag{&epochs}, "epochs", "passes over the training data, in [1, 1000] (server default 3)")
	fs.Var(uint32Flag{&maxSteps}, "max-steps", "optimizer steps in all; overrides --epochs")
	fs.Var(uint32Flag{&h.BatchSize}, "batch-size", "rows per micro-batch (0: the server's default, 8)")
	fs.Var(uint32Flag{&h.SeqLen}, "seq-len", "tokens per row (0: the model's n_positions)")
	fs.Float64Var(&lr, "learning-rate", 0, "peak learning rate of AdamW, in (0, 1] (server default 5e-5)")
	fs.StringVar(&scheduler, "lr-scheduler", "", "learning-rate `schedule` after warmup: constant, linear or cosine (server default linear)")
	fs.Var(uint32Flag{&h.WarmupSteps}, "warmup-steps", "steps of linear warmup from 0 to --learning-rate")
	fs.Float64Var(&weightDecay, "weight-decay", 0, "AdamW's decoupled weight decay, in [0, 1]")
	fs.Float64Var(&adamBeta1, "adam-beta1", 0, "AdamW's beta1, in [0, 1) (server default 0.9)")
	fs.Float64Var(&adamBeta2, "adam-beta2", 0, "AdamW's beta2, in [0, 1) (server default 0.999)")
	fs.Float64Var(&adamEpsilon, "adam-epsilon", 0, "AdamW's epsilon, in (0, 1] (server default 1e-8)")
	fs.Float64Var(&maxGradNorm, "max-grad-norm", 0, "clip the gradients' global L2 norm to this; 0 turns clipping off (server default 1)")
	fs.Var(uint32Flag{&h.GradientAccumulationSteps}, "grad-accum", "micro-batches per optimizer step (0: 1)")
	fs.Uint64Var(&seed, "seed", 0, "seed of shuffling, --eval-split and from-scratch weights (server default 42)")
	fs.BoolVar(&noShuffle, "no-shuffle", false, "keep the examples in order instead of shuffling them every epoch")
	fs.Var(uint32Flag{&h.EvalEvery}, "eval-every", "evaluate every this many steps (0: after the last step only)")
	fs.Var(uint32Flag{&h.SaveEvery}, "save-every", "save a checkpoint every this many steps (0: none but the final model)")
	fs.Var(uint32Flag{&h.LogEvery}, "log-every", "report the metrics every this many steps (0: every step)")
	fs.StringVar(&packing, "packing", "", "how examples fill the rows (`mode`): concat or pad (server default concat)")
	fs.BoolVar(&tc.detach, "detach", false, "return once the job is queued instead of following it")
	pos, err := c.parse(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) > 0 {
		return nil, usagef("train: unexpected argument %q; give the training files with --data", pos[0])
	}

	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["epochs"] {
		h.Epochs = proto.Uint32(epochs)
	}
	if set["max-steps"] {
		h.MaxSteps = proto.Uint32(maxSteps)
	}
	for _, o := range []struct {
		name string
		v    float64
		dst  **float64
	}{{"learning-rate", lr, &h.LearningRate}, {"weight-decay", weightDecay, &h.WeightDecay}, {"adam-beta1", adamBeta1, &h.AdamBeta1},
		{"adam-beta2", adamBeta2, &h.AdamBeta2}, {"adam-epsilon", adamEpsilon, &h.AdamEpsilon}, {"max-grad-norm", maxGradNorm, &h.MaxGradNorm}} {
		if set[o.name] {
			*o.dst = proto.Float64(o.v)
		}
	}
	if set["seed"] {
		h.Seed = proto.Uint64(seed)
	}
	if set["no-shuffle"] {
		h.Shuffle = proto.Bool(!noShuffle)
	}
	var ok bool
	if h.LrScheduler, ok = lrSchedulers[scheduler]; scheduler != "" && !ok {
		return nil, usagef("train: --lr-scheduler %q: want constant, linear or cosine", scheduler)
	}
	if h.Packing, ok = packings[packing]; packing != "" && !ok {
		return nil, usagef("train: --packing %q: want concat or pad", packing)
	}
	if tc.format, ok = datasetFormats[format]; !ok {
		return nil, usagef("train: --format %q: want auto, text, jsonl_text or jsonl_tokens", format)
	}
	if !proto.Equal(h, &modeldv1.Hyperparameters{}) {
		req.Hyperparameters = h
	}

	switch {
	case base != "" && scratch != nil:
		return nil, usagef("train: give --base or --from-scratch-config, not both")
	case base != "":
		req.Base = &modeldv1.CreateTrainingJobRequest_BaseModel{BaseModel: base}
	case scratch != nil:
		req.Base = &modeldv1.CreateTrainingJobRequest_FromScratch{FromScratch: scratch}
	default:
		return nil, usagef("train: give the model to fine-tune with --base, or --from-scratch-config; run 'modelcli train -h'")
	}
	if req.OutputModel == "" {
		return nil, usagef("train: give the name of the trained model with --output-model")
	}
	if len(tc.data)+len(req.DataPaths) == 0 {
		return nil, usagef("train: give the training data with --data FILE or --data-path PATH")
	}
	return tc, nil
}

// train implements "modelcli train".
func (c *cli) train(ctx context.Context, args []string) error {
	tc, err := c.parseTrain(args)
	if err != nil {
		return err
	}
	// Check every local file before uploading any.
	formats := map[string]modeldv1.DatasetFormat{}
	for _, path := range slices.Concat(tc.data, tc.evalData) {
		file, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("train: %w", err)
		}
		file.Close()
		f := tc.format
		if f == modeldv1.DatasetFormat_DATASET_FORMAT_UNSPECIFIED {
			if f, err = detectFormat(path); err != nil {
				return err
			}
		}
		formats[path] = f
	}
	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ts := modeldv1.NewTrainServiceClient(conn)

	req := tc.req
	for _, up := range []struct {
		files []string
		ids   *[]string
	}{{tc.data, &req.DatasetIds}, {tc.evalData, &req.EvalDatasetIds}} {
		for _, path := range up.files {
			resp, err := c.upload(ctx, ts, path, formats[path])
			if err != nil {
				return fmt.Errorf("upload %s: %w", path, err)
			}
			*up.ids = append(*up.ids, resp.GetDatasetId())
			if c.json() {
				if err := c.printJSON(resp); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(c.stderr, "uploaded %s as %s: %s, %d example(s), sha256 %.12s\n", path, resp.GetDatasetId(),
				fmtBytes(resp.GetSizeBytes()), resp.GetNumExamples(), resp.GetSha256())
		}
	}

	callCtx, cancel := c.callContext(ctx)
	resp, err := ts.CreateTrainingJob(callCtx, req)
	cancel()
	if err != nil {
		return err
	}
	job := resp.GetJob()
	if c.json() {
		if err := c.printJSON(resp); err != nil {
			return err
		}
	} else {
		if _, err := fmt.Fprintln(c.stdout, job.GetId()); err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "job %s %s: %d steps to train %s\n", job.GetId(), jobStateName(job.GetState()), job.GetTotalSteps(), job.GetOutputModel())
	}
	if tc.detach {
		if !c.json() {
			fmt.Fprintf(c.stderr, "follow it with: modelcli jobs watch %s\n", job.GetId())
		}
		return nil
	}
	return c.follow(ctx, ts, job.GetId(), 0)
}

// upload sends the file at path with UploadDataset: the info, then the content in chunks of
// uploadChunk bytes. On a terminal stderr a progress bar shows the bytes sent.
func (c *cli) upload(ctx context.Context, ts modeldv1.TrainServiceClient, path string, format modeldv1.DatasetFormat) (*modeldv1.UploadDatasetResponse, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if fi, err := f.Stat(); err == nil && isTerminal(c.stderr) && !c.json() {
		bar := progressbar.NewOptions64(fi.Size(), progressbar.OptionSetWriter(c.stderr), progressbar.OptionSetDescription(filepath.Base(path)),
			progressbar.OptionShowBytes(true), progressbar.OptionUseIECUnits(true), progressbar.OptionShowCount(), progressbar.OptionFullWidth(),
			progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(uploadThrottle))
		defer bar.Exit()
		r = io.TeeReader(f, bar)
	}
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	stream, err := ts.UploadDataset(ctx)
	if err != nil {
		return nil, err
	}
	info := &modeldv1.DatasetInfo{Name: filepath.Base(path), Format: format}
	err = stream.Send(&modeldv1.UploadDatasetRequest{Part: &modeldv1.UploadDatasetRequest_Info{Info: info}})
	buf := make([]byte, uploadChunk)
	for err == nil {
		var n int
		n, err = io.ReadFull(r, buf)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF // the end of the file
		} else if err != nil {
			return nil, err
		}
		if n > 0 {
			// Send copies the message out before it returns, so buf can be reused.
			if serr := stream.Send(&modeldv1.UploadDatasetRequest{Part: &modeldv1.UploadDatasetRequest_Chunk{Chunk: buf[:n]}}); serr != nil {
				err = serr
			}
		}
	}
	// io.EOF is the end of the file, or from Send a stream the server has ended: its status
	// comes with CloseAndRecv.
	if !errors.Is(err, io.EOF) {
		return nil, err
	}
	return stream.CloseAndRecv()
}

// detectFormat chooses the format of a local file as the server's auto detection does: *.txt is
// text; *.jsonl and *.json are jsonl_tokens if the first non-blank line has "input_ids", and
// jsonl_text otherwise.
func detectFormat(path string) (modeldv1.DatasetFormat, error) {
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".txt":
		return modeldv1.DatasetFormat_DATASET_FORMAT_TEXT, nil
	case ".jsonl", ".json":
		f, err := os.Open(path)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		head := make([]byte, 1<<16)
		n, err := io.ReadFull(f, head)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, err
		}
		for line := range bytes.Lines(head[:n]) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			var fields map[string]json.RawMessage
			if json.Unmarshal(line, &fields) == nil && fields["input_ids"] != nil {
				return modeldv1.DatasetFormat_DATASET_FORMAT_JSONL_TOKENS, nil
			}
			break // errors in the line are the server's to report
		}
		return modeldv1.DatasetFormat_DATASET_FORMAT_JSONL_TEXT, nil
	default:
		return 0, usagef("train: %s: cannot tell the format from the extension %q: name it with --format, or use .txt or .jsonl", path, ext)
	}
}

// configFlag is a ModelConfig given as "vocab=257,positions=256,embd=192,layers=4,heads=6"; the
// proto field names (vocab_size, n_positions, n_embd, n_layer, n_head) work too.
type configFlag struct{ p **modeldv1.ModelConfig }

func (f configFlag) String() string {
	if f.p == nil || *f.p == nil {
		return ""
	}
	m := *f.p
	return fmt.Sprintf("vocab=%d,positions=%d,embd=%d,layers=%d,heads=%d", m.GetVocabSize(), m.GetNPositions(), m.GetNEmbd(), m.GetNLayer(), m.GetNHead())
}

func (f configFlag) Set(s string) error {
	m := &modeldv1.ModelConfig{}
	fields := map[string]*uint32{
		"vocab": &m.VocabSize, "positions": &m.NPositions, "embd": &m.NEmbd, "layers": &m.NLayer, "heads": &m.NHead,
		"vocab_size": &m.VocabSize, "n_positions": &m.NPositions, "n_embd": &m.NEmbd, "n_layer": &m.NLayer, "n_head": &m.NHead,
	}
	for field := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(field), "=")
		n, err := strconv.ParseUint(v, 10, 32)
		dst := fields[k]
		if !ok || err != nil || dst == nil {
			return fmt.Errorf("%q: want KEY=N pairs with keys vocab, positions, embd, layers and heads", field)
		}
		*dst = uint32(n)
	}
	*f.p = m
	return nil
}
