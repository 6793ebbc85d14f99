package server

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/modeld-dev/modeld/internal/train"
	"github.com/modeld-dev/modeld/model"
	modeldv1 "github.com/modeld-dev/modeld/proto/modeld/v1"
)

// DefaultMaxUploadBytes is the size limit of UploadDataset when Options leaves it 0: 1 GiB.
const DefaultMaxUploadBytes = 1 << 30

type trainService struct {
	modeldv1.UnimplementedTrainServiceServer
	s *Server
}

func (ts *trainService) jobs() (*train.Manager, error) {
	if ts.s.opt.Train == nil {
		return nil, status.Error(codes.Unimplemented, "training is not enabled on this server (no --data-dir)")
	}
	return ts.s.opt.Train, nil
}

var jobStates = map[train.State]modeldv1.JobState{
	train.Queued:    modeldv1.JobState_JOB_STATE_QUEUED,
	train.Running:   modeldv1.JobState_JOB_STATE_RUNNING,
	train.Succeeded: modeldv1.JobState_JOB_STATE_SUCCEEDED,
	train.Failed:    modeldv1.JobState_JOB_STATE_FAILED,
	train.Cancelled: modeldv1.JobState_JOB_STATE_CANCELLED,
}

var schedulers = map[train.Scheduler]modeldv1.LrScheduler{
	train.Constant: modeldv1.LrScheduler_LR_SCHEDULER_CONSTANT,
	train.Linear:   modeldv1.LrScheduler_LR_SCHEDULER_LINEAR,
	train.Cosine:   modeldv1.LrScheduler_LR_SCHEDULER_COSINE,
}

func configProto(c model.Config) *modeldv1.ModelConfig {
	return &modeldv1.ModelConfig{VocabSize: uint32(c.VocabSize), NPositions: uint32(c.NPositions),
		NEmbd: uint32(c.NEmbd), NLayer: uint32(c.NLayer), NHead: uint32(c.NHead)}
}

func optTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func jobProto(j train.Job) *modeldv1.TrainingJob {
	h := j.Spec.Hyper
	pj := &modeldv1.TrainingJob{
		Id: j.ID, State: jobStates[j.State], OutputModel: j.Spec.OutputModel, TokenizerModel: j.Spec.TokenizerModel,
		DatasetIds: j.Spec.DatasetIDs, DataPaths: j.Spec.DataPaths, EvalDatasetIds: j.Spec.EvalDatasetIDs,
		EvalDataPaths: j.Spec.EvalDataPaths, EvalSplit: j.Spec.EvalSplit,
		Hyperparameters: &modeldv1.Hyperparameters{
			Epochs: ptr(uint32(h.Epochs)), MaxSteps: ptr(uint32(h.MaxSteps)), BatchSize: uint32(h.BatchSize),
			SeqLen: uint32(h.SeqLen), LearningRate: &h.LearningRate, LrScheduler: schedulers[h.LRScheduler],
			WarmupSteps: uint32(h.WarmupSteps), WeightDecay: &h.WeightDecay, AdamBeta1: &h.AdamBeta1,
			AdamBeta2: &h.AdamBeta2, AdamEpsilon: &h.AdamEpsilon, MaxGradNorm: &h.MaxGradNorm,
			GradientAccumulationSteps: uint32(h.GradientAccumulationSteps), Seed: &h.Seed, Shuffle: &h.Shuffle,
			EvalEvery: uint32(h.EvalEvery), SaveEvery: uint32(h.SaveEvery), LogEvery: uint32(h.LogEvery),
			Packing: map[train.Packing]modeldv1.Packing{train.PackingPack: modeldv1.Packing_PACKING_CONCAT, train.PackingPad: modeldv1.Packing_PACKING_PAD}[h.Packing],
		},
		CreateTime: timestamppb.New(j.Created), StartTime: optTime(j.Started),
		FinishTime: optTime(j.Finished), Error: j.Error,
		Step: uint32(j.Step), TotalSteps: uint32(j.TotalSteps), Loss: j.Loss,
	}
	if j.Spec.FromScratch != nil {
		pj.Base = &modeldv1.TrainingJob_FromScratch{FromScratch: configProto(*j.Spec.FromScratch)}
	} else {
		pj.Base = &modeldv1.TrainingJob_BaseModel{BaseModel: j.Spec.BaseModel}
	}
	return pj
}

func ptr[T any](v T) *T { return &v }

