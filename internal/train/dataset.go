// Package train runs fine-tuning jobs for GPT-2-family models: it reads a
// dataset, packs or pads it into (B,T) batches and feeds them to the training
// loop, one batch per optimizer step.
//
// # Dataset formats
//
// A dataset is one file in one of three formats, named by [Format]. Every
// format is UTF-8 (a leading byte order mark is ignored); a file with invalid
// UTF-8 is rejected, naming the line and the bad byte's offset in the file
// (from 0).
//
//   - text ([FormatText]): plain text. The literal "<|endoftext|>" separates
//     documents and becomes the tokenizer's end-of-sequence id (EOS), as in
//     the token streams of nanoGPT and llm.c. A file without the literal is
//     one document; blank lines do not split documents. Each document is
//     encoded on its own with [tokenizer.Tokenizer.Encode] (so other special
//     tokens in it are plain text), byte for byte with no trimming, and its
//     ids are followed by EOS. A document that is empty or only white space,
//     such as the newline after a final "<|endoftext|>", is skipped.
//   - jsonl_text ([FormatJSONLText]): JSON Lines, one object per line with a
//     string field "text". The text of each line is read as a text file is:
//     usually one document followed by EOS, more where the text holds
//     "<|endoftext|>". Blank lines are skipped, and so are other fields.
//   - jsonl_tokens ([FormatJSONLTokens]): JSON Lines, one object per line with
//     "input_ids", an array of integer token ids in [0, vocab_size). Each line
//     is one document, taken as it is: no EOS is added (the ids are the
//     user's to choose, EOS included). A line with an empty array is skipped,
//     and so are blank lines and other fields. No tokenizer is needed.
//
// [FormatAuto] chooses by the file name's extension: ".txt" is text; ".jsonl"
// and ".json" are jsonl_tokens when the first object in the file has an
// "input_ids" field, and jsonl_text otherwise. A ".json" file is JSON Lines
// too, not one JSON array.
//
// A dataset that is wrong is reported as a [*DataError], which wraps
// [ErrInvalidData] and names the file and line:
//
//	train: data.jsonl:17: input_ids[3] = 70000 is outside the vocabulary [0, 50257)
//
// # From documents to batches
//
// [Examples] turns documents into training examples of T input ids and T
// target ids, the inputs shifted by one token. [PackingPack], the default,
// concatenates the documents into one stream and cuts it into windows as
// llm.c's DataLoader does; [PackingPad] makes one padded example of each
// document. A [Loader] hands out B examples a step, epoch after epoch,
// optionally shuffled, and [SplitExamples] holds out examples for evaluation.
package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/tokenizer"
)

// EndOfText is the literal that separates documents in text datasets (and
// in the "text" field of jsonl_text lines). It becomes the tokenizer's EOS
// id, whatever that token's own text is.
const EndOfText = "<|endoftext|>"

// ErrInvalidData is wrapped by every error that a bad dataset causes, so
// that a server can answer InvalidArgument: test with errors.Is.
var ErrInvalidData = errors.New("invalid training data")

// DataError reports what is wrong with a dataset, and where. It wraps
// [ErrInvalidData]. Its text is "train: FILE:LINE: MSG", without LINE when
// the error is about the whole file and without FILE when the file is not
// known (errors from [Examples], [NewLoader] and [SplitExamples], whose
// callers may set File to name it).
type DataError struct {
	File string // the dataset's name as given to ReadDocuments; "" if not known
	Line int    // the 1-based line number; 0 when the error is about the whole file
	Msg  string // what is wrong, such as `missing "text" field`
}

// Error returns "train: FILE:LINE: MSG", leaving out what is not known.
func (e *DataError) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("train: %s:%d: %s", e.File, e.Line, e.Msg)
	case e.File != "":
		return fmt.Sprintf("train: %s: %s", e.File, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("train: line %d: %s", e.Line, e.Msg)
	}
	return "train: " + e.Msg
}

// Unwrap returns [ErrInvalidData].
func (e *DataError) Unwrap() error { return ErrInvalidData }

// Format is the format of a dataset file; see the package documentation for
// the exact rules of each.
type Format int

