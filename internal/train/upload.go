package train

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/modeld-dev/modeld/model"
)

// ErrTooLarge is returned by Upload for a dataset above the size limit; a server maps it to
// ResourceExhausted.
var ErrTooLarge = errors.New("dataset too large")

// Dataset describes an uploaded dataset.
type Dataset struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Format is the format given at upload, or detected from Name.
	Format  Format    `json:"format"`
	Size    int64     `json:"size"`
	SHA256  string    `json:"sha256"`
	Created time.Time `json:"created"`
	// Examples counts the documents: lines of a JSONL file, <|endoftext|>-separated pieces of
	// a text file.
	Examples int `json:"examples"`
}

func (m *Manager) datasetDir(id string) string { return filepath.Join(m.opt.DataDir, "datasets", id) }

// validID reports whether id has the form newID makes, so that it is safe in a path.
func validID(prefix, id string) bool {
	rest, ok := strings.CutPrefix(id, prefix)
	if !ok || len(rest) != 24 {
		return false
	}
	_, err := hex.DecodeString(rest)
	return err == nil
}

// dataset reads the description of an uploaded dataset.
func (m *Manager) dataset(id string) (Dataset, error) {
	if !validID("ds-", id) {
		return Dataset{}, fmt.Errorf("train: %w: dataset %q", ErrJobNotFound, id)
	}
	data, err := os.ReadFile(filepath.Join(m.datasetDir(id), "dataset.json"))
	if err != nil {
		return Dataset{}, fmt.Errorf("train: %w: dataset %q", ErrJobNotFound, id)
	}
	var d Dataset
	if err := json.Unmarshal(data, &d); err != nil {
		return Dataset{}, fmt.Errorf("train: dataset %s: %w", id, err)
	}
	return d, nil
}

// Upload stores a dataset read from r (at most maxBytes bytes) under a new id. name gives the
// format when f is FormatAuto (.txt, .jsonl) and names the file in later errors. The bytes are
// checked for valid UTF-8 now; the full check (JSON, token ids, length) runs when a job that
// uses the dataset is created, since it needs the model's tokenizer.
func (m *Manager) Upload(ctx context.Context, name string, f Format, r io.Reader, maxBytes int64) (Dataset, error) {
	if name == "" || strings.ContainsAny(name, "/\\") {
		return Dataset{}, &DataError{File: name, Msg: "the dataset needs a file name without a path, such as data.jsonl"}
	}
	d := Dataset{ID: newID("ds-"), Name: name, Format: f, Created: time.Now()}
	tmp := filepath.Join(m.opt.DataDir, "datasets", ".upload-"+d.ID)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return Dataset{}, fmt.Errorf("train: %w", err)
	}
	defer os.RemoveAll(tmp)
	h := sha256.New()
	var head bytes.Buffer // the start of the file, for format detection
	err := model.WriteFileAtomic(filepath.Join(tmp, "data"), func(w *bufio.Writer) error {
		n, err := io.Copy(io.MultiWriter(w, h, limitWriter{&head, 1 << 16}), io.LimitReader(r, maxBytes+1))
		d.Size = n
		if err != nil {
			return err
		}
		if n > maxBytes {
			return fmt.Errorf("train: %w: above the limit of %d bytes", ErrTooLarge, maxBytes)
		}
		return ctx.Err()
	})
	if err != nil {
		return Dataset{}, err
	}
	d.SHA256 = hex.EncodeToString(h.Sum(nil))
	if d.Format == FormatAuto {
		if d.Format, err = detectFormat(name, head.Bytes()); err != nil {
			return Dataset{}, err
		}
	}
	if d.Examples, err = countExamples(filepath.Join(tmp, "data"), name, d.Format); err != nil {
		return Dataset{}, err
	}
	meta, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return Dataset{}, fmt.Errorf("train: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "dataset.json"), meta, 0o644); err != nil {
		return Dataset{}, fmt.Errorf("train: %w", err)
	}
	if err := os.Rename(tmp, m.datasetDir(d.ID)); err != nil {
		return Dataset{}, fmt.Errorf("train: %w", err)
	}
	return d, nil
}

// countExamples checks the file's UTF-8 and counts its documents.
func countExamples(path, name string, f Format) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("train: %w", err)
	}
	if f == FormatJSONLTokens {
		docs, err := ReadDocuments(context.Background(), bytes.NewReader(data), name, ReadOptions{Format: f, VocabSize: math.MaxInt32})
		return len(docs), err
	}
	if err := checkUTF8(name, data, 0); err != nil {
		return 0, err
	}
	n := 0
	switch f {
	case FormatText:
		for piece := range strings.SplitSeq(string(data), EndOfText) {
			if strings.TrimSpace(piece) != "" {
				n++
			}
		}
	default:
		for line := range bytes.Lines(data) {
			if !isBlank(line) {
				n++
			}
		}
	}
	if n == 0 {
		return 0, &DataError{File: name, Msg: "the dataset is empty"}
	}
	return n, nil
}

// limitWriter keeps the first n bytes written to it.
type limitWriter struct {
	b *bytes.Buffer
	n int
}

func (w limitWriter) Write(p []byte) (int, error) {
	if room := w.n - w.b.Len(); room > 0 {
		w.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
