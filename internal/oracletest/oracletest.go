// Package oracletest lays out the oracle model of testdata/gpt2-tiny (values from llm.c and
// PyTorch; see its README.md) as model folders, for the tests of the packages that load, serve
// and train models.
package oracletest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Dir returns the path of testdata/gpt2-tiny in this repository.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "gpt2-tiny")
}

// ModelsDir returns a new models directory (in t.TempDir()) holding the oracle model as "tiny",
// with its 500-token tokenizer, and as "ids", without tokenizer files (served in token-ids mode).
func ModelsDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for name, files := range map[string][]string{
		"tiny": {"config.json", "model.safetensors", "vocab.json", "merges.txt"},
		"ids":  {"config.json", "model.safetensors"},
	} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			data, err := os.ReadFile(filepath.Join(Dir(), "hf", f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name, f), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}
