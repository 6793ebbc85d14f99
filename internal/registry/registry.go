// Package registry keeps the models of a models directory: each model is a Hugging Face folder
// under the directory, named by the folder's name. It lists them, loads one into a generation
// engine on first use (or on request), unloads it, and pulls new ones from the Hugging Face Hub.
package registry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/internal/engine"
	"github.com/modeld-dev/modeld/model"
	"github.com/modeld-dev/modeld/tokenizer"
)

// ErrInvalidName is wrapped by errors for a model name that is empty, starts with a dot, or
// holds a character outside [A-Za-z0-9._-] or "..", or is longer than 128 characters (see [ValidName]).
var ErrInvalidName = errors.New("invalid model name")

// ErrExists is wrapped when a model of that name exists already (pull, train output).
var ErrExists = errors.New("model exists")

// State is where a model is in its life.
type State int

const (
	// Available is on disk, not loaded.
	Available State = iota + 1
	// Loading is being read into memory.
	Loading
	// Loaded is serving.
	Loaded
	// Failed did not load; Info.Err says why.
	Failed
)

// Info describes one model.
type Info struct {
	Name string
	// Path is the model's folder.
	Path  string
	State State
	// Config is the model's config.json; zero if it could not be read (see Err).
	Config model.Config
	// HasTokenizer is false for a folder without tokenizer files: it serves token ids only.
	HasTokenizer bool
	// SizeBytes is the size of the folder's files.
	SizeBytes int64
	// Err is why the model failed to load or its config could not be read.
	Err string
	// LoadedAt is when the model finished loading; zero unless State is Loaded.
	LoadedAt time.Time
}

// Options configure a Registry.
type Options struct {
	// Dir is the models directory.
	Dir string
	// Backend opens a backend for a model being loaded.
	Backend func() (backend.Backend, error)
	// Engine configures each model's engine.
	Engine engine.Config
	// Observer, if set, gives the engine.Observer of the model name's engine (its
	// Engine.Observer is then ignored).
	Observer func(name string) engine.Observer
	// Log receives load and unload events; slog.Default() if nil.
	Log *slog.Logger
}

// Registry is the set of models under a directory. It is safe for concurrent use.
type Registry struct {
	opt Options

	mu     sync.Mutex
	loaded map[string]*slot
	closed bool
}

// slot is a model being loaded or loaded. ready closes when the load ends.
type slot struct {
	ready    chan struct{}
	engine   *engine.Engine
	err      error
	loadedAt time.Time
}

// New returns the registry of opt.Dir, creating the directory if needed.
func New(opt Options) (*Registry, error) {
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	if err := os.MkdirAll(opt.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return &Registry{opt: opt, loaded: map[string]*slot{}}, nil
}

// Dir is the models directory.
func (r *Registry) Dir() string { return r.opt.Dir }

// ValidName reports whether name can name a model folder: 1 to 128 characters of
// [A-Za-z0-9._-], not starting with a dot and without "..", as ModelService documents. The
// allowlist keeps names free of path separators, control characters and anything a shell or a
// log line would read differently. The error wraps [ErrInvalidName].
func ValidName(name string) error {
	ok := name != "" && len(name) <= 128 && name[0] != '.' && !strings.Contains(name, "..")
	for _, c := range []byte(name) {
		ok = ok && ('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-')
	}
	if !ok {
		return fmt.Errorf("registry: %w: %q: want 1 to 128 characters of A-Z a-z 0-9 . _ -, not starting with '.' and without \"..\"", ErrInvalidName, name)
	}
	return nil
}

// Path returns the folder of the model name; it fails for an invalid name.
func (r *Registry) Path(name string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	return filepath.Join(r.opt.Dir, name), nil
}

// List describes every model folder (a folder with a config.json), sorted by name.
func (r *Registry) List() ([]Info, error) {
	entries, err := os.ReadDir(r.opt.Dir)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	var out []Info
	for _, e := range entries {
		if !e.IsDir() || ValidName(e.Name()) != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(r.opt.Dir, e.Name(), "config.json")); err != nil {
			continue
		}
		out = append(out, r.info(e.Name()))
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Get describes the model name, or fails with an error wrapping fs.ErrNotExist.
func (r *Registry) Get(name string) (Info, error) {
	dir, err := r.Path(name)
	if err != nil {
		return Info{}, err
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		return Info{}, fmt.Errorf("registry: no model %q in %s (a model is a folder with a config.json): %w", name, r.opt.Dir, fs.ErrNotExist)
	}
	return r.info(name), nil
}

func (r *Registry) info(name string) Info {
	dir := filepath.Join(r.opt.Dir, name)
	in := Info{Name: name, Path: dir, State: Available}
	fsys := os.DirFS(dir)
	if cfg, err := model.ReadConfig(fsys); err != nil {
		in.Err = err.Error()
	} else {
		in.Config = cfg
	}
	in.HasTokenizer = hasTokenizer(fsys)
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
				in.SizeBytes += fi.Size()
			}
		}
	}
	r.mu.Lock()
	s := r.loaded[name]
	r.mu.Unlock()
	if s != nil {
		select {
		case <-s.ready:
			if s.err != nil {
				in.State, in.Err = Failed, s.err.Error()
			} else {
				in.State, in.LoadedAt = Loaded, s.loadedAt
			}
		default:
			in.State = Loading
		}
	}
	return in
}