const (
	// FormatAuto chooses the format from the file name's extension and, for
	// JSON Lines, from the fields of the first object.
	FormatAuto Format = iota
	// FormatText is plain UTF-8 text, documents separated by "<|endoftext|>".
	FormatText
	// FormatJSONLText is JSON Lines with a string field "text".
	FormatJSONLText
	// FormatJSONLTokens is JSON Lines with "input_ids", pre-tokenized ids.
	FormatJSONLTokens
)

var formatNames = [...]string{
	FormatAuto:        "auto",
	FormatText:        "text",
	FormatJSONLText:   "jsonl_text",
	FormatJSONLTokens: "jsonl_tokens",
}

// String returns the format's name: "auto", "text", "jsonl_text" or
// "jsonl_tokens".
func (f Format) String() string {
	if f >= 0 && int(f) < len(formatNames) {
		return formatNames[f]
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// ParseFormat returns the format named s, as [Format.String] writes it; ""
// is [FormatAuto].
func ParseFormat(s string) (Format, error) {
	if s == "" {
		return FormatAuto, nil
	}
	for f, name := range formatNames {
		if s == name {
			return Format(f), nil
		}
	}
	return 0, fmt.Errorf("train: unknown dataset format %q (want auto, text, jsonl_text or jsonl_tokens)", s)
}

// ReadOptions says how [ReadDocuments] reads a dataset.
type ReadOptions struct {
	// Format is the dataset's format; FormatAuto (the zero value) chooses by
	// the file name.
	Format Format
	// Tokenizer encodes text datasets and gives their EOS id. It may be nil
	// for jsonl_tokens, which is how a model without a tokenizer is trained.
	Tokenizer *tokenizer.Tokenizer
	// VocabSize is the model's vocabulary size (config.json's vocab_size):
	// every token id must be in [0, VocabSize). It must be positive, and at
	// least the tokenizer's vocabulary size.
	VocabSize int
}

// ReadDocuments reads a dataset from r and returns the token ids of each of
// its documents, in file order. name is the file's name: it chooses the
// format when opts.Format is FormatAuto and it names the file in errors.
//
// A bad dataset, including one with no documents, returns a [*DataError]
// (wrapping [ErrInvalidData]) for the first problem found. Bad options, an
// error reading r, and ctx ending return other errors. ctx is checked
// between documents and lines, not inside the encoding of one document.
func ReadDocuments(ctx context.Context, r io.Reader, name string, opts ReadOptions) ([][]int32, error) {
	if opts.VocabSize <= 0 || opts.VocabSize > math.MaxInt32 {
		return nil, fmt.Errorf("train: read %s: vocabulary size %d, want it in [1, 2^31)", name, opts.VocabSize)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("train: read %s: %w", name, err)
	}
	base := 0 // bytes before data in the file, for offsets in messages
	if bom := "\uFEFF"; bytes.HasPrefix(data, []byte(bom)) {
		data, base = data[len(bom):], len(bom)
	}
	f := opts.Format
	if f == FormatAuto {
		if f, err = detectFormat(name, data); err != nil {
			return nil, err
		}
	}
	var eos int32
	switch f {
	case FormatText, FormatJSONLText:
		if eos, err = checkTokenizer(name, f, opts); err != nil {
			return nil, err
		}
	case FormatJSONLTokens:
	default:
		return nil, fmt.Errorf("train: read %s: unknown format %v", name, f)
	}
	if err := checkUTF8(name, data, base); err != nil {
		return nil, err
	}
	var docs [][]int32
	if f == FormatText {
		docs, err = appendTextDocs(ctx, nil, string(data), opts.Tokenizer, eos)
	} else {
		docs, err = readJSONL(ctx, name, data, f, opts.Tokenizer, eos, opts.VocabSize)
	}
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, &DataError{File: name, Msg: fmt.Sprintf("the dataset holds no documents (format %v)", f)}
	}
	return docs, nil
}

// ReadDocumentsFS reads the dataset file name from fsys with [ReadDocuments].
func ReadDocumentsFS(ctx context.Context, fsys fs.FS, name string, opts ReadOptions) ([][]int32, error) {
	file, err := fsys.Open(name)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	defer file.Close()
	return ReadDocuments(ctx, file, name, opts)
}

// checkTokenizer checks that text of format f can be encoded into ids below
// opts.VocabSize, and returns the EOS id.
func checkTokenizer(name string, f Format, opts ReadOptions) (eos int32, err error) {
	tok := opts.Tokenizer
	switch {
	case tok == nil:
		return 0, fmt.Errorf("train: read %s: format %v needs a tokenizer", name, f)
	case tok.VocabSize() > opts.VocabSize:
		return 0, fmt.Errorf("train: read %s: the tokenizer's %d ids do not fit the model's vocabulary of %d", name, tok.VocabSize(), opts.VocabSize)
	case tok.EOS() < 0 || int(tok.EOS()) >= opts.VocabSize:
		return 0, fmt.Errorf("train: read %s: format %v needs an end-of-sequence token in [0, %d); the tokenizer's is %d", name, f, opts.VocabSize, tok.EOS())
	}
	return tok.EOS(), nil
}

// detectFormat chooses the format of the file name holding data.
func detectFormat(name string, data []byte) (Format, error) {
	switch ext := strings.ToLower(path.Ext(name)); ext {
	case ".txt":
		return FormatText, nil
	case ".jsonl", ".json":
		for line := range bytes.Lines(data) {
			if isBlank(line) {
				continue
			}
			var fields map[string]json.RawMessage
			if json.Unmarshal(line, &fields) == nil {
				if _, ok := fields["input_ids"]; ok {
					return FormatJSONLTokens, nil
				}
			}
			break // errors in the line are jsonl_text's to report
		}
		return FormatJSONLText, nil
	default:
		return 0, &DataError{File: name, Msg: fmt.Sprintf(
			"cannot tell the format from the extension %q: name it (text, jsonl_text or jsonl_tokens), or use .txt, .jsonl or .json", ext)}
	}
}

// checkUTF8 reports the first invalid UTF-8 in data, which starts base
// bytes into the file name.
func checkUTF8(name string, data []byte, base int) error {
	if utf8.Valid(data) {
		return nil
	}
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return &DataError{File: name, Line: bytes.Count(data[:i], []byte{'\n'}) + 1,
				Msg: fmt.Sprintf("invalid UTF-8 at byte offset %d (0x%02x)", base+i, data[i])}
		}
		i += size
	}
	return nil // not reached: utf8.Valid said there is an error
}

