package registry

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/backend/cpu"
	"github.com/modeld-dev/modeld/internal/engine"
	"github.com/modeld-dev/modeld/internal/oracletest"
	"github.com/modeld-dev/modeld/sampling"
)

// newModelsDir returns a models directory holding the oracle model as "tiny" and, as "ids", the
// same model without tokenizer files.
func newModelsDir(t *testing.T) string {
	t.Helper()
	dir := oracletest.ModelsDir(t)
	if err := os.Mkdir(filepath.Join(dir, "not-a-model"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func newRegistry(t *testing.T) *Registry {
	t.Helper()
	r, err := New(Options{Dir: newModelsDir(t), Backend: func() (backend.Backend, error) { return cpu.New(), nil },
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func TestListAndGet(t *testing.T) {
	r := newRegistry(t)
	list, err := r.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "ids" || list[1].Name != "tiny" {
		t.Fatalf("List = %+v, want ids and tiny", list)
	}
	if list[0].HasTokenizer || !list[1].HasTokenizer {
		t.Errorf("HasTokenizer: ids %v, tiny %v; want false, true", list[0].HasTokenizer, list[1].HasTokenizer)
	}
	if c := list[1].Config; c.VocabSize != 500 || c.NLayer != 2 || list[1].State != Available {
		t.Errorf("tiny = %+v", list[1])
	}
	for _, name := range []string{"missing", "not-a-model"} {
		if _, err := r.Get(name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Get(%q) error = %v, want fs.ErrNotExist", name, err)
		}
	}
	for _, name := range []string{"", "..", "../tiny", "a/b", `a\b`, ".hidden", "tiny/..", "a..b", "/etc", "a\x00b", "a\nb", "a\x7fb", "\xff", "a b", "a:b", "模型", strings.Repeat("x", 129)} {
		if _, err := r.Get(name); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Get(%q) error = %v, want ErrInvalidName", name, err)
		}
	}
}

func TestEngineLoadsOnceAndUnloads(t *testing.T) {
	r := newRegistry(t)
	var wg sync.WaitGroup
	engines := make([]*engine.Engine, 4)
	errs := make([]error, 4)
	for i := range engines {
		wg.Go(func() { engines[i], errs[i] = r.Engine(t.Context(), "tiny") })
	}
	wg.Wait()
	for i := range engines {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if engines[i] != engines[0] {
			t.Fatalf("concurrent loads gave different engines")
		}
	}
	if info, _ := r.Get("tiny"); info.State != Loaded {
		t.Errorf("state after load = %v, want Loaded", info.State)
	}
	if engines[0].Tokenizer() == nil {
		t.Errorf("tiny loaded without its tokenizer")
	}
	ids, err := r.Engine(t.Context(), "ids")
	if err != nil {
		t.Fatal(err)
	}
	if ids.Tokenizer() != nil {
		t.Errorf("ids has a tokenizer")
	}
	if err := r.Unload("tiny"); err != nil {
		t.Fatal(err)
	}
	if info, _ := r.Get("tiny"); info.State != Available {
		t.Errorf("state after unload = %v, want Available", info.State)
	}
	if _, err := engines[0].Submit(t.Context(), engine.Request{Prompt: []int32{1}, MaxNewTokens: 1, Sampling: sampling.DefaultParams()}); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Submit to an unloaded engine: %v, want ErrClosed", err)
	}
}

func TestEngineLoadFailure(t *testing.T) {
	r := newRegistry(t)
	if err := os.WriteFile(filepath.Join(r.Dir(), "tiny", "model.safetensors"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Engine(t.Context(), "tiny"); err == nil {
		t.Fatal("Engine loaded a garbage model.safetensors")
	}
	// A failed load is forgotten: the next call tries again.
	if got := r.Loaded(); len(got) != 0 {
		t.Errorf("Loaded after a failure = %v, want none", got)
	}
}

func TestValidNameAccepts(t *testing.T) {
	for _, name := range []string{"tiny", "gpt2-go", "gpt2.mine", "a_b-1", "X9", strings.Repeat("y", 128)} {
		if err := ValidName(name); err != nil {
			t.Errorf("ValidName(%q) = %v, want nil", name, err)
		}
	}
}
