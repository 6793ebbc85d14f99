package train

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/modeld-dev/modeld/model"
)

// ErrInvalidJob is wrapped by errors for a job whose definition is wrong: unknown base model or
// dataset, hyperparameters out of range, an output name taken. A server maps it to
// InvalidArgument (and fs.ErrNotExist, also wrapped where it applies, to NotFound).
var ErrInvalidJob = errors.New("invalid training job")

// ErrJobNotFound is wrapped when no job or dataset has the id.
var ErrJobNotFound = errors.New("no such job")

// ErrNotCancellable is returned by Cancel for a job that already ended.
var ErrNotCancellable = errors.New("job already ended")

// Scheduler is the learning-rate schedule after warmup.
type Scheduler string

// The schedules of Transformers' get_scheduler, with linear warmup before each.
const (
	Constant Scheduler = "constant" // get_constant_schedule_with_warmup
	Linear   Scheduler = "linear"   // get_linear_schedule_with_warmup
	Cosine   Scheduler = "cosine"   // get_cosine_schedule_with_warmup (half a cosine)
)

// Hyperparameters of a job, with the names and defaults of Hugging Face's TrainingArguments.
type Hyperparameters struct {
	// Epochs is num_train_epochs [3]; ignored when MaxSteps > 0.
	Epochs int `json:"epochs"`
	// MaxSteps is the number of optimizer steps; 0 runs Epochs passes.
	MaxSteps int `json:"max_steps"`
	// BatchSize is B, rows per micro-batch [8].
	BatchSize int `json:"batch_size"`
	// SeqLen is T, tokens per row [n_positions].
	SeqLen int `json:"seq_len"`
	// LearningRate is the peak learning rate [5e-5].
	LearningRate float64   `json:"learning_rate"`
	LRScheduler  Scheduler `json:"lr_scheduler"` // [linear]
	WarmupSteps  int       `json:"warmup_steps"`
	// WeightDecay applies to 2-D tensors only [0].
	WeightDecay float64 `json:"weight_decay"`
	AdamBeta1   float64 `json:"adam_beta1"`   // [0.9]
	AdamBeta2   float64 `json:"adam_beta2"`   // [0.999]
	AdamEpsilon float64 `json:"adam_epsilon"` // [1e-8]
	// MaxGradNorm clips the global gradient norm; 0 is off [1].
	MaxGradNorm float64 `json:"max_grad_norm"`
	// GradientAccumulationSteps micro-batches make one optimizer step [1].
	GradientAccumulationSteps int    `json:"gradient_accumulation_steps"`
	Seed                      uint64 `json:"seed"`    // [42]
	Shuffle                   bool   `json:"shuffle"` // [true]
	// EvalEvery, SaveEvery and LogEvery are in optimizer steps; 0 means only at the end for
	// eval, never for intermediate checkpoints, and every step for logging.
	EvalEvery int     `json:"eval_every"`
	SaveEvery int     `json:"save_every"`
	LogEvery  int     `json:"log_every"`
	Packing   Packing `json:"packing"`
}

// DefaultHyperparameters returns TrainingArguments' defaults (seq_len is filled from the model).
func DefaultHyperparameters() Hyperparameters {
	return Hyperparameters{Epochs: 3, BatchSize: 8, LearningRate: 5e-5, LRScheduler: Linear,
		AdamBeta1: 0.9, AdamBeta2: 0.999, AdamEpsilon: 1e-8, MaxGradNorm: 1, GradientAccumulationSteps: 1,
		Seed: 42, Shuffle: true, LogEvery: 1}
}

// resolve fills the zero sizes with their defaults for model config c and checks every range;
// errors name the field.
func (h Hyperparameters) resolve(c model.Config) (Hyperparameters, error) {
	if h.BatchSize == 0 {
		h.BatchSize = 8
	}
	if h.SeqLen == 0 {
		h.SeqLen = c.NPositions
	}
	if h.GradientAccumulationSteps == 0 {
		h.GradientAccumulationSteps = 1
	}
	if h.LogEvery == 0 {
		h.LogEvery = 1
	}
	if h.LRScheduler == "" {
		h.LRScheduler = Linear
	}
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("train: %w: %s = %v, want %s", ErrInvalidJob, field, v, want)
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case h.MaxSteps == 0 && (h.Epochs < 1 || h.Epochs > 1000):
		return h, bad("epochs", h.Epochs, "1..1000")
	case h.MaxSteps < 0 || h.MaxSteps > 1e9:
		return h, bad("max_steps", h.MaxSteps, "0..1e9")
	case h.BatchSize < 1 || h.BatchSize > 1024:
		return h, bad("batch_size", h.BatchSize, "1..1024")
	case h.SeqLen < 1 || h.SeqLen > c.NPositions:
		return h, bad("seq_len", h.SeqLen, fmt.Sprintf("1..n_positions = %d", c.NPositions))
	case !finite(h.LearningRate) || h.LearningRate <= 0 || h.LearningRate > 1:
		return h, bad("learning_rate", h.LearningRate, "(0, 1]")
	case h.LRScheduler != Constant && h.LRScheduler != Linear && h.LRScheduler != Cosine:
		return h, bad("lr_scheduler", h.LRScheduler, "constant, linear or cosine")
	case h.WarmupSteps < 0:
		return h, bad("warmup_steps", h.WarmupSteps, ">= 0")
	case !finite(h.WeightDecay) || h.WeightDecay < 0 || h.WeightDecay > 1:
		return h, bad("weight_decay", h.WeightDecay, "[0, 1]")
	case !finite(h.AdamBeta1) || h.AdamBeta1 < 0 || h.AdamBeta1 >= 1:
		return h, bad("adam_beta1", h.AdamBeta1, "[0, 1)")
	case !finite(h.AdamBeta2) || h.AdamBeta2 < 0 || h.AdamBeta2 >= 1:
		return h, bad("adam_beta2", h.AdamBeta2, "[0, 1)")
	case !finite(h.AdamEpsilon) || h.AdamEpsilon <= 0 || h.AdamEpsilon > 1:
		return h, bad("adam_epsilon", h.AdamEpsilon, "(0, 1]")
	case !finite(h.MaxGradNorm) || h.MaxGradNorm < 0 || h.MaxGradNorm > 1e6:
		return h, bad("max_grad_norm", h.MaxGradNorm, "[0, 1e6]")
	case h.GradientAccumulationSteps < 1 || h.GradientAccumulationSteps > 1024:
		return h, bad("gradient_accumulation_steps", h.GradientAccumulationSteps, "1..1024")
	case h.EvalEvery < 0 || h.SaveEvery < 0 || h.LogEvery < 1:
		return h, bad("eval_every/save_every/log_every", fmt.Sprint(h.EvalEvery, h.SaveEvery, h.LogEvery), ">= 0")
	case h.Packing != PackingPack && h.Packing != PackingPad:
		return h, bad("packing", h.Packing, "pack or pad")
	}
	return h, nil
}