// spec maps a request onto a job definition: unset optional fields take
// train.DefaultHyperparameters' values, and 0 sizes take the model-dependent defaults.
func spec(req *modeldv1.CreateTrainingJobRequest) (train.Spec, error) {
	s := train.Spec{
		BaseModel: req.GetBaseModel(), OutputModel: req.GetOutputModel(), TokenizerModel: req.GetTokenizerModel(),
		DatasetIDs: req.GetDatasetIds(), DataPaths: req.GetDataPaths(), EvalDatasetIDs: req.GetEvalDatasetIds(),
		EvalDataPaths: req.GetEvalDataPaths(), EvalSplit: req.GetEvalSplit(), Hyper: train.DefaultHyperparameters(),
	}
	if c := req.GetFromScratch(); c != nil {
		s.FromScratch = &model.Config{VocabSize: int(c.GetVocabSize()), NPositions: int(c.GetNPositions()),
			NEmbd: int(c.GetNEmbd()), NLayer: int(c.GetNLayer()), NHead: int(c.GetNHead()),
			BOSTokenID: int(c.GetVocabSize()) - 1, EOSTokenID: int(c.GetVocabSize()) - 1}
	}
	p := req.GetHyperparameters()
	if p == nil {
		p = &modeldv1.Hyperparameters{}
	}
	h := &s.Hyper
	if p.Epochs != nil {
		h.Epochs = int(p.GetEpochs())
	}
	if p.MaxSteps != nil {
		h.MaxSteps = int(p.GetMaxSteps())
	}
	h.BatchSize, h.SeqLen, h.WarmupSteps = int(p.GetBatchSize()), int(p.GetSeqLen()), int(p.GetWarmupSteps())
	h.GradientAccumulationSteps = int(p.GetGradientAccumulationSteps())
	h.EvalEvery, h.SaveEvery, h.LogEvery = int(p.GetEvalEvery()), int(p.GetSaveEvery()), int(p.GetLogEvery())
	for f, dst := range map[*float64]*float64{p.LearningRate: &h.LearningRate, p.WeightDecay: &h.WeightDecay,
		p.AdamBeta1: &h.AdamBeta1, p.AdamBeta2: &h.AdamBeta2, p.AdamEpsilon: &h.AdamEpsilon, p.MaxGradNorm: &h.MaxGradNorm} {
		if f != nil {
			*dst = *f
		}
	}
	if p.Seed != nil {
		h.Seed = p.GetSeed()
	}
	if p.Shuffle != nil {
		h.Shuffle = p.GetShuffle()
	}
	for k, v := range schedulers {
		if v == p.GetLrScheduler() {
			h.LRScheduler = k
		}
	}
	if p.GetPacking() == modeldv1.Packing_PACKING_PAD {
		h.Packing = train.PackingPad
	}
	return s, nil
}

// CreateTrainingJob validates the job (reading its datasets) and queues it.
func (ts *trainService) CreateTrainingJob(ctx context.Context, req *modeldv1.CreateTrainingJobRequest) (*modeldv1.CreateTrainingJobResponse, error) {
	m, err := ts.jobs()
	if err != nil {
		return nil, err
	}
	s, err := spec(req)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	job, err := m.Create(ctx, s)
	if err != nil {
		return nil, toStatus(ctx, ts.s.log, err)
	}
	return &modeldv1.CreateTrainingJobResponse{Job: jobProto(job)}, nil
}

// GetTrainingJob returns one job.
func (ts *trainService) GetTrainingJob(ctx context.Context, req *modeldv1.GetTrainingJobRequest) (*modeldv1.GetTrainingJobResponse, error) {
	m, err := ts.jobs()
	if err != nil {
		return nil, err
	}
	job, err := m.Get(req.GetId())
	if err != nil {
		return nil, toStatus(ctx, ts.s.log, err)
	}
	return &modeldv1.GetTrainingJobResponse{Job: jobProto(job)}, nil
}

// ListTrainingJobs pages through the jobs, newest first.
func (ts *trainService) ListTrainingJobs(ctx context.Context, req *modeldv1.ListTrainingJobsRequest) (*modeldv1.ListTrainingJobsResponse, error) {
	m, err := ts.jobs()
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = 50
	}
	size = min(size, 1000)
	jobs, next := m.List(req.GetPageToken(), size)
	resp := &modeldv1.ListTrainingJobsResponse{NextPageToken: next}
	for _, j := range jobs {
		resp.Jobs = append(resp.Jobs, jobProto(j))
	}
	return resp, nil
}

// CancelTrainingJob stops a queued or running job.
func (ts *trainService) CancelTrainingJob(ctx context.Context, req *modeldv1.CancelTrainingJobRequest) (*modeldv1.CancelTrainingJobResponse, error) {
	m, err := ts.jobs()
	if err != nil {
		return nil, err
	}
	job, err := m.Cancel(req.GetId())
	if err != nil {
		return nil, toStatus(ctx, ts.s.log, err)
	}
	return &modeldv1.CancelTrainingJobResponse{Job: jobProto(job)}, nil
}

