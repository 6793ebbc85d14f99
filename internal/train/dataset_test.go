package train

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/tokenizer"
)

// tinyVocab is the vocabulary size of testdata/gpt2-tiny, whose
// <|endoftext|> = 499 is the EOS id.
const tinyVocab = 500

func tinyTokenizer(tb testing.TB) *tokenizer.Tokenizer {
	tb.Helper()
	tok, err := tokenizer.Load(os.DirFS("../../testdata/gpt2-tiny/hf"))
	if err != nil {
		tb.Fatal(err)
	}
	if tok.EOS() != 499 || tok.VocabSize() != tinyVocab {
		tb.Fatalf("tiny tokenizer: EOS %d, vocabulary %d, want 499 and %d", tok.EOS(), tok.VocabSize(), tinyVocab)
	}
	return tok
}

// cat concatenates id slices.
func cat(parts ...[]int32) []int32 { return slices.Concat(parts...) }

// seq returns the ids lo, lo+1, ..., hi-1.
func seq(lo, hi int32) []int32 {
	var s []int32
	for i := lo; i < hi; i++ {
		s = append(s, i)
	}
	return s
}

func TestReadDocuments(t *testing.T) {
	tok := tinyTokenizer(t)
	enc := tok.Encode
	eos := []int32{499}
	tests := []struct {
		name   string
		file   string
		data   string
		format Format
		noTok  bool
		want   [][]int32
	}{
		{
			name: "text/one_document_without_marker",
			file: "a.txt",
			data: "Hello world.\n\nThe second paragraph.\n",
			want: [][]int32{cat(enc("Hello world.\n\nThe second paragraph.\n"), eos)},
		},
		{
			name: "text/marker_separates_documents",
			file: "a.txt",
			data: "First doc.<|endoftext|>Second doc.\n<|endoftext|>\n",
			want: [][]int32{cat(enc("First doc."), eos), cat(enc("Second doc.\n"), eos)},
		},
		{
			name: "text/empty_and_blank_documents_skipped",
			file: "a.txt",
			data: "<|endoftext|>a b<|endoftext|><|endoftext|> \n\t<|endoftext|>\ncd ",
			want: [][]int32{cat(enc("a b"), eos), cat(enc("\ncd "), eos)},
		},
		{
			name: "text/byte_order_mark_ignored",
			file: "a.txt",
			data: "\uFEFFhi there",
			want: [][]int32{cat(enc("hi there"), eos)},
		},
		{
			name:   "text/explicit_format_any_name",
			file:   "corpus.md",
			data:   "x<|endoftext|>y",
			format: FormatText,
			want:   [][]int32{cat(enc("x"), eos), cat(enc("y"), eos)},
		},
		{
			name: "jsonl_text/lines_blank_lines_unknown_fields_crlf",
			file: "d.jsonl",
			data: "{\"text\": \"The cat.\", \"id\": 7}\r\n\r\n  \n{\"meta\": {\"a\": [1]}, \"text\": \"caf\\u00e9 \\\"q\\\"\\n\"}\n",
			want: [][]int32{cat(enc("The cat."), eos), cat(enc("café \"q\"\n"), eos)},
		},
		{
			name: "jsonl_text/marker_in_text_splits",
			file: "d.jsonl",
			data: `{"text": "one<|endoftext|>two<|endoftext|>"}` + "\n" + `{"text": ""}` + "\n" + `{"text": "three"}`,
			want: [][]int32{cat(enc("one"), eos), cat(enc("two"), eos), cat(enc("three"), eos)},
		},
		{
			name: "jsonl_text/auto_json_extension",
			file: "d.JSON",
			data: `{"text": "abc", "input_id": [1]}`,
			want: [][]int32{cat(enc("abc"), eos)},
		},
		{
			name: "jsonl_tokens/auto_no_eos_added",
			file: "ids.jsonl",
			data: "\n{\"input_ids\": [1, 2, 3]}\n{ \"input_ids\" : [ 499 , -0,7 ] , \"text\": \"ignored\" }\n{\"input_ids\": []}\n{\"input_ids\": [0]}",
			want: [][]int32{{1, 2, 3}, {499, 0, 7}, {0}},
		},
		{
			name:   "jsonl_tokens/no_tokenizer",
			file:   "ids.data",
			data:   `{"input_ids": [4, 3]}`,
			format: FormatJSONLTokens,
			noTok:  true,
			want:   [][]int32{{4, 3}},
		},
		{
			name:   "jsonl_text/explicit_ignores_input_ids",
			file:   "d.jsonl",
			data:   `{"input_ids": [4, 3], "text": "hi"}`,
			format: FormatJSONLText,
			want:   [][]int32{cat(enc("hi"), eos)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := ReadOptions{Format: tt.format, Tokenizer: tok, VocabSize: tinyVocab}
			if tt.noTok {
				opts.Tokenizer = nil
			}
			got, err := ReadDocuments(t.Context(), strings.NewReader(tt.data), tt.file, opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ReadDocuments(%q) (-want +got):\n%s", tt.data, diff)
			}
		})
	}
}