// learningRate is the rate of optimizer step s (0-based: the first update is s = 0), as
// Transformers' schedulers compute it: linear warmup from 0 over warmup steps, then constant,
// linear decay to 0 at total, or half a cosine to 0 at total.
func learningRate(h Hyperparameters, s, total int) float64 {
	if s < h.WarmupSteps {
		return h.LearningRate * float64(s) / float64(max(1, h.WarmupSteps))
	}
	progress := float64(s-h.WarmupSteps) / float64(max(1, total-h.WarmupSteps))
	switch h.LRScheduler {
	case Linear:
		return h.LearningRate * max(0, 1-progress)
	case Cosine:
		return h.LearningRate * max(0, 0.5*(1+math.Cos(math.Pi*progress)))
	}
	return h.LearningRate
}

// Spec defines a job.
type Spec struct {
	// BaseModel names the model to fine-tune; or FromScratch gives the config of a new model
	// initialised from Seed.
	BaseModel   string        `json:"base_model,omitempty"`
	FromScratch *model.Config `json:"from_scratch,omitempty"`
	// OutputModel is the name the trained model is registered under.
	OutputModel string `json:"output_model"`
	// TokenizerModel names the model whose tokenizer files a FromScratch job reads text with and
	// ships; "" for a base model (its own) or token-only data.
	TokenizerModel string `json:"tokenizer_model,omitempty"`
	// DatasetIDs are uploaded datasets; DataPaths are files inside the data directory.
	DatasetIDs     []string `json:"dataset_ids,omitempty"`
	DataPaths      []string `json:"data_paths,omitempty"`
	EvalDatasetIDs []string `json:"eval_dataset_ids,omitempty"`
	EvalDataPaths  []string `json:"eval_data_paths,omitempty"`
	// EvalSplit holds out this fraction of the training examples for evaluation, in [0, 1).
	EvalSplit float64         `json:"eval_split,omitempty"`
	Hyper     Hyperparameters `json:"hyperparameters"`
}

// State is where a job is in its life (the OpenAI fine-tuning API's statuses).
type State string

const (
	Queued    State = "queued"
	Running   State = "running"
	Succeeded State = "succeeded"
	Failed    State = "failed"
	Cancelled State = "cancelled"
)

func (s State) ended() bool { return s == Succeeded || s == Failed || s == Cancelled }

// Job is a training job as reported to clients.
type Job struct {
	ID       string    `json:"id"`
	Spec     Spec      `json:"spec"`
	State    State     `json:"state"`
	Created  time.Time `json:"created"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	Error    string    `json:"error,omitempty"`
	// Step and TotalSteps count optimizer steps.
	Step       int      `json:"step"`
	TotalSteps int      `json:"total_steps"`
	Loss       *float32 `json:"loss,omitempty"`
}

// StepMetrics report one optimizer step.
type StepMetrics struct {
	Step, TotalSteps int
	Epoch            float64 // epochs done, fractional
	Loss             float32 // mean over the step's micro-batches
	LearningRate     float64
	GradNorm         float32 // before clipping
	TokensPerSecond  float64
	ETA              time.Duration
}

// EvalMetrics report an evaluation.
type EvalMetrics struct {
	Step       int
	EvalLoss   float32
	Perplexity float64 // exp(eval_loss)
}

// Event is one entry of a job's history; exactly one of the pointer fields, or State for a
// state change, is set.
type Event struct {
	Seq        uint64       `json:"seq"`
	Time       time.Time    `json:"time"`
	State      State        `json:"state,omitempty"`
	Step       *StepMetrics `json:"step,omitempty"`
	Eval       *EvalMetrics `json:"eval,omitempty"`
	Checkpoint *Checkpoint  `json:"checkpoint,omitempty"`
	Error      string       `json:"error,omitempty"`
}

// Checkpoint is a saved model folder.
type Checkpoint struct {
	Step int
	Path string
}
