// Command modelcli is the command-line client of modeld: it streams generated text, tokenizes,
// manages and pulls models, fine-tunes them and follows the training jobs, and load-tests a
// server.
//
// Usage:
//
//	modelcli [global flags] COMMAND [flags] [ARGS]
//
// Global flags go before or after the command:
//
//	--addr HOST:PORT   server address (default 127.0.0.1:50051, or $MODELD_ADDR)
//	--timeout D        deadline of each call, e.g. 30s (default 0: none); in bench, of each request
//	--output FORMAT    text (default) or json: one protojson line per response message, with the
//	                   field names of the .proto files (bench prints one JSON object)
//
// Connection flags, global too:
//
//	--tls                  connect with TLS, verifying the server against the system's CAs
//	--tls-ca FILE          PEM CA bundle to verify the server with instead (implies --tls)
//	--tls-cert, --tls-key  PEM client certificate and key, for a server that requires them (mutual
//	                       TLS; implies --tls)
//	--tls-server-name N    the name to verify the server's certificate against (default: the
//	                       host of --addr; implies --tls)
//	--token TOKEN          bearer token sent with every call (default $MODELD_TOKEN; prefer the
//	                       variable: a flag shows in the process list)
//
// modelcli pings the server after 30 s without activity (gRPC keepalive), so that a long, quiet
// stream (a queued request, a training job between events) survives load balancers' idle
// timeouts.
//
// Errors print the gRPC status on stderr ("modelcli: NotFound: ...") and exit 1; a bad
// command line exits 2; Ctrl-C cancels the call and exits 130.
//
// # generate
//
// Continue a prompt and stream the text to stdout as it arrives; a one-line summary (finish reason,
// token counts, TTFT and total time, from the server's timings) goes to stderr:
//
//	modelcli generate --model gpt2 --max-new-tokens 64 --temperature 0.8 --top-p 0.95 "The meaning of life is"
//	modelcli generate --model gpt2 --temperature 0 --stop $'\n' --logit-bias 50256=-100 $'Q: What is 2+2?\nA:'
//	modelcli generate --model gpt2 --seed 42 --n 3 "Once upon a time"
//	modelcli generate --model gpt2 --prompt-ids 464,3290,318 --temperature 0 --output json
//	modelcli generate --model gpt2 --logprobs 5 --output json "Hello"
//
// Every GenerateRequest field has a flag (see modelcli generate -h). Sampling flags the command line
// does not set are not sent, so the server's defaults apply. With --n 1 the text streams; with --n
// above 1 the sequences arrive interleaved, so each is collected and printed at the end as a
// "=== sequence i ===" block. A model without a tokenizer streams no text: the generated token ids
// are printed instead. Log probabilities are shown by --output json only.
//
// # tokenize
//
// Print the token ids of a text under a model's tokenizer:
//
//	modelcli tokenize --model gpt2 "Hello, world"
//	modelcli tokenize --model gpt2 --output json "Hello, world"
//
// # models
//
// List, inspect, load, unload and download models:
//
//	modelcli models list
//	modelcli models get gpt2
//	modelcli models load gpt2
//	modelcli models unload gpt2
//	modelcli models pull openai-community/gpt2
//	modelcli models pull openai-community/gpt2 --revision main --name gpt2-hub
//
// list prints a table of name, state, parameters, layers/embedding width, tokenizer and size on
// disk. pull shows each file's progress on stderr while the server downloads it from the Hugging
// Face Hub.
//
// # bench
//
// Load-test the server the way vLLM's benchmark_serving does: --concurrency streams run at once
// until --requests requests are done or --duration has passed, and the report gives TTFT,
// inter-token latency (ITL), time per output token (TPOT) and end-to-end latency (mean, p50, p90,
// p99), output tokens/s and requests/s over the run's wall time, and the errors by status code:
//
//	modelcli bench --model gpt2 --concurrency 16 --requests 256 --prompt-len 128 --max-new-tokens 128
//	modelcli bench --model gpt2 --prompt "The quick brown fox" --requests 64 --output json
//
// Definitions: TTFT is the time from sending a request to the first message that carries tokens;
// ITL is the gap between two successive token-bearing messages of a sequence divided by the
// tokens of the later one (one entry per token); TPOT is (end-to-end - TTFT) / (output tokens - 1)
// per request; end-to-end is the time from sending the request to the end of its stream.
// Without --prompt, each request gets a fresh random prompt of --prompt-len tokens: random
// single-token words when the model has a tokenizer, random token ids in [0, 256) when it has
// none. One untimed request runs first, which loads the model and checks the settings. Requests
// that fail are counted by status code and make the command exit 1 after the report.
//
// # train
//
// Fine-tune a model on local files, as OpenAI's fine-tuning API does with the hyperparameters of
// Hugging Face's TrainingArguments: each --data file is uploaded (UploadDataset, in 64 KiB
// chunks), the job is created, its id is printed on stdout, and the command follows the job with
// a progress bar (step/total, loss, learning rate, tokens/s, ETA) on a terminal, or one line per
// step elsewhere, printing evaluations and checkpoints as they come:
//
//	modelcli train --base gpt2 --data shakespeare.txt --output-model gpt2-shakespeare
//	modelcli train --base gpt2 --data train.jsonl --eval-data valid.jsonl --output-model gpt2-chat \
//	    --epochs 2 --batch-size 4 --seq-len 512 --learning-rate 3e-5 --lr-scheduler cosine --warmup-steps 100
//	modelcli train --from-scratch-config vocab=257,positions=256,embd=192,layers=4,heads=6 \
//	    --tokenizer-model bytes --data-path shakespeare/input.txt --output-model bytes-shakespeare --max-steps 2000
//	modelcli train --base gpt2 --data notes.txt --output-model gpt2-notes --max-steps 500 --detach
//
// It exits 0 when the job succeeds and 1 when it fails (printing the job's error) or is
// cancelled. Hyperparameter flags that are not given are not sent, so the server's defaults
// apply. --data-path names a file already on the server, inside its --data-dir. --detach returns
// once the job is queued. Ctrl-C stops following, not the job: it prints "job continues on the
// server: modelcli jobs watch ID" and exits 130. With --output json, stdout has one protojson
// line per response: each upload's, the created job's, then each event's.
//
// # jobs
//
// List, inspect, follow and cancel training jobs:
//
//	modelcli jobs list
//	modelcli jobs list --page-size 10 --page-token ftjob-0123456789abcdef01234567
//	modelcli jobs get ftjob-0123456789abcdef01234567
//	modelcli jobs watch ftjob-0123456789abcdef01234567
//	modelcli jobs watch ftjob-0123456789abcdef01234567 --after-sequence 40 --output json
//	modelcli jobs cancel ftjob-0123456789abcdef01234567
//
// list prints a table of id, state, base model, output model, step/total, last loss and creation
// time, newest first. watch follows a job as train does and exits the same way. cancel stops a
// queued job at once and a running one at the end of its current step; cancelling a finished job
// is FailedPrecondition.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Exit codes.
const (
	exitOK          = 0
	exitError       = 1   // the server or the connection failed
	exitUsage       = 2   // a bad command line
	exitInterrupted = 130 // Ctrl-C, as a shell reports SIGINT
)