// appendTextDocs appends the documents of text, split at EndOfText, each
// encoded and followed by eos; empty and all-white-space documents are
// skipped.
func appendTextDocs(ctx context.Context, docs [][]int32, text string, tok *tokenizer.Tokenizer, eos int32) ([][]int32, error) {
	for doc := range strings.SplitSeq(text, EndOfText) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		docs = append(docs, append(tok.Encode(doc), eos))
	}
	return docs, nil
}

// readJSONL reads the documents of a jsonl_text or jsonl_tokens file.
func readJSONL(ctx context.Context, name string, data []byte, f Format, tok *tokenizer.Tokenizer, eos int32, vocabSize int) ([][]int32, error) {
	var docs [][]int32
	lineNo := 0
	for line := range bytes.Lines(data) {
		lineNo++
		if lineNo%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if isBlank(line) {
			continue
		}
		bad := func(format string, args ...any) error {
			return &DataError{File: name, Line: lineNo, Msg: fmt.Sprintf(format, args...)}
		}
		var fields map[string]json.RawMessage
		err := json.Unmarshal(line, &fields)
		if syntax := (*json.SyntaxError)(nil); errors.As(err, &syntax) {
			return nil, bad("bad JSON at column %d: %v", syntax.Offset, err)
		}
		if err != nil || fields == nil {
			// Valid JSON (Unmarshal checks the syntax of the whole line
			// before it decodes), but not an object.
			return nil, bad("want one JSON object a line, got %s", jsonKind(line))
		}
		if f == FormatJSONLText {
			raw, ok := fields["text"]
			if !ok {
				if _, ok := fields["input_ids"]; ok {
					return nil, bad(`missing "text" field (for pre-tokenized "input_ids", use format jsonl_tokens)`)
				}
				return nil, bad(`missing "text" field`)
			}
			var text string
			if jsonKind(raw) != "a string" || json.Unmarshal(raw, &text) != nil {
				return nil, bad(`"text" is %s, want a string`, jsonKind(raw))
			}
			if docs, err = appendTextDocs(ctx, docs, text, tok, eos); err != nil {
				return nil, err
			}
			continue
		}
		raw, ok := fields["input_ids"]
		if !ok {
			return nil, bad(`missing "input_ids" field`)
		}
		ids, msg := parseIDs(raw, vocabSize)
		if msg != "" {
			return nil, bad("%s", msg)
		}
		if len(ids) > 0 {
			docs = append(docs, ids)
		}
	}
	return docs, nil
}

