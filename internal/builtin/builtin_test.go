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

func TestInstallAndGenerate(t *testing.T) {
	dir := t.TempDir()
	wrote, err := Install(dir)
	if err != nil || !wrote {
		t.Fatalf("Install = %v, %v", wrote, err)
	}
	if wrote, err := Install(dir); err != nil || wrote {
		t.Fatalf("second Install = %v, %v; want it to leave the existing folder", wrote, err)
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
