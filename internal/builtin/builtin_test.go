package builtin

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modeld-dev/modeld/backend/cpu"
	"github.com/modeld-dev/modeld/internal/engine"
	"github.com/modeld-dev/modeld/model"
	"github.com/modeld-dev/modeld/sampling"
	"github.com/modeld-dev/modeld/tokenizer"
)

// TestInstallNeverOverwrites checks that a folder of the built-in's name holding something else
// (an older build's model, or the user's) is reported and left as it is.
func TestInstallNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	mine := filepath.Join(dir, Name, "config.json")
	if err := os.MkdirAll(filepath.Dir(mine), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mine, []byte(`{"mine": true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := Install(dir); err != nil || st != Differs {
		t.Fatalf("Install over another model = %v, %v; want Differs", st, err)
	}
	if got, err := os.ReadFile(mine); err != nil || string(got) != `{"mine": true}` {
		t.Fatalf("the existing config.json is now %q, %v", got, err)
	}
}

func TestInstallAndGenerate(t *testing.T) {
	dir := t.TempDir()
	if st, err := Install(dir); err != nil || st != Installed {
		t.Fatalf("Install = %v, %v; want Installed", st, err)
	}
	if st, err := Install(dir); err != nil || st != Current {
		t.Fatalf("second Install = %v, %v; want Current", st, err)
	}
	fsys := os.DirFS(filepath.Join(dir, Name))
	m, err := model.Load(t.Context(), cpu.New(), fsys)
	if err != nil {
		t.Fatal(err)
	}
	if n := m.Config.NumParams(); n > 2_000_000 {
		t.Errorf("%d parameters: the model must stay under 8 MB", n)
	}
	tok, err := tokenizer.Load(fsys)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(m, tok, engine.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := sampling.DefaultParams()
	p.Temperature = 0.7
	seed := uint64(1)
	p.Seed = &seed
	s, err := e.Submit(t.Context(), engine.Request{Prompt: tok.Encode("func (s *Server) "), MaxNewTokens: 200, Sampling: p, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for {
		chunks, err := s.Recv(context.Background())
		if err != nil {
			break
		}
		for _, c := range chunks {
			text.WriteString(c.Text)
		}
	}
	// A model that learned Go writes its keywords and idioms; a random one would not.
	out := text.String()
	var found []string
	for _, word := range []string{"return", "func", "if ", "err", "nil", "}\n", ":= "} {
		if strings.Contains(out, word) {
			found = append(found, word)
		}
	}
	if len(found) < 4 {
		t.Errorf("sampled continuation %q has only %q of Go's common words", out, found)
	}
	t.Logf("sampled continuation: %q", out)
}