// isBlank reports whether line holds only JSON white space.
func isBlank(line []byte) bool {
	return len(bytes.Trim(line, " \t\r\n")) == 0
}

// jsonKind names the kind of the JSON value raw, such as "an array".
func jsonKind(raw []byte) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return "empty"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// parseIDs returns the token ids of raw, which is valid JSON, or a message
// saying why it is not an array of integers in [0, vocabSize).
func parseIDs(raw []byte, vocabSize int) (ids []int32, msg string) {
	const ws = " \t\r\n"
	s := bytes.TrimLeft(raw, ws)
	if len(s) == 0 || s[0] != '[' {
		return nil, fmt.Sprintf(`"input_ids" is %s, want an array of token ids`, jsonKind(s))
	}
	s = bytes.TrimLeft(s[1:], ws)
	if len(s) > 0 && s[0] == ']' {
		return nil, ""
	}
	ids = make([]int32, 0, len(s)/4)
	for k := 0; len(s) > 0; k++ {
		if c := s[0]; c != '-' && (c < '0' || c > '9') {
			return nil, fmt.Sprintf("input_ids[%d] is %s, want an integer token id", k, jsonKind(s))
		}
		n := 1
		for n < len(s) && strings.IndexByte("0123456789+-.eE", s[n]) >= 0 {
			n++
		}
		lit := s[:n]
		v, integer := int64(0), true
		for _, c := range bytes.TrimPrefix(lit, []byte{'-'}) {
			if c < '0' || c > '9' {
				integer = false
				break
			}
			if v <= int64(vocabSize) { // beyond that, v is out of range whatever follows
				v = v*10 + int64(c-'0')
			}
		}
		switch {
		case !integer:
			return nil, fmt.Sprintf("input_ids[%d] = %s is not an integer", k, lit)
		case lit[0] == '-' && v != 0, v >= int64(vocabSize):
			return nil, fmt.Sprintf("input_ids[%d] = %s is outside the vocabulary [0, %d)", k, lit, vocabSize)
		}
		ids = append(ids, int32(v))
		s = bytes.TrimLeft(s[n:], ws)
		if len(s) == 0 || s[0] == ']' {
			break
		}
		s = bytes.TrimLeft(s[1:], ws) // the ','
	}
	return ids, ""
}

// Packing is how [Examples] makes training examples of documents.
type Packing int

const (
	// PackingPack concatenates all documents, in order, into one stream of
	// N tokens and cuts it into floor((N-1)/T) windows of T+1 tokens, each
	// starting T tokens after the last, so that consecutive windows share one
	// token: window i is stream[i*T : i*T+T+1], its inputs window[:T] and
	// its targets window[1:], as in llm.c's DataLoader and nanoGPT's
	// get_batch (which draws its windows at random offsets instead). The
	// (N-1) mod T tokens left at the end, fewer than a window, are dropped;
	// no target is padded. A stream of exactly T+1 tokens is one window.
	PackingPack Packing = iota
	// PackingPad makes one example of each document of at least 2 tokens,
	// truncated to T+1 tokens (the rest dropped): the inputs are doc[:T]
	// and the targets doc[1:T+1], each padded on the right to T, inputs
	// with the pad id and targets with backend.IgnoreIndex (-100), which
	// the loss skips. Right padding needs no attention mask: a causal model
	// never attends from a real position to a later pad.
	PackingPad
)

// String returns "pack" or "pad".
func (p Packing) String() string {
	switch p {
	case PackingPack:
		return "pack"
	case PackingPad:
		return "pad"
	}
	return fmt.Sprintf("Packing(%d)", int(p))
}