func eventProto(ev train.Event) *modeldv1.TrainingEvent {
	pe := &modeldv1.TrainingEvent{Sequence: ev.Seq, Time: timestamppb.New(ev.Time)}
	switch {
	case ev.Step != nil:
		s := ev.Step
		pe.Kind = &modeldv1.TrainingEvent_Step{Step: &modeldv1.StepMetrics{Step: uint32(s.Step), TotalSteps: uint32(s.TotalSteps),
			Epoch: s.Epoch, Loss: s.Loss, LearningRate: s.LearningRate, GradNorm: s.GradNorm,
			TokensPerSecond: s.TokensPerSecond, Eta: durationpb.New(s.ETA)}}
	case ev.Eval != nil:
		pe.Kind = &modeldv1.TrainingEvent_Eval{Eval: &modeldv1.EvalMetrics{Step: uint32(ev.Eval.Step), EvalLoss: ev.Eval.EvalLoss, Perplexity: ev.Eval.Perplexity}}
	case ev.Checkpoint != nil:
		pe.Kind = &modeldv1.TrainingEvent_Checkpoint{Checkpoint: &modeldv1.CheckpointSaved{Step: uint32(ev.Checkpoint.Step), Path: ev.Checkpoint.Path}}
	case ev.Error != "":
		pe.Kind = &modeldv1.TrainingEvent_Error{Error: &modeldv1.TrainingError{Message: ev.Error}}
	default:
		pe.Kind = &modeldv1.TrainingEvent_StateChange{StateChange: &modeldv1.JobStateChange{State: jobStates[ev.State]}}
	}
	return pe
}

// WatchTrainingJob streams the job's events after after_sequence until the job ends.
func (ts *trainService) WatchTrainingJob(req *modeldv1.WatchTrainingJobRequest, stream grpc.ServerStreamingServer[modeldv1.WatchTrainingJobResponse]) error {
	m, err := ts.jobs()
	if err != nil {
		return err
	}
	err = m.Watch(stream.Context(), req.GetId(), req.GetAfterSequence(), func(ev train.Event) error {
		return stream.Send(&modeldv1.WatchTrainingJobResponse{Event: eventProto(ev)})
	})
	return toStatus(stream.Context(), ts.s.log, err)
}

// UploadDataset stores a dataset sent as a stream of chunks after an info message.
func (ts *trainService) UploadDataset(stream grpc.ClientStreamingServer[modeldv1.UploadDatasetRequest, modeldv1.UploadDatasetResponse]) error {
	m, err := ts.jobs()
	if err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return toStatus(stream.Context(), ts.s.log, err)
	}
	info := first.GetInfo()
	if info == nil {
		return status.Error(codes.InvalidArgument, "the first message must carry the dataset info (name and format)")
	}
	format := map[modeldv1.DatasetFormat]train.Format{
		modeldv1.DatasetFormat_DATASET_FORMAT_UNSPECIFIED:  train.FormatAuto,
		modeldv1.DatasetFormat_DATASET_FORMAT_TEXT:         train.FormatText,
		modeldv1.DatasetFormat_DATASET_FORMAT_JSONL_TEXT:   train.FormatJSONLText,
		modeldv1.DatasetFormat_DATASET_FORMAT_JSONL_TOKENS: train.FormatJSONLTokens,
	}[info.GetFormat()]
	limit := ts.s.opt.MaxUploadBytes
	if limit <= 0 {
		limit = DefaultMaxUploadBytes
	}
	d, err := m.Upload(stream.Context(), info.GetName(), format, &chunkReader{stream: stream}, limit)
	if err != nil {
		return toStatus(stream.Context(), ts.s.log, err)
	}
	return stream.SendAndClose(&modeldv1.UploadDatasetResponse{DatasetId: d.ID, SizeBytes: uint64(d.Size), Sha256: d.SHA256, NumExamples: uint64(d.Examples)})
}

// chunkReader reads the chunks of an UploadDataset stream as one byte stream.
type chunkReader struct {
	stream grpc.ClientStreamingServer[modeldv1.UploadDatasetRequest, modeldv1.UploadDatasetResponse]
	buf    []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		msg, err := r.stream.Recv()
		if err != nil {
			return 0, err // io.EOF at the end
		}
		if msg.GetInfo() != nil {
			return 0, status.Error(codes.InvalidArgument, "dataset info sent twice")
		}
		r.buf = msg.GetChunk()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}