func TestReadDocumentsFS(t *testing.T) {
	fsys := fstest.MapFS{"data/ids.jsonl": {Data: []byte(`{"input_ids": [1, 2]}`)}}
	got, err := ReadDocumentsFS(t.Context(), fsys, "data/ids.jsonl", ReadOptions{VocabSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([][]int32{{1, 2}}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := ReadDocumentsFS(t.Context(), fsys, "missing.jsonl", ReadOptions{VocabSize: 10}); err == nil || errors.Is(err, ErrInvalidData) {
		t.Errorf("missing file: error %v, want a not-found error that is not ErrInvalidData", err)
	}
}

func TestReadDocumentsBadData(t *testing.T) {
	tok := tinyTokenizer(t)
	valid16 := strings.Repeat(`{"input_ids": [1, 2, 3, 4]}`+"\n", 16)
	tests := []struct {
		name   string
		file   string
		data   string
		format Format
		vocab  int // default tinyVocab
		want   string
		line   int
	}{
		{name: "text/empty", file: "a.txt", data: "",
			want: "train: a.txt: the dataset holds no documents (format text)"},
		{name: "text/only_markers_and_space", file: "a.txt", data: "\n<|endoftext|> \n<|endoftext|>\n",
			want: "train: a.txt: the dataset holds no documents (format text)"},
		{name: "text/invalid_utf8", file: "a.txt", data: "line one\nab\xffc\n",
			want: "train: a.txt:2: invalid UTF-8 at byte offset 11 (0xff)", line: 2},
		{name: "text/invalid_utf8_after_bom", file: "a.txt", data: "\uFEFF\xc3(",
			want: "train: a.txt:1: invalid UTF-8 at byte offset 3 (0xc3)", line: 1},
		{name: "text/truncated_rune_at_end", file: "a.txt", data: "ok\n\n\xe2\x82",
			want: "train: a.txt:3: invalid UTF-8 at byte offset 4 (0xe2)", line: 3},
		{name: "jsonl/invalid_utf8_in_string", file: "d.jsonl", data: "{\"text\": \"a\"}\n{\"text\": \"\xfe\"}\n",
			want: "train: d.jsonl:2: invalid UTF-8 at byte offset 24 (0xfe)", line: 2},
		{name: "jsonl/blank_lines_only", file: "d.jsonl", data: "\n \r\n\t\n",
			want: "train: d.jsonl: the dataset holds no documents (format jsonl_text)"},
		{name: "jsonl/bad_json", file: "d.jsonl", data: "{\"text\": \"a\"}\n{\"text\": \"b\"\n",
			want: "train: d.jsonl:2: bad JSON at column 13: unexpected end of JSON input", line: 2},
		{name: "jsonl/bad_json_character", file: "d.jsonl", data: "{\"text\": x}",
			want: "train: d.jsonl:1: bad JSON at column 10: invalid character 'x' looking for beginning of value", line: 1},
		{name: "jsonl/trailing_garbage", file: "d.jsonl", data: `{"text": "a"} {"text": "b"}`,
			want: "train: d.jsonl:1: bad JSON at column 15: invalid character '{' after top-level value", line: 1},
		{name: "jsonl/array_not_object", file: "d.json", data: `["a", "b"]`,
			want: "train: d.json:1: want one JSON object a line, got an array", line: 1},
		{name: "jsonl/null_line", file: "d.jsonl", data: "{\"text\": \"a\"}\nnull\n",
			want: "train: d.jsonl:2: want one JSON object a line, got null", line: 2},
		{name: "jsonl_text/missing_text", file: "d.jsonl", data: "{\"text\": \"a\"}\n\n{\"txt\": \"b\"}\n",
			want: `train: d.jsonl:3: missing "text" field`, line: 3},
		{name: "jsonl_text/missing_text_hint", file: "d.jsonl", format: FormatJSONLText, data: `{"input_ids": [1]}`,
			want: `train: d.jsonl:1: missing "text" field (for pre-tokenized "input_ids", use format jsonl_tokens)`, line: 1},
		{name: "jsonl_text/text_is_number", file: "d.jsonl", data: `{"text": 12}`,
			want: `train: d.jsonl:1: "text" is a number, want a string`, line: 1},
		{name: "jsonl_text/text_is_null", file: "d.jsonl", data: `{"text": null}`,
			want: `train: d.jsonl:1: "text" is null, want a string`, line: 1},
		{name: "jsonl_text/text_is_array", file: "d.jsonl", data: `{"text": ["a"]}`,
			want: `train: d.jsonl:1: "text" is an array, want a string`, line: 1},
		{name: "jsonl_tokens/missing_input_ids", file: "d.jsonl", data: "{\"input_ids\": [1]}\n{\"ids\": [1]}",
			want: `train: d.jsonl:2: missing "input_ids" field`, line: 2},
		{name: "jsonl_tokens/input_ids_not_array", file: "d.jsonl", data: `{"input_ids": "1 2"}`,
			format: FormatJSONLTokens,
			want:   `train: d.jsonl:1: "input_ids" is a string, want an array of token ids`, line: 1},
		{name: "jsonl_tokens/element_string", file: "d.jsonl", data: `{"input_ids": [1, "2"]}`,
			want: `train: d.jsonl:1: input_ids[1] is a string, want an integer token id`, line: 1},
		{name: "jsonl_tokens/element_nested", file: "d.jsonl", data: `{"input_ids": [[1, 2]]}`,
			want: `train: d.jsonl:1: input_ids[0] is an array, want an integer token id`, line: 1},
		{name: "jsonl_tokens/element_fraction", file: "d.jsonl", data: `{"input_ids": [1, 2, 2.5]}`,
			want: `train: d.jsonl:1: input_ids[2] = 2.5 is not an integer`, line: 1},
		{name: "jsonl_tokens/element_exponent", file: "d.jsonl", data: `{"input_ids": [1e2]}`,
			want: `train: d.jsonl:1: input_ids[0] = 1e2 is not an integer`, line: 1},
		{name: "jsonl_tokens/out_of_range", file: "data.jsonl", vocab: 50257,
			data: valid16 + `{"input_ids": [0, 1, 50256, 70000]}`,
			want: "train: data.jsonl:17: input_ids[3] = 70000 is outside the vocabulary [0, 50257)", line: 17},
		{name: "jsonl_tokens/vocab_size_is_out", file: "d.jsonl", data: `{"input_ids": [499, 500]}`,
			want: "train: d.jsonl:1: input_ids[1] = 500 is outside the vocabulary [0, 500)", line: 1},
		{name: "jsonl_tokens/negative", file: "d.jsonl", data: `{"input_ids": [-1]}`,
			want: "train: d.jsonl:1: input_ids[0] = -1 is outside the vocabulary [0, 500)", line: 1},
		{name: "jsonl_tokens/huge", file: "d.jsonl", data: `{"input_ids": [99999999999999999999999999]}`,
			want: "train: d.jsonl:1: input_ids[0] = 99999999999999999999999999 is outside the vocabulary [0, 500)", line: 1},
		{name: "auto/unknown_extension", file: "d.csv", data: "a,b\n",
			want: `train: d.csv: cannot tell the format from the extension ".csv": name it (text, jsonl_text or jsonl_tokens), or use .txt, .jsonl or .json`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vocab := tt.vocab
			if vocab == 0 {
				vocab = tinyVocab
			}
			opts := ReadOptions{Format: tt.format, Tokenizer: tok, VocabSize: vocab}
			if vocab != tinyVocab {
				opts.Tokenizer = nil // only jsonl_tokens tests use another vocabulary
			}
			docs, err := ReadDocuments(t.Context(), strings.NewReader(tt.data), tt.file, opts)
			if err == nil {
				t.Fatalf("ReadDocuments(%q) = %v, want error %q", tt.data, docs, tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error\n got %s\nwant %s", got, tt.want)
			}
			if !errors.Is(err, ErrInvalidData) {
				t.Errorf("errors.Is(%v, ErrInvalidData) = false", err)
			}
			var de *DataError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not a *DataError", err)
			}
			if de.File != tt.file || de.Line != tt.line {
				t.Errorf("DataError file:line = %s:%d, want %s:%d", de.File, de.Line, tt.file, tt.line)
			}
		})
	}
}

// TestReadDocumentsBadOptions checks the errors that are the caller's, not
// the dataset's: they must not read as InvalidArgument for the data.
func TestReadDocumentsBadOptions(t *testing.T) {
	tok := tinyTokenizer(t)
	tests := []struct {
		name string
		opts ReadOptions
		file string
		want string
	}{
		{name: "text_without_tokenizer", file: "a.txt", opts: ReadOptions{VocabSize: 500},
			want: "train: read a.txt: format text needs a tokenizer"},
		{name: "jsonl_text_without_tokenizer", file: "a.jsonl", opts: ReadOptions{VocabSize: 500},
			want: "train: read a.jsonl: format jsonl_text needs a tokenizer"},
		{name: "no_vocab_size", file: "a.txt", opts: ReadOptions{Tokenizer: tok},
			want: "train: read a.txt: vocabulary size 0, want it in [1, 2^31)"},
		{name: "tokenizer_larger_than_model", file: "a.txt", opts: ReadOptions{Tokenizer: tok, VocabSize: 100},
			want: "train: read a.txt: the tokenizer's 500 ids do not fit the model's vocabulary of 100"},
		{name: "unknown_format", file: "a.txt", opts: ReadOptions{Tokenizer: tok, VocabSize: 500, Format: 9},
			want: "train: read a.txt: unknown format Format(9)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadDocuments(t.Context(), strings.NewReader(`{"text": "hi"}`), tt.file, tt.opts)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error %v, want %s", err, tt.want)
			}
			if errors.Is(err, ErrInvalidData) {
				t.Errorf("errors.Is(%v, ErrInvalidData) = true, want false", err)
			}
		})
	}
}

func TestReadDocumentsCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	data := strings.Repeat(`{"input_ids": [1]}`+"\n", 5000)
	_, err := ReadDocuments(ctx, strings.NewReader(data), "d.jsonl", ReadOptions{VocabSize: 10})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
}

func TestParseFormat(t *testing.T) {
	for _, f := range []Format{FormatAuto, FormatText, FormatJSONLText, FormatJSONLTokens} {
		t.Run("format="+f.String(), func(t *testing.T) {
			got, err := ParseFormat(f.String())
			if err != nil || got != f {
				t.Errorf("ParseFormat(%q) = %v, %v, want %v", f.String(), got, err, f)
			}
		})
	}
	if got, err := ParseFormat(""); err != nil || got != FormatAuto {
		t.Errorf(`ParseFormat("") = %v, %v, want auto`, got, err)
	}
	if _, err := ParseFormat("csv"); err == nil {
		t.Error(`ParseFormat("csv") succeeded`)
	}
	for _, p := range []Packing{PackingPack, PackingPad} {
		if got, err := ParsePacking(p.String()); err != nil || got != p {
			t.Errorf("ParsePacking(%q) = %v, %v, want %v", p.String(), got, err, p)
		}
	}
	if _, err := ParsePacking("stride"); err == nil {
		t.Error(`ParsePacking("stride") succeeded`)
	}
}

