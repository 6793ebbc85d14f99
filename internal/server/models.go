package server

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/modeld-dev/modeld/internal/registry"
	modeldv1 "github.com/modeld-dev/modeld/proto/modeld/v1"
)

type modelService struct {
	modeldv1.UnimplementedModelServiceServer
	s *Server
}

func modelProto(in registry.Info) *modeldv1.Model {
	c := in.Config
	m := &modeldv1.Model{
		Name: in.Name,
		State: map[registry.State]modeldv1.ModelState{
			registry.Available: modeldv1.ModelState_MODEL_STATE_AVAILABLE,
			registry.Loading:   modeldv1.ModelState_MODEL_STATE_LOADING,
			registry.Loaded:    modeldv1.ModelState_MODEL_STATE_LOADED,
			registry.Failed:    modeldv1.ModelState_MODEL_STATE_FAILED,
		}[in.State],
		Config: &modeldv1.ModelConfig{VocabSize: uint32(c.VocabSize), NPositions: uint32(c.NPositions),
			NEmbd: uint32(c.NEmbd), NLayer: uint32(c.NLayer), NHead: uint32(c.NHead)},
		HasTokenizer: in.HasTokenizer,
		Source:       in.Path,
		SizeBytes:    uint64(in.SizeBytes),
		Error:        in.Err,
	}
	if in.Err == "" {
		m.NumParameters = uint64(c.NumParams())
	}
	if !in.LoadedAt.IsZero() {
		m.LoadTime = timestamppb.New(in.LoadedAt)
	}
	return m
}

// ListModels lists the models of the models directory.
func (ms *modelService) ListModels(ctx context.Context, _ *modeldv1.ListModelsRequest) (*modeldv1.ListModelsResponse, error) {
	list, err := ms.s.opt.Registry.List()
	if err != nil {
		return nil, toStatus(ctx, ms.s.log, err)
	}
	resp := &modeldv1.ListModelsResponse{}
	for _, in := range list {
		resp.Models = append(resp.Models, modelProto(in))
	}
	return resp, nil
}

// GetModel describes one model.
func (ms *modelService) GetModel(ctx context.Context, req *modeldv1.GetModelRequest) (*modeldv1.GetModelResponse, error) {
	in, err := ms.s.opt.Registry.Get(req.GetName())
	if err != nil {
		return nil, toStatus(ctx, ms.s.log, err)
	}
	return &modeldv1.GetModelResponse{Model: modelProto(in)}, nil
}

// LoadModel loads a model and returns when it serves.
func (ms *modelService) LoadModel(ctx context.Context, req *modeldv1.LoadModelRequest) (*modeldv1.LoadModelResponse, error) {
	if _, err := ms.s.engineFor(ctx, req.GetName()); err != nil {
		return nil, toStatus(ctx, ms.s.log, err)
	}
	in, err := ms.s.opt.Registry.Get(req.GetName())
	if err != nil {
		return nil, toStatus(ctx, ms.s.log, err)
	}
	return &modeldv1.LoadModelResponse{Model: modelProto(in)}, nil
}

// UnloadModel stops serving a model; its running requests end.
func (ms *modelService) UnloadModel(ctx context.Context, req *modeldv1.UnloadModelRequest) (*modeldv1.UnloadModelResponse, error) {
	in, err := ms.s.opt.Registry.Get(req.GetName())
	if err != nil {
		return nil, toStatus(ctx, ms.s.log, err)
	}
	if err := ms.s.opt.Registry.Unload(req.GetName()); err != nil {
		return nil, toStatus(ctx, ms.s.log, err)
	}
	in, err = ms.s.opt.Registry.Get(in.Name)
	if err != nil {
		return nil, toStatus(ctx, ms.s.log, err)
	}
	return &modeldv1.UnloadModelResponse{Model: modelProto(in)}, nil
}

// PullModel downloads a model from the Hugging Face Hub, streaming progress.
func (ms *modelService) PullModel(req *modeldv1.PullModelRequest, stream grpc.ServerStreamingServer[modeldv1.PullModelResponse]) error {
	if req.GetRepo() == "" {
		return status.Error(codes.InvalidArgument, "repo is required, e.g. openai-community/gpt2")
	}
	var sendErr error
	progress := func(p registry.PullProgress) {
		if sendErr != nil {
			return
		}
		total := uint64(0)
		if p.Total > 0 {
			total = uint64(p.Total)
		}
		sendErr = stream.Send(&modeldv1.PullModelResponse{File: p.File, BytesDone: uint64(p.Done), BytesTotal: total})
	}
	in, err := ms.s.opt.Registry.Pull(stream.Context(), ms.s.opt.Hub, req.GetRepo(), req.GetRevision(), req.GetName(), progress)
	if sendErr != nil {
		return sendErr
	}
	if err != nil {
		return toStatus(stream.Context(), ms.s.log, err)
	}
	return stream.Send(&modeldv1.PullModelResponse{Done: true, Model: modelProto(in)})
}
