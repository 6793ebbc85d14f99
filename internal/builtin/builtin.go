// Package builtin holds modeld's built-in model, so that a fresh checkout serves real text
// with no download: gpt2-go, a small GPT-2 trained from scratch by modeld's own TrainService on
// the Go distribution's source code (BSD-licensed), with a byte-level vocabulary. README.md
// gives the recipe that reproduces it.
package builtin

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Name is the built-in model's name in the models directory.
const Name = "gpt2-go"

//go:embed gpt2-go
var files embed.FS

// FS returns the model's Hugging Face folder (config.json, model.safetensors, vocab.json,
// merges.txt, generation_config.json).
func FS() fs.FS {
	sub, err := fs.Sub(files, Name)
	if err != nil {
		panic(err) // the embedded folder always exists
	}
	return sub
}

// Status is what [Install] found or did.
type Status int

const (
	// Installed: the folder was missing and Install wrote it.
	Installed Status = iota
	// Current: the folder holds this build's built-in model.
	Current
	// Differs: a folder of that name holds something else (a built-in model from an older
	// build, or the user's own); Install leaves it alone.
	Differs
)

func (s Status) String() string {
	switch s {
	case Installed:
		return "installed"
	case Current:
		return "current"
	case Differs:
		return "differs"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Install writes the built-in model into modelsDir/Name unless a folder of that name exists,
// through a temporary folder renamed into place. It never overwrites: an existing folder whose
// files differ from the embedded ones is reported as Differs, so the caller can say how to get
// the current model (remove the folder).
func Install(modelsDir string) (Status, error) {
	dst := filepath.Join(modelsDir, Name)
	if _, err := os.Stat(dst); err == nil {
		same, err := matches(dst)
		if err != nil {
			return 0, fmt.Errorf("builtin: %w", err)
		}
		if same {
			return Current, nil
		}
		return Differs, nil
	}
	if err := os.MkdirAll(modelsDir, 0o755); err != nil {
		return 0, fmt.Errorf("builtin: %w", err)
	}
	tmp, err := os.MkdirTemp(modelsDir, ".builtin-")
	if err != nil {
		return 0, fmt.Errorf("builtin: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.CopyFS(tmp, FS()); err != nil {
		return 0, fmt.Errorf("builtin: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return 0, fmt.Errorf("builtin: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return 0, fmt.Errorf("builtin: %w", err)
	}
	return Installed, nil
}

// matches reports whether every embedded file exists in dir with the same bytes (7.5 MB read
// once at start). A missing file is a difference, not an error.
func matches(dir string) (bool, error) {
	entries, err := fs.ReadDir(FS(), ".")
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		want, err := fs.ReadFile(FS(), e.Name())
		if err != nil {
			return false, err
		}
		got, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if !bytes.Equal(got, want) {
			return false, nil
		}
	}
	return true, nil
}
