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
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/modeld-dev/modeld/backend"
	_ "github.com/modeld-dev/modeld/backend/cpu"  // registers "cpu"
	_ "github.com/modeld-dev/modeld/backend/cuda" // registers "cuda"
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
	metricsAddr                       string // observability.go

	// Security and limits (security.go). authTokens is MODELD_AUTH_TOKENS: no flag, so that
	// tokens stay out of the process list.
	authTokenFile, authTokens       string
	insecure                        bool
	tlsCert, tlsKey, tlsClientCA    string
	maxMessageBytes, rateBurst      int
	rateLimit                       float64
	maxConcurrentStreams            uint
	keepaliveTime, keepaliveTimeout time.Duration
	keepaliveMinTime                time.Duration
	logPayloads                     bool
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
	fs.Func("weights-dtype", "dtype of the matmul weights for inference: f32 (default) or bf16 (half the bytes a decode step reads, logits within a few hundredths; CPU backend)", func(v string) error {
		if v != "f32" && v != "bf16" {
			return fmt.Errorf("want f32 or bf16, not %q", v)
		}
		c.engine.WeightsBF16 = v == "bf16"
		return nil
	})
	fs.IntVar(&c.kvCacheMiB, "kv-cache-mib", 0, "KV-cache memory per model in MiB (0: enough for max-running full-context sequences, at most 1024)")
	fs.IntVar(&c.maxPromptTokens, "max-prompt-tokens", 0, "most prompt tokens per request (0: the model's context)")
	fs.IntVar(&c.maxNewTokens, "max-new-tokens", 0, "largest max_new_tokens per request (0: the model's context)")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM/SIGINT, how long running requests may finish before the server stops")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.hubEndpoint, "hub-endpoint", "https://huggingface.co", "Hugging Face Hub for PullModel (HF_ENDPOINT also sets it; HF_TOKEN authenticates)")
	fs.StringVar(&c.metricsAddr, "metrics-addr", "", "address (host:port) serving Prometheus metrics on /metrics, e.g. 127.0.0.1:9464 (\"\": none); tracing is set by the OTEL_* variables")
	fs.StringVar(&c.authTokenFile, "auth-token-file", "", "file of the bearer tokens clients must send (one a line, # comments; MODELD_AUTH_TOKENS adds comma-separated ones); none: no authentication")
	fs.BoolVar(&c.insecure, "insecure", false, "allow listening beyond loopback without authentication (bearer tokens or client certificates)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM certificate (chain) of the server; with --tls-key, serve TLS")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&c.tlsClientCA, "tls-client-ca", "", "PEM CA bundle: require client certificates it signed (mutual TLS)")
	fs.IntVar(&c.maxMessageBytes, "max-message-bytes", 4<<20, "largest request message in bytes (an UploadDataset chunk, a prompt); larger get RESOURCE_EXHAUSTED")
	fs.Float64Var(&c.rateLimit, "rate-limit", 0, "calls per second each client may start (a stream counts once), by token or else IP; more get RESOURCE_EXHAUSTED (0: no limit)")
	fs.IntVar(&c.rateBurst, "rate-burst", 0, "calls a client may start at once above --rate-limit (0: ceil(--rate-limit))")
	fs.UintVar(&c.maxConcurrentStreams, "max-concurrent-streams", 1024, "most concurrent calls per client connection; more wait in the client (0: gRPC's limit, 2^32-1)")
	fs.DurationVar(&c.keepaliveTime, "keepalive-time", 30*time.Second, "ping a client after this long without activity, keeping idle streams alive through load balancers")
	fs.DurationVar(&c.keepaliveTimeout, "keepalive-timeout", 10*time.Second, "close a connection whose ping is not answered within this time")
	fs.DurationVar(&c.keepaliveMinTime, "keepalive-min-time", 10*time.Second, "shortest interval between a client's pings; clients pinging more often are disconnected")
	fs.BoolVar(&c.logPayloads, "log-payloads", false, "log every request and response message: prompts, generated text, training data (off: no content is logged)")
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
	c.authTokens = os.Getenv("MODELD_AUTH_TOKENS")
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
	tokens, err := readTokens(c.authTokenFile, c.authTokens)
	if err != nil {
		return err
	}
	transport, err := transportOptions(c)
	if err != nil {
		return err
	}
	if err := checkExposure(c, len(tokens) > 0); err != nil {
		return err
	}
	// Check the backend choice once at start, and say why better ones were skipped.
	b, skipped, err := backend.Open(c.backend)
	if err != nil {
		return err
	}
	for _, why := range skipped {
		log.Info("backend skipped", "reason", why)
	}
	log.Info("backend selected", "backend", b.Name(), "registered", backend.Names())
	chosen := b.Name()
	b.Close()

	obs, err := startObservability(ctx, c.metricsAddr, log)
	if err != nil {
		return err
	}
	defer obs.close()
	reg, err := registry.New(registry.Options{
		Dir: c.modelsDir,
		Backend: func() (backend.Backend, error) {
			b, _, err := backend.Open(chosen)
			return b, err
		},
		Engine:   c.engine,
		Observer: obs.engineObserver,
		Log:      log,
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
			Observer:  obs.trainObserver(),
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
		AuthTokens:      tokens,
		RateLimit:       c.rateLimit,
		RateBurst:       c.rateBurst,
		MaxRecvMsgBytes: c.maxMessageBytes,
		LogPayloads:     c.logPayloads,

		UnaryInterceptors:  obs.unaryInterceptors(),
		StreamInterceptors: obs.streamInterceptors(),
	})
	if c.defaultModel == builtin.Name {
		st, err := builtin.Install(c.modelsDir)
		if err != nil {
			return err
		}
		switch st {
		case builtin.Installed:
			log.Info("built-in model installed", "model", builtin.Name, "models_dir", c.modelsDir)
		case builtin.Differs:
			log.Warn("the models folder's "+builtin.Name+" differs from this build's built-in model; serving the folder's (remove it to install the current one)",
				"path", filepath.Join(c.modelsDir, builtin.Name))
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
	g := srv.GRPCServer(append(transport, obs.serverOptions()...)...)
	obs.watch(g, reg, jobs)
	served := make(chan error, 1)
	go func() { served <- g.Serve(lis) }()
	log.Info("modeld serving", "addr", lis.Addr().String(), "models_dir", c.modelsDir, "data_dir", c.dataDir, "default_model", c.defaultModel,
		"tls", c.tlsCert != "", "client_certs", c.tlsClientCA != "", "auth_tokens", len(tokens), "rate_limit", c.rateLimit)
	if len(tokens) > 0 && c.tlsCert == "" {
		if local, _ := loopback(c.addr); !local {
			log.Warn("bearer tokens travel in clear text: give --tls-cert and --tls-key")
		}
	}

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