func TestExamplesPack(t *testing.T) {
	tests := []struct {
		name string
		docs [][]int32
		T    int
		want []Example
	}{
		{
			name: "T=4/tokens=14/overlap_one_drop_tail",
			docs: [][]int32{seq(0, 3), seq(3, 10), seq(10, 14)}, // stream 0..13
			T:    4,
			want: []Example{
				{Inputs: seq(0, 4), Targets: seq(1, 5)},
				{Inputs: seq(4, 8), Targets: seq(5, 9)},
				{Inputs: seq(8, 12), Targets: seq(9, 13)},
				// 12, 13: too few for a window; dropped.
			},
		},
		{
			name: "T=4/tokens=13/exact",
			docs: [][]int32{seq(0, 13)},
			T:    4,
			want: []Example{
				{Inputs: seq(0, 4), Targets: seq(1, 5)},
				{Inputs: seq(4, 8), Targets: seq(5, 9)},
				{Inputs: seq(8, 12), Targets: seq(9, 13)},
			},
		},
		{
			name: "T=3/tokens=4/one_window",
			docs: [][]int32{{7}, {}, {8, 9}, {5}},
			T:    3,
			want: []Example{{Inputs: []int32{7, 8, 9}, Targets: []int32{8, 9, 5}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Examples(tt.docs, tt.T, PackingPack, 499)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Examples (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExamplesPad(t *testing.T) {
	const pad, ign = 499, backend.IgnoreIndex
	docs := [][]int32{
		{1, 2, 3},                    // short: padded
		{4},                          // one token: no target, skipped
		{},                           // empty: skipped
		{5, 6, 7, 8, 9},              // exactly T+1
		{10, 11, 12, 13, 14, 15, 16}, // long: truncated to T+1
		{17, 18, 19, 20},             // exactly T
	}
	want := []Example{
		{Inputs: []int32{1, 2, 3, pad}, Targets: []int32{2, 3, ign, ign}},
		{Inputs: []int32{5, 6, 7, 8}, Targets: []int32{6, 7, 8, 9}},
		{Inputs: []int32{10, 11, 12, 13}, Targets: []int32{11, 12, 13, 14}},
		{Inputs: []int32{17, 18, 19, 20}, Targets: []int32{18, 19, 20, ign}},
	}
	got, err := Examples(docs, 4, PackingPad, pad)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Examples (-want +got):\n%s", diff)
	}
}

func TestExamplesErrors(t *testing.T) {
	tests := []struct {
		name    string
		docs    [][]int32
		T       int
		p       Packing
		want    string
		invalid bool // wraps ErrInvalidData
	}{
		{name: "pack/too_few_tokens", docs: [][]int32{seq(0, 40), seq(0, 24)}, T: 64, p: PackingPack, invalid: true,
			want: "train: the dataset has 64 tokens; packing needs at least 65 for one window of seq_len 64 (plus the last target)"},
		{name: "pack/no_documents", T: 4, p: PackingPack, invalid: true,
			want: "train: the dataset has 0 tokens; packing needs at least 5 for one window of seq_len 4 (plus the last target)"},
		{name: "pad/no_document_of_two_tokens", docs: [][]int32{{1}, {}}, T: 4, p: PackingPad, invalid: true,
			want: "train: no document has the 2 tokens that padding needs for one example"},
		{name: "T=0", docs: [][]int32{seq(0, 9)}, T: 0, p: PackingPack,
			want: "train: sequence length 0, want > 0"},
		{name: "unknown_packing", docs: [][]int32{seq(0, 9)}, T: 4, p: 7,
			want: "train: unknown packing Packing(7)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Examples(tt.docs, tt.T, tt.p, 0)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error %v, want %s", err, tt.want)
			}
			if got := errors.Is(err, ErrInvalidData); got != tt.invalid {
				t.Errorf("errors.Is(err, ErrInvalidData) = %v, want %v", got, tt.invalid)
			}
		})
	}
}

// TestExactness65 is the case the job tests rely on: a pre-tokenized
// dataset of exactly 65 tokens, seq_len 64, batch 1, no shuffling gives one
// window, inputs = ids[0:64] and targets = ids[1:65], at every step.
func TestExactness65(t *testing.T) {
	ids := make([]int32, 65)
	var b strings.Builder
	b.WriteString(`{"input_ids": [`)
	for i := range ids {
		ids[i] = int32(i*37+11) % tinyVocab
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, ids[i])
	}
	b.WriteString("]}\n")
	docs, err := ReadDocuments(t.Context(), strings.NewReader(b.String()), "exact.jsonl", ReadOptions{VocabSize: tinyVocab})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([][]int32{ids}, docs); diff != "" {
		t.Fatalf("documents (-want +got):\n%s", diff)
	}
	ex, err := Examples(docs, 64, PackingPack, 499)
	if err != nil {
		t.Fatal(err)
	}
	if len(ex) != 1 {
		t.Fatalf("%d examples, want 1", len(ex))
	}
	l, err := NewLoader(ex, 1, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.StepsPerEpoch(); got != 1 {
		t.Errorf("StepsPerEpoch = %d, want 1", got)
	}
	for step := range 5 {
		in, tg, epoch := l.Next()
		if diff := cmp.Diff(ids[0:64], in); diff != "" {
			t.Errorf("step %d: inputs (-want +got):\n%s", step, diff)
		}
		if diff := cmp.Diff(ids[1:65], tg); diff != "" {
			t.Errorf("step %d: targets (-want +got):\n%s", step, diff)
		}
		if want := float64(step + 1); epoch != want {
			t.Errorf("step %d: epoch %g, want %g", step, epoch, want)
		}
	}
}

// numbered returns n examples of length T whose ids start at 100*i, so
// that example i is told by its first input id.
func numbered(n, T int) []Example {
	ex := make([]Example, n)
	for i := range ex {
		ex[i] = Example{Inputs: seq(int32(100*i), int32(100*i+T)), Targets: seq(int32(100*i+1), int32(100*i+T+1))}
	}
	return ex
}

// batchIDs returns the example numbers of the rows of a batch made of
// numbered examples of length T, checking the targets match.
func batchIDs(t *testing.T, in, tg []int32, T int) []int {
	t.Helper()
	var ids []int
	for r := 0; r < len(in); r += T {
		if tg[r] != in[r]+1 {
			t.Fatalf("row %d: target %d after input %d", r/T, tg[r], in[r])
		}
		ids = append(ids, int(in[r]/100))
	}
	return ids
}

func TestLoaderWrapAround(t *testing.T) {
	const T = 3
	l, err := NewLoader(numbered(5, T), 2, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.StepsPerEpoch(); got != 3 {
		t.Fatalf("StepsPerEpoch = %d, want 3", got)
	}
	want := []struct {
		rows  []int
		epoch float64
	}{
		{[]int{0, 1}, 1.0 / 3}, {[]int{2, 3}, 2.0 / 3}, {[]int{4, 0}, 1}, // the last batch wraps to the start
		{[]int{0, 1}, 4.0 / 3}, {[]int{2, 3}, 5.0 / 3}, {[]int{4, 0}, 2},
	}
	for step, w := range want {
		in, tg, epoch := l.Next()
		if len(in) != 2*T || len(tg) != 2*T {
			t.Fatalf("step %d: %d inputs and %d targets, want %d", step, len(in), len(tg), 2*T)
		}
		if diff := cmp.Diff(w.rows, batchIDs(t, in, tg, T)); diff != "" {
			t.Errorf("step %d: rows (-want +got):\n%s", step, diff)
		}
		if diff := cmp.Diff(w.epoch, epoch, cmpopts.EquateApprox(0, 1e-12)); diff != "" {
			t.Errorf("step %d: epoch (-want +got):\n%s", step, diff)
		}
	}
	// The rows of one batch are the examples, row-major.
	l.Seek(0)
	in, tg, _ := l.Next()
	if diff := cmp.Diff(cat(seq(0, 3), seq(100, 103)), in); diff != "" {
		t.Errorf("inputs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(cat(seq(1, 4), seq(101, 104)), tg); diff != "" {
		t.Errorf("targets (-want +got):\n%s", diff)
	}
}

func TestLoaderBatchLargerThanDataset(t *testing.T) {
	l, err := NewLoader(numbered(2, 2), 5, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	in, tg, epoch := l.Next()
	if diff := cmp.Diff([]int{0, 1, 0, 1, 0}, batchIDs(t, in, tg, 2)); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	if epoch != 1 {
		t.Errorf("epoch %g, want 1", epoch)
	}
}

// epochs returns the example numbers of the batches of n epochs.
func epochs(t *testing.T, l *Loader, n, T int) [][]int {
	t.Helper()
	out := make([][]int, n)
	for e := range n {
		for range l.StepsPerEpoch() {
			in, tg, _ := l.Next()
			out[e] = append(out[e], batchIDs(t, in, tg, T)...)
		}
	}
	return out
}

func TestLoaderShuffle(t *testing.T) {
	const n, B, T, nEpochs = 12, 3, 2, 4
	ex := numbered(n, T)
	newLoader := func(seed uint64) *Loader {
		l, err := NewLoader(ex, B, true, seed)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	got := epochs(t, newLoader(1), nEpochs, T)

	t.Run("every_example_once_per_epoch", func(t *testing.T) {
		for e, order := range got {
			if diff := cmp.Diff(seqInts(n), slices.Sorted(slices.Values(order))); diff != "" {
				t.Errorf("epoch %d: sorted examples (-want +got):\n%s", e, diff)
			}
		}
	})
	t.Run("order_changes_between_epochs", func(t *testing.T) {
		for e := 1; e < nEpochs; e++ {
			if slices.Equal(got[e], got[e-1]) {
				t.Errorf("epochs %d and %d have the same order %v", e-1, e, got[e])
			}
		}
		if slices.Equal(got[0], seqInts(n)) {
			t.Errorf("epoch 0 is not shuffled: %v", got[0])
		}
	})
	t.Run("same_seed_same_batches", func(t *testing.T) {
		if diff := cmp.Diff(got, epochs(t, newLoader(1), nEpochs, T)); diff != "" {
			t.Errorf("second run (-first +second):\n%s", diff)
		}
	})
	t.Run("other_seed_other_batches", func(t *testing.T) {
		if other := epochs(t, newLoader(2), nEpochs, T); cmp.Equal(got, other) {
			t.Errorf("seeds 1 and 2 give the same batches %v", got)
		}
	})
	t.Run("seek_resumes", func(t *testing.T) {
		l := newLoader(1)
		l.Seek(2*l.StepsPerEpoch() + 1) // epoch 2, its second batch
		if l.Step() != 2*l.StepsPerEpoch()+1 {
			t.Fatalf("Step = %d after Seek", l.Step())
		}
		in, tg, epoch := l.Next()
		if diff := cmp.Diff(got[2][B:2*B], batchIDs(t, in, tg, T)); diff != "" {
			t.Errorf("rows after Seek (-want +got):\n%s", diff)
		}
		if want := 2 + 2.0/4; epoch != want {
			t.Errorf("epoch %g, want %g", epoch, want)
		}
	})
}

func seqInts(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func TestNewLoaderErrors(t *testing.T) {
	tests := []struct {
		name    string
		ex      []Example
		B       int
		want    string
		invalid bool
	}{
		{name: "no_examples", B: 1, want: "train: no training examples", invalid: true},
		{name: "B=0", ex: numbered(2, 2), B: 0, want: "train: batch size 0, want > 0"},
		{name: "ragged", ex: append(numbered(2, 2), Example{Inputs: []int32{1}, Targets: []int32{2}}), B: 1,
			want: "train: example 2 has 1 inputs and 1 targets, want 2 of each (and > 0)"},
		{name: "targets_short", ex: []Example{{Inputs: []int32{1, 2}, Targets: []int32{2}}}, B: 1,
			want: "train: example 0 has 2 inputs and 1 targets, want 2 of each (and > 0)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewLoader(tt.ex, tt.B, false, 0)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error %v, want %s", err, tt.want)
			}
			if got := errors.Is(err, ErrInvalidData); got != tt.invalid {
				t.Errorf("errors.Is(err, ErrInvalidData) = %v, want %v", got, tt.invalid)
			}
		})
	}
}

func TestSplitExamples(t *testing.T) {
	tests := []struct {
		n        int
		fraction float64
		wantEval int
	}{
		{n: 10, fraction: 0.1, wantEval: 1},
		{n: 10, fraction: 0.25, wantEval: 3}, // 2.5 rounds up (away from zero)
		{n: 100, fraction: 0.2, wantEval: 20},
		{n: 3, fraction: 0.01, wantEval: 1}, // at least one
		{n: 2, fraction: 0.5, wantEval: 1},
		{n: 7, fraction: 0, wantEval: 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("n=%d/fraction=%g", tt.n, tt.fraction), func(t *testing.T) {
			ex := numbered(tt.n, 2)
			train, eval, err := SplitExamples(ex, tt.fraction, 42)
			if err != nil {
				t.Fatal(err)
			}
			if len(eval) != tt.wantEval || len(train) != tt.n-tt.wantEval {
				t.Fatalf("%d train and %d eval examples, want %d and %d", len(train), len(eval), tt.n-tt.wantEval, tt.wantEval)
			}
			id := func(x Example) int { return int(x.Inputs[0] / 100) }
			var trainIDs, evalIDs []int
			for _, x := range train {
				trainIDs = append(trainIDs, id(x))
			}
			for _, x := range eval {
				evalIDs = append(evalIDs, id(x))
			}
			// Disjoint and covering, each in the order of ex.
			if !slices.IsSorted(trainIDs) || !slices.IsSorted(evalIDs) {
				t.Errorf("train %v or eval %v is not in the order of the examples", trainIDs, evalIDs)
			}
			all := slices.Sorted(slices.Values(slices.Concat(trainIDs, evalIDs)))
			if diff := cmp.Diff(seqInts(tt.n), all); diff != "" {
				t.Errorf("train + eval (-want +got):\n%s", diff)
			}
			// Deterministic.
			train2, eval2, err := SplitExamples(ex, tt.fraction, 42)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(eval, eval2); diff != "" {
				t.Errorf("second split's eval (-first +second):\n%s", diff)
			}
			if diff := cmp.Diff(train, train2); diff != "" {
				t.Errorf("second split's train (-first +second):\n%s", diff)
			}
		})
	}
	t.Run("seed_changes_split", func(t *testing.T) {
		ex := numbered(100, 2)
		_, a, _ := SplitExamples(ex, 0.2, 1)
		_, b, _ := SplitExamples(ex, 0.2, 2)
		if cmp.Equal(a, b) {
			t.Error("seeds 1 and 2 hold out the same examples")
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, c := range []struct {
			n        int
			fraction float64
			want     string
			invalid  bool
		}{
			{n: 1, fraction: 0.1, invalid: true,
				want: "train: 1 examples are too few to hold out 0.1 of them for evaluation and keep one for training"},
			{n: 4, fraction: 0.9, invalid: true,
				want: "train: 4 examples are too few to hold out 0.9 of them for evaluation and keep one for training"},
			{n: 4, fraction: 1, want: "train: eval fraction 1, want it in [0, 1)"},
			{n: 4, fraction: -0.1, want: "train: eval fraction -0.1, want it in [0, 1)"},
		} {
			_, _, err := SplitExamples(numbered(c.n, 2), c.fraction, 0)
			if err == nil || err.Error() != c.want {
				t.Errorf("n=%d fraction=%g: error %v, want %s", c.n, c.fraction, err, c.want)
			}
			if got := errors.Is(err, ErrInvalidData); got != c.invalid {
				t.Errorf("n=%d fraction=%g: errors.Is(err, ErrInvalidData) = %v, want %v", c.n, c.fraction, got, c.invalid)
			}
		}
	})
}

func TestDataErrorText(t *testing.T) {
	for _, c := range []struct {
		err  DataError
		want string
	}{
		{DataError{File: "d.jsonl", Line: 3, Msg: "m"}, "train: d.jsonl:3: m"},
		{DataError{File: "d.jsonl", Msg: "m"}, "train: d.jsonl: m"},
		{DataError{Line: 3, Msg: "m"}, "train: line 3: m"},
		{DataError{Msg: "m"}, "train: m"},
	} {
		if got := c.err.Error(); got != c.want {
			t.Errorf("%+v: Error() = %q, want %q", c.err, got, c.want)
		}
	}
}

func FuzzReadDocuments(f *testing.F) {
	tok := tinyTokenizer(f)
	for _, seed := range []struct {
		data   string
		format uint8
	}{
		{"Hello world.<|endoftext|>Second.\n", uint8(FormatText)},
		{"<|endoftext|><|endoftext|>\xff", uint8(FormatText)},
		{"{\"text\": \"a\\u00e9\"}\n\n{\"text\": 1}\n", uint8(FormatJSONLText)},
		{"{\"input_ids\": [1, 2, -0, 499]}\n{\"input_ids\": [1.5e3, \"x\", [1]]}", uint8(FormatJSONLTokens)},
		{"{\"input_ids\": [ 1 , 2 ]  }\r\nnull\n[]", uint8(FormatAuto)},
		{"\uFEFF{\"input_ids\":[]}", uint8(FormatJSONLTokens)},
	} {
		f.Add([]byte(seed.data), seed.format)
	}
	names := []string{"d.txt", "d.jsonl", "d.json", "d.bin"}
	f.Fuzz(func(t *testing.T, data []byte, format uint8) {
		opts := ReadOptions{Format: Format(format % 4), Tokenizer: tok, VocabSize: tinyVocab}
		name := names[int(format/4)%len(names)]
		docs, err := ReadDocuments(t.Context(), strings.NewReader(string(data)), name, opts)
		if err != nil {
			if !errors.Is(err, ErrInvalidData) {
				t.Fatalf("error %v does not wrap ErrInvalidData", err)
			}
			var de *DataError
			if !errors.As(err, &de) || de.File != name {
				t.Fatalf("error %v is not a *DataError naming %s", err, name)
			}
			return
		}
		if len(docs) == 0 {
			t.Fatal("no documents and no error")
		}
		for i, d := range docs {
			if len(d) == 0 {
				t.Fatalf("document %d is empty", i)
			}
			for j, id := range d {
				if id < 0 || id >= tinyVocab {
					t.Fatalf("docs[%d][%d] = %d is outside the vocabulary", i, j, id)
				}
			}
		}
		for _, p := range []Packing{PackingPack, PackingPad} {
			ex, err := Examples(docs, 8, p, tok.EOS())
			if err != nil {
				if !errors.Is(err, ErrInvalidData) {
					t.Fatalf("Examples: error %v does not wrap ErrInvalidData", err)
				}
				continue
			}
			l, err := NewLoader(ex, 3, true, uint64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			for range 2 * l.StepsPerEpoch() {
				if in, tg, _ := l.Next(); len(in) != 3*8 || len(tg) != 3*8 {
					t.Fatalf("batch of %d inputs and %d targets, want %d", len(in), len(tg), 3*8)
				}
			}
		}
	})
}