// ParsePacking returns the packing named s, as [Packing.String] writes it;
// "" is [PackingPack].
func ParsePacking(s string) (Packing, error) {
	switch s {
	case "", "pack":
		return PackingPack, nil
	case "pad":
		return PackingPad, nil
	}
	return 0, fmt.Errorf("train: unknown packing %q (want pack or pad)", s)
}

// Example is one training sequence: the model reads Inputs and is scored on
// predicting Targets, where Targets[t] is the token after Inputs[t], or
// backend.IgnoreIndex (-100) where there is none.
type Example struct {
	Inputs  []int32 // (T) token ids
	Targets []int32 // (T) token ids or backend.IgnoreIndex
}

// Examples makes training examples of T tokens each (T is the sequence
// length, at most the model's n_positions) from docs, as p says. padID is
// the input id of padding with PackingPad, usually the EOS id; it is not
// checked. The examples of PackingPack share memory with each other (not
// with docs): treat them as read-only.
//
// It returns a [*DataError] without a file name when docs have too few
// tokens for one example: PackingPack needs T+1 tokens in all, PackingPad
// a document of at least 2.
func Examples(docs [][]int32, T int, p Packing, padID int32) ([]Example, error) {
	if T <= 0 {
		return nil, fmt.Errorf("train: sequence length %d, want > 0", T)
	}
	switch p {
	case PackingPack:
		n := 0
		for _, d := range docs {
			n += len(d)
		}
		if n < T+1 {
			return nil, &DataError{Msg: fmt.Sprintf(
				"the dataset has %d tokens; packing needs at least %d for one window of seq_len %d (plus the last target)", n, T+1, T)}
		}
		stream := make([]int32, 0, n) // (N)
		for _, d := range docs {
			stream = append(stream, d...)
		}
		ex := make([]Example, (n-1)/T)
		for i := range ex {
			lo := i * T
			ex[i] = Example{Inputs: stream[lo : lo+T : lo+T], Targets: stream[lo+1 : lo+T+1 : lo+T+1]}
		}
		return ex, nil
	case PackingPad:
		var ex []Example
		for _, d := range docs {
			if len(d) < 2 {
				continue
			}
			d = d[:min(len(d), T+1)]
			buf := make([]int32, 2*T)
			in, tg := buf[:T:T], buf[T:]
			for i := copy(in, d); i < T; i++ { // doc[:T]: a short doc's last token is read, with no target
				in[i] = padID
			}
			for i := copy(tg, d[1:]); i < T; i++ {
				tg[i] = backend.IgnoreIndex
			}
			ex = append(ex, Example{Inputs: in, Targets: tg})
		}
		if len(ex) == 0 {
			return nil, &DataError{Msg: "no document has the 2 tokens that padding needs for one example"}
		}
		return ex, nil
	}
	return nil, fmt.Errorf("train: unknown packing %v", p)
}

// Loader hands out batches of B examples, one a step, epoch after epoch
// without end. An epoch is StepsPerEpoch = ceil(len(examples)/B) steps and
// goes through the examples once, in order or shuffled; its last batch,
// when len(examples) is not a multiple of B, is filled by wrapping around
// to the start of the epoch's order, so every batch has exactly B examples
// and the first ones of the epoch are seen twice in it.
//
// With shuffling, the order of epoch e (from 0) is a permutation drawn from
// math/rand/v2's PCG seeded with (seed, e): the same seed gives the same
// batches, and a job resumed with [Loader.Seek] sees the batches it would
// have seen. A Loader is for one goroutine at a time.
type Loader struct {
	ex      []Example
	b, t    int // batch size, sequence length
	shuffle bool
	seed    uint64
	step    int   // the next step, from 0
	epoch   int   // the epoch of perm; -1 when none
	perm    []int // the order of the examples in epoch `epoch`, if shuffle
}