const defaultAddr = "127.0.0.1:50051"

const usageText = `usage: modelcli [global flags] COMMAND [flags] [ARGS]

commands:
  generate [flags] PROMPT     stream a continuation of PROMPT (or of --prompt-ids)
  tokenize [--model M] TEXT   print the token ids of TEXT
  models list                 list the server's models
  models get NAME             describe a model
  models load NAME            load a model onto the server's backend
  models unload NAME          free a model's device memory
  models pull REPO            download a model from the Hugging Face Hub (--revision R, --name N)
  bench [flags]               load-test the server: TTFT, ITL, TPOT, latency, throughput
  train [flags]               fine-tune a model on local files (--base, --data, --output-model)
                              and follow the job
  jobs list                   list the training jobs, newest first
  jobs get ID                 describe a training job
  jobs watch ID               follow a training job until it ends
  jobs cancel ID              stop a queued or running training job

Run 'modelcli COMMAND -h' for the flags of a command.

global flags (before or after COMMAND):
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// globals are the flags every command accepts.
type globals struct {
	addr    string
	timeout time.Duration
	output  string

	tls                            bool
	tlsCA, tlsCert, tlsKey, tlsSNI string
	token                          string
}

// register adds the global flags to fs. Their defaults are the current values, so a flag given
// before the command stays in force when the command's flag set is parsed.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.addr, "addr", g.addr, "server address `host:port` ($MODELD_ADDR)")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "deadline of each call, e.g. 30s; 0 for none (in bench: of each request)")
	fs.StringVar(&g.output, "output", g.output, "output `format`: text, or json (protojson lines with the proto field names)")
	fs.BoolVar(&g.tls, "tls", g.tls, "connect with TLS, verifying the server against the system's CAs")
	fs.StringVar(&g.tlsCA, "tls-ca", g.tlsCA, "PEM CA bundle to verify the server with (implies --tls)")
	fs.StringVar(&g.tlsCert, "tls-cert", g.tlsCert, "PEM client certificate, for mutual TLS (with --tls-key; implies --tls)")
	fs.StringVar(&g.tlsKey, "tls-key", g.tlsKey, "PEM private key of --tls-cert")
	fs.StringVar(&g.tlsSNI, "tls-server-name", g.tlsSNI, "`name` to verify the server's certificate against (default: the host of --addr; implies --tls)")
	fs.StringVar(&g.token, "token", g.token, "bearer token sent with every call ($MODELD_TOKEN; prefer the variable, a flag shows in the process list)")
}

// cli is one invocation of modelcli.
type cli struct {
	globals
	stdout, stderr io.Writer
}

// command is a subcommand: it parses its own flags from args.
type command func(c *cli, ctx context.Context, args []string) error

var commands = map[string]command{
	"generate": (*cli).generate,
	"tokenize": (*cli).tokenize,
	"models":   (*cli).models,
	"bench":    (*cli).bench,
	"train":    (*cli).train,
	"jobs":     (*cli).jobs,
}

// run runs modelcli with the command-line arguments args (without the program name) and returns
// the exit code. Cancelling ctx cancels the call in progress.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr}
	c.addr = defaultAddr
	if v := os.Getenv("MODELD_ADDR"); v != "" {
		c.addr = v
	}
	c.output = "text"
	c.token = os.Getenv("MODELD_TOKEN")
	fs := flag.NewFlagSet("modelcli", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fs.PrintDefaults()
	}
	c.register(fs)
	if err := fs.Parse(args); err != nil {
		return c.exit(ctx, parseError(err))
	}
	if fs.NArg() == 0 || fs.Arg(0) == "help" {
		fs.Usage()
		if fs.NArg() == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd, ok := commands[fs.Arg(0)]
	if !ok {
		return c.exit(ctx, usagef("unknown command %q; run 'modelcli help'", fs.Arg(0)))
	}
	return c.exit(ctx, cmd(c, ctx, fs.Args()[1:]))
}

// usageError is a bad command line; run exits 2. An empty msg means the flag package has
// already printed the problem.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

// parseError turns an error of flag.FlagSet.Parse, which has already been printed, into the
// error run reports.
func parseError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return usageError{}
}

// exit prints err, if any, and returns the exit code for it.
func (c *cli) exit(ctx context.Context, err error) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		if ue.msg != "" {
			fmt.Fprintln(c.stderr, "modelcli:", ue.msg)
		}
		return exitUsage
	}
	var se interface {
		error
		GRPCStatus() *status.Status
	}
	if errors.As(err, &se) {
		// Keep the context a wrapping error adds ("test request: "), then the status.
		prefix := strings.TrimSuffix(err.Error(), se.Error())
		st := se.GRPCStatus()
		fmt.Fprintf(c.stderr, "modelcli: %s%s: %s\n", prefix, st.Code(), st.Message())
	} else {
		fmt.Fprintln(c.stderr, "modelcli:", err)
	}
	if ctx.Err() != nil {
		return exitInterrupted
	}
	return exitError
}

// flagSet returns the flag set of a command, with the global flags. synopsis follows the command's
// name in the usage line; about explains the command.
func (c *cli) flagSet(name, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet("modelcli "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "usage: modelcli %s %s\n\n%s\n\nflags:\n", name, synopsis, strings.TrimSpace(about))
		fs.PrintDefaults()
	}
	c.register(fs)
	return fs
}

// parse parses args with fs, allowing flags between and after the positional arguments (the flag
// package stops at the first one), and returns the positional arguments. Everything after "--" is
// positional.
func (c *cli) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, parseError(err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if c.output != "text" && c.output != "json" {
		return nil, usagef("--output %q: want text or json", c.output)
	}
	return pos, nil
}

// dial returns a connection to the server, with TLS and the bearer token as the connection flags
// say, and keepalive pings. It connects lazily: a server that is not there shows up as
// Unavailable on the first call. Errors are bad connection flags or unreadable files.
func (c *cli) dial() (*grpc.ClientConn, error) {
	creds, err := c.transportCredentials()
	if err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// Within the server's default enforcement (--keepalive-min-time 10s).
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
	if c.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken{token: c.token, secure: c.usesTLS()}))
	}
	conn, err := grpc.NewClient(c.addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("--addr %s: %w", c.addr, err)
	}
	return conn, nil
}

// usesTLS reports whether the connection flags ask for TLS.
func (c *cli) usesTLS() bool {
	return c.tls || c.tlsCA != "" || c.tlsCert != "" || c.tlsKey != "" || c.tlsSNI != ""
}

// transportCredentials returns TLS credentials built from the connection flags, or plaintext
// ones without them.
func (c *cli) transportCredentials() (credentials.TransportCredentials, error) {
	if !c.usesTLS() {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{ServerName: c.tlsSNI, MinVersion: tls.VersionTLS12}
	if c.tlsCA != "" {
		pem, err := os.ReadFile(c.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate", c.tlsCA)
		}
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return nil, usagef("--tls-cert and --tls-key go together")
	}
	if c.tlsCert != "" {
		pair, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(cfg), nil
}

// bearerToken sends "authorization: Bearer TOKEN" with every call. It may travel without TLS,
// since modeld accepts tokens in clear text on loopback; secure says whether it travels with TLS.
type bearerToken struct {
	token  string
	secure bool
}

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearerToken) RequireTransportSecurity() bool { return b.secure }

// callContext returns ctx with the --timeout deadline, if any.
func (c *cli) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.timeout > 0 {
		return context.WithTimeout(ctx, c.timeout)
	}
	return context.WithCancel(ctx)
}

func (c *cli) json() bool { return c.output == "json" }

var jsonOptions = protojson.MarshalOptions{UseProtoNames: true}

// printJSON writes m to stdout as one protojson line.
func (c *cli) printJSON(m proto.Message) error {
	b, err := jsonOptions.Marshal(m)
	if err != nil {
		return err
	}
	_, err = c.stdout.Write(append(b, '\n'))
	return err
}

// flush flushes w if it buffers (a *bufio.Writer, say); os.Stdout does not.
func flush(w io.Writer) error {
	if f, ok := w.(interface{ Flush() error }); ok {
		return f.Flush()
	}
	return nil
}

// isTerminal reports whether w is a terminal, where a progress line may be redrawn with '\r'.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