func hasTokenizer(fsys fs.FS) bool {
	for _, f := range []string{"tokenizer.json", "vocab.json"} {
		if _, err := fs.Stat(fsys, f); err == nil {
			return true
		}
	}
	return false
}

// Engine returns the engine serving name, loading the model first if needed (concurrent callers
// share one load). A failed load is forgotten, so the next call tries again. Errors wrap
// fs.ErrNotExist for an unknown model, model.ErrUnsupported for one this server cannot run, or
// ctx's error.
func (r *Registry) Engine(ctx context.Context, name string) (*engine.Engine, error) {
	if _, err := r.Get(name); err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, fmt.Errorf("registry: %w", engine.ErrClosed)
	}
	s, ok := r.loaded[name]
	if !ok {
		s = &slot{ready: make(chan struct{})}
		r.loaded[name] = s
		go r.load(name, s)
	}
	r.mu.Unlock()
	select {
	case <-s.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if s.err != nil {
		return nil, s.err
	}
	return s.engine, nil
}

// load reads the model into a new engine. It runs on its own goroutine so that a caller giving
// up does not abandon a half-loaded model.
func (r *Registry) load(name string, s *slot) {
	defer close(s.ready)
	dir := filepath.Join(r.opt.Dir, name)
	fsys := os.DirFS(dir)
	fail := func(err error) {
		s.err = fmt.Errorf("registry: load %q: %w", name, err)
		r.opt.Log.Error("model load failed", "model", name, "err", err)
		r.mu.Lock()
		delete(r.loaded, name)
		r.mu.Unlock()
	}
	b, err := r.opt.Backend()
	if err != nil {
		fail(err)
		return
	}
	m, err := model.Load(context.Background(), b, fsys)
	if err != nil {
		b.Close()
		fail(err)
		return
	}
	var tok *tokenizer.Tokenizer
	if hasTokenizer(fsys) {
		if tok, err = tokenizer.Load(fsys); err != nil {
			b.Close()
			fail(err)
			return
		}
		if tok.VocabSize() > m.Config.VocabSize {
			b.Close()
			fail(fmt.Errorf("the tokenizer has %d tokens, the model's vocab_size is %d: %w", tok.VocabSize(), m.Config.VocabSize, model.ErrUnsupported))
			return
		}
	}
	cfg := r.opt.Engine
	if r.opt.Observer != nil {
		cfg.Observer = r.opt.Observer(name)
	}
	e, err := engine.New(m, tok, cfg, r.opt.Log.With("model", name))
	if err != nil {
		b.Close()
		fail(err)
		return
	}
	s.engine, s.loadedAt = e, time.Now()
	r.opt.Log.Info("model loaded", "model", name, "backend", b.Name(), "params", m.Config.NumParams(), "tokenizer", tok != nil)
}

// Pull downloads repo at revision from hub into the models directory as name (the last element
// of repo when empty) and describes the new model. It fails with ErrExists if the name is taken.
func (r *Registry) Pull(ctx context.Context, hub Hub, repo, revision, name string, progress func(PullProgress)) (Info, error) {
	if name == "" {
		name = path.Base(repo)
	}
	dst, err := r.Path(name)
	if err != nil {
		return Info{}, err
	}
	if _, err := os.Stat(dst); err == nil {
		return Info{}, fmt.Errorf("registry: pull %s: %w: %q", repo, ErrExists, name)
	}
	if err := hub.Pull(ctx, repo, revision, dst, progress); err != nil {
		return Info{}, err
	}
	r.opt.Log.Info("model pulled", "model", name, "repo", repo, "revision", revision)
	return r.Get(name)
}

// Unload stops serving name: requests still running end with engine.ErrClosed. Unloading a
// model that is not loaded is not an error.
func (r *Registry) Unload(name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	r.mu.Lock()
	s, ok := r.loaded[name]
	delete(r.loaded, name)
	r.mu.Unlock()
	if !ok {
		return nil
	}
	<-s.ready
	if s.engine != nil {
		b := s.engine.Model().Backend
		s.engine.Close()
		b.Close()
		r.opt.Log.Info("model unloaded", "model", name)
	}
	return nil
}

// Loaded lists the names of the models loaded or loading.
func (r *Registry) Loaded() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.loaded))
	for n := range r.loaded {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Engines returns the engines of the models loaded and serving, by model name; models still
// loading or failed are left out. It loads nothing.
func (r *Registry) Engines() map[string]*engine.Engine {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]*engine.Engine, len(r.loaded))
	for name, s := range r.loaded {
		select {
		case <-s.ready:
			if s.engine != nil {
				out[name] = s.engine
			}
		default:
		}
	}
	return out
}

// Close unloads every model; later Engine calls fail with engine.ErrClosed.
func (r *Registry) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	for _, n := range r.Loaded() {
		r.Unload(n)
	}
}