// NewLoader returns a Loader of batches of B examples of ex, which must all
// have the same length T. ex is not copied and must not change. With
// shuffle false the examples come in the order of ex, and seed is unused.
// An empty ex returns an error wrapping [ErrInvalidData].
func NewLoader(ex []Example, B int, shuffle bool, seed uint64) (*Loader, error) {
	if len(ex) == 0 {
		return nil, &DataError{Msg: "no training examples"}
	}
	if B <= 0 {
		return nil, fmt.Errorf("train: batch size %d, want > 0", B)
	}
	T := len(ex[0].Inputs)
	for i, x := range ex {
		if len(x.Inputs) != T || len(x.Targets) != T || T == 0 {
			return nil, fmt.Errorf("train: example %d has %d inputs and %d targets, want %d of each (and > 0)", i, len(x.Inputs), len(x.Targets), T)
		}
	}
	return &Loader{ex: ex, b: B, t: T, shuffle: shuffle, seed: seed, epoch: -1}, nil
}

// StepsPerEpoch returns the number of steps in an epoch, ceil(len(ex)/B).
func (l *Loader) StepsPerEpoch() int { return (len(l.ex) + l.b - 1) / l.b }

// Step returns the number of batches handed out (or skipped by Seek): the
// step, from 0, whose batch the next call to Next returns.
func (l *Loader) Step() int { return l.step }

// Seek makes step (from 0) the next step whose batch Next returns, as if
// step batches had been handed out; it is how a resumed job continues.
func (l *Loader) Seek(step int) {
	l.step = max(step, 0)
}

// Next returns the batch of the next step: inputs and targets of B*T ids
// each, row-major (B,T), row j being one example. The slices are new on
// each call. epoch is the number of epochs done once this batch is
// trained on, (step+1)/StepsPerEpoch: 1 after the last batch of the
// first epoch.
func (l *Loader) Next() (inputs, targets []int32, epoch float64) {
	spe := l.StepsPerEpoch()
	e, s := l.step/spe, l.step%spe
	if l.shuffle && l.epoch != e {
		l.perm = rand.New(rand.NewPCG(l.seed, uint64(e))).Perm(len(l.ex))
		l.epoch = e
	}
	inputs = make([]int32, l.b*l.t)  // (B,T)
	targets = make([]int32, l.b*l.t) // (B,T)
	for j := range l.b {
		k := (s*l.b + j) % len(l.ex)
		if l.shuffle {
			k = l.perm[k]
		}
		copy(inputs[j*l.t:(j+1)*l.t], l.ex[k].Inputs)
		copy(targets[j*l.t:(j+1)*l.t], l.ex[k].Targets)
	}
	l.step++
	return inputs, targets, float64(l.step) / float64(spe)
}

// splitStream is the PCG stream of SplitExamples, apart from the Loader's
// streams (the epoch numbers).
const splitStream = 0x73706c6974 // "split"

// SplitExamples holds out a fraction of ex, in [0, 1), for evaluation:
// round(fraction*len(ex)) examples, at least one when fraction > 0, chosen
// at random by math/rand/v2's PCG seeded with seed, so the same seed makes
// the same split. train and eval are disjoint, cover ex, and keep the order
// of ex. fraction 0 returns ex and no eval examples.
//
// It returns an error wrapping [ErrInvalidData] when ex is too small to
// leave a training example, and another error for a fraction out of range.
func SplitExamples(ex []Example, fraction float64, seed uint64) (train, eval []Example, err error) {
	if !(fraction >= 0 && fraction < 1) {
		return nil, nil, fmt.Errorf("train: eval fraction %g, want it in [0, 1)", fraction)
	}
	if fraction == 0 {
		return ex, nil, nil
	}
	nEval := max(int(math.Round(fraction*float64(len(ex)))), 1)
	if nEval >= len(ex) {
		return nil, nil, &DataError{Msg: fmt.Sprintf(
			"%d examples are too few to hold out %g of them for evaluation and keep one for training", len(ex), fraction)}
	}
	held := rand.New(rand.NewPCG(seed, splitStream)).Perm(len(ex))[:nEval]
	slices.Sort(held)
	train = make([]Example, 0, len(ex)-nEval)
	eval = make([]Example, 0, nEval)
	for i, x := range ex {
		if len(held) > 0 && held[0] == i {
			eval = append(eval, x)
			held = held[1:]
		} else {
			train = append(train, x)
		}
	}
	return train, eval, nil
}
