// Command modeld is the modeld daemon: it serves the GPT-2 models of a models directory over
// gRPC (GenerateService, ModelService, grpc.health.v1, server reflection).
//
// Every flag can also be set by an environment variable: MODELD_ and the flag's name in upper
// case with '-' as '_' (MODELD_MODELS_DIR for --models-dir). A flag on the command line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/modeld-dev/modeld/backend"
	_ "github.com/modeld-dev/modeld/backend/cpu" // registers "cpu"
	"github.com/modeld-dev/modeld/internal/builtin"
	"github.com/modeld-dev/modeld/internal/engine"
	"github.com/modeld-dev/modeld/internal/registry"
	"github.com/modeld-dev/modeld/internal/server"
	"github.com/modeld-dev/modeld/internal/train"
)

type config struct {
	addr, modelsDir, dataDir, backend string
	defaultModel                      string
	maxQueuedJobs                     int
	maxUploadMiB                      int64
	logFormat, logLevel               string
	engine                            engine.Config
	kvCacheMiB                        int
	maxPromptTokens, maxNewTokens     int
	drainTimeout                      time.Duration
	hubEndpoint                       string
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("modeld", flag.ContinueOnError)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:50051", "address to listen on (host:port)")
	fs.StringVar(&c.modelsDir, "models-dir", "models", "directory of model folders (Hugging Face layout); a model's name is its folder's name")
	fs.StringVar(&c.dataDir, "data-dir", "data", "directory of training jobs, their events and checkpoints, and uploaded datasets; a job's data_paths must lie inside it (\"\" disables TrainService)")
	fs.IntVar(&c.maxQueuedJobs, "max-queued-jobs", 16, "most training jobs waiting; more get RESOURCE_EXHAUSTED")
	fs.Int64Var(&c.maxUploadMiB, "max-upload-mib", 1024, "largest dataset UploadDataset accepts, in MiB")
	fs.StringVar(&c.backend, "backend", "auto", "compute backend: auto, cpu or cuda")
	fs.StringVar(&c.defaultModel, "default-model", builtin.Name, "model for requests that name none; loaded at start (the built-in "+builtin.Name+" is written into --models-dir if missing; \"\" for none)")
	fs.IntVar(&c.engine.MaxBatchTokens, "max-batch-tokens", 512, "most tokens in one batched step (decodes plus prompt chunks)")
	fs.IntVar(&c.engine.MaxRunning, "max-running", 64, "most sequences decoding at once per model")
	fs.IntVar(&c.engine.MaxQueue, "max-queue", 256, "most requests waiting per model; more get RESOURCE_EXHAUSTED")
	fs.IntVar(&c.engine.MaxN, "max-n", 16, "largest n (sequences per request)")
	fs.IntVar(&c.engine.BlockSize, "kv-block-size", 16, "positions per KV-cache block")
	fs.IntVar(&c.kvCacheMiB, "kv-cache-mib", 0, "KV-cache memory per model in MiB (0: enough for max-running full-context sequences, at most 1024)")
	fs.IntVar(&c.maxPromptTokens, "max-prompt-tokens", 0, "most prompt tokens per request (0: the model's context)")
	fs.IntVar(&c.maxNewTokens, "max-new-tokens", 0, "largest max_new_tokens per request (0: the model's context)")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM/SIGINT, how long running requests may finish before the server stops")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.hubEndpoint, "hub-endpoint", "https://huggingface.co", "Hugging Face Hub for PullModel (HF_ENDPOINT also sets it; HF_TOKEN authenticates)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: modeld [flags]\n\nServes the models of --models-dir over gRPC. Every flag can also be set by an environment\nvariable: MODELD_ and the flag's name in upper case with '-' as '_' (MODELD_MODELS_DIR).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := "MODELD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok && !set[f.Name] && err == nil {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s=%q: %w", env, v, e)
			}
		}
	})
	if v, ok := os.LookupEnv("HF_ENDPOINT"); ok && !set["hub-endpoint"] {
		c.hubEndpoint = v
	}
	c.engine.KVCacheBytes = int64(c.kvCacheMiB) << 20
	return c, err
}

func newLogger(c config) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", c.logFormat)
}

func main() {
	c, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "modeld:", err)
		os.Exit(2)
	}
	log, err := newLogger(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "modeld:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, log); err != nil {
		log.Error("modeld stopped", "err", err)
		os.Exit(1)
	}
}

// run serves until ctx ends (SIGINT or SIGTERM in main), then drains.
func run(ctx context.Context, c config, log *slog.Logger) error {
	// Check the backend choice once at start, and say why better ones were skipped.
	b, skipped, err := backend.Open(c.backend)
	if err != nil {
		return err
	}
	for _, why := range skipped {
		log.Info("backend skipped", "reason", why)
	}
	if c.backend == "auto" && !slices.Contains(backend.Names(), "cuda") {
		log.Info("backend skipped", "backend", "cuda", "reason", "this build has no CUDA backend")
	}
	log.Info("backend selected", "backend", b.Name(), "registered", backend.Names())
	chosen := b.Name()
	b.Close()

	reg, err := registry.New(registry.Options{
		Dir: c.modelsDir,
		Backend: func() (backend.Backend, error) {
			b, _, err := backend.Open(chosen)
			return b, err
		},
		Engine: c.engine,
		Log:    log,
	})
	if err != nil {
		return err
	}
	defer reg.Close()
	var jobs *train.Manager
	if c.dataDir != "" {
		jobs, err = train.Open(train.Options{
			DataDir:   c.dataDir,
			Registry:  reg,
			Backend:   func() (backend.Backend, error) { b, _, err := backend.Open(chosen); return b, err },
			MaxQueued: c.maxQueuedJobs,
			Log:       log,
		})
		if err != nil {
			return err
		}
		defer jobs.Close()
	}
	srv := server.New(server.Options{
		Registry:        reg,
		Train:           jobs,
		MaxUploadBytes:  c.maxUploadMiB << 20,
		Hub:             registry.Hub{Endpoint: c.hubEndpoint, Token: os.Getenv("HF_TOKEN")},
		DefaultModel:    c.defaultModel,
		MaxPromptTokens: c.maxPromptTokens,
		MaxNewTokens:    c.maxNewTokens,
		Log:             log,
	})
	if c.defaultModel == builtin.Name {
		wrote, err := builtin.Install(c.modelsDir)
		if err != nil {
			return err
		}
		if wrote {
			log.Info("built-in model installed", "model", builtin.Name, "models_dir", c.modelsDir)
		}
	}
	if c.defaultModel != "" {
		if err := srv.Load(ctx, c.defaultModel); err != nil {
			return fmt.Errorf("default model: %w", err)
		}
	}
	lis, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	g := srv.GRPCServer()
	served := make(chan error, 1)
	go func() { served <- g.Serve(lis) }()
	log.Info("modeld serving", "addr", lis.Addr().String(), "models_dir", c.modelsDir, "data_dir", c.dataDir, "default_model", c.defaultModel)

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("draining", "timeout", c.drainTimeout)
	srv.Drain()
	stopped := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(c.drainTimeout):
		log.Warn("drain timeout: stopping the requests still running")
		g.Stop()
	}
	return nil
}
