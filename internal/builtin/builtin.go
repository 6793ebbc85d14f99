// Package builtin holds modeld's built-in model, so that a fresh checkout serves real text
// with no download: gpt2-go, a small GPT-2 trained from scratch by modeld's own TrainService on
// the Go distribution's source code (BSD-licensed), with a byte-level vocabulary. README.md
// gives the recipe that reproduces it.
package builtin

import (
	"embed"
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

// Install writes the built-in model into modelsDir/Name unless a folder of that name exists,
// through a temporary folder renamed into place. It reports whether it wrote the model.
func Install(modelsDir string) (bool, error) {
	dst := filepath.Join(modelsDir, Name)
	if _, err := os.Stat(dst); err == nil {
		return false, nil
	}
	if err := os.MkdirAll(modelsDir, 0o755); err != nil {
		return false, fmt.Errorf("builtin: %w", err)
	}
	tmp, err := os.MkdirTemp(modelsDir, ".builtin-")
	if err != nil {
		return false, fmt.Errorf("builtin: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.CopyFS(tmp, FS()); err != nil {
		return false, fmt.Errorf("builtin: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return false, fmt.Errorf("builtin: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return false, fmt.Errorf("builtin: %w", err)
	}
	return true, nil
}
