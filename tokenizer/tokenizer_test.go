package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	tiktoken "github.com/tiktoken-go/tokenizer"
)

// gpt2 is GPT-2's tokenizer from testdata/gpt2, loaded once for all tests.
var gpt2 = sync.OnceValues(func() (*Tokenizer, error) { return Load(os.DirFS("testdata/gpt2")) })

func loadGPT2(tb testing.TB) *Tokenizer {
	tb.Helper()
	tok, err := gpt2()
	if err != nil {
		tb.Fatalf("Load(testdata/gpt2): %v", err)
	}
	return tok
}

// goldenCase is a case of testdata/gpt2/golden-ids.json.
type goldenCase struct {
	Name string  `json:"name"`
	Text string  `json:"text"`
	IDs  []int32 `json:"ids"` // encoder.py and tiktoken; special-token text is plain text
	// IDsHFSpecial is Hugging Face's result, where <|endoftext|> is special;
	// absent where it equals IDs.
	IDsHFSpecial []int32 `json:"ids_hf_special"`
}

func goldenCases(tb testing.TB) []goldenCase {
	tb.Helper()
	data, err := os.ReadFile("testdata/gpt2/golden-ids.json")
	if err != nil {
		tb.Fatal(err)
	}
	var golden struct {
		Cases []goldenCase `json:"cases"`
	}
	if err := json.Unmarshal(data, &golden); err != nil {
		tb.Fatal(err)
	}
	if len(golden.Cases) < 30 {
		tb.Fatalf("golden-ids.json has %d cases, want its 39", len(golden.Cases))
	}
	return golden.Cases
}

// realText returns the English text of testdata/text (the Go specification,
// memory model and GODEBUG docs), about 340 KB.
func realText(tb testing.TB) string {
	tb.Helper()
	var sb strings.Builder
	for _, name := range []string{"go_spec.html", "go_mem.html", "godebug.md"} {
		data, err := os.ReadFile("testdata/text/" + name)
		if err != nil {
			tb.Fatal(err)
		}
		sb.Write(data)
	}
	return sb.String()
}

// TestGolden checks Encode, EncodeWith and Decode against the ids of
// OpenAI's encoder.py and tiktoken (ids) and of Hugging Face
// (ids_hf_special).
func TestGolden(t *testing.T) {
	tok := loadGPT2(t)
	for _, c := range goldenCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			if diff := cmp.Diff(c.IDs, tok.Encode(c.Text), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Encode(%q) mismatch (-want +got):\n%s", c.Text, diff)
			}
			wantSpecial := c.IDsHFSpecial
			if wantSpecial == nil {
				wantSpecial = c.IDs
			}
			got := tok.EncodeWith(c.Text, EncodeOptions{AllowSpecial: true})
			if diff := cmp.Diff(wantSpecial, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("EncodeWith(%q, AllowSpecial) mismatch (-want +got):\n%s", c.Text, diff)
			}
			for _, ids := range [][]int32{c.IDs, wantSpecial} {
				text, err := tok.Decode(ids)
				if err != nil {
					t.Fatalf("Decode(%v): %v", ids, err)
				}
				if text != c.Text {
					t.Errorf("Decode(%v) = %q, want %q", ids, text, c.Text)
				}
			}
		})
	}
}

// TestEncodeSpecial checks where special tokens are matched with
// AllowSpecial: anywhere in the text, next to anything, never without it.
func TestEncodeSpecial(t *testing.T) {
	tok := loadGPT2(t)
	for _, c := range []struct {
		name, text string
		want       []int32
	}{
		{"middle", "a<|endoftext|>b", []int32{64, 50256, 65}},
		{"twice", "<|endoftext|><|endoftext|>", []int32{50256, 50256}},
		{"after_space", "Hi <|endoftext|>", []int32{17250, 220, 50256}},
		{"partial", "<|endoftext|", []int32{27, 91, 437, 1659, 5239, 91}},
		{"overlapping", "<|endoftext<|endoftext|>|>", []int32{27, 91, 437, 1659, 5239, 50256, 91, 29}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := tok.EncodeWith(c.text, EncodeOptions{AllowSpecial: true})
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("EncodeWith(%q, AllowSpecial) mismatch (-want +got):\n%s", c.text, diff)
			}
			if plain := tok.Encode(c.text); contains(plain, 50256) {
				t.Errorf("Encode(%q) = %v: special token text must stay plain text", c.text, plain)
			}
		})
	}
}

func contains(ids []int32, id int32) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// TestPreTokenize checks the pre-tokenizer against the splits of the GPT-2
// pattern by Python's regex module (2026.5.9), and on invalid UTF-8, where
// each invalid byte is a character of the [^\s\p{L}\p{N}] class.
func TestPreTokenize(t *testing.T) {
	for _, c := range []struct {
		name, text string
		want       []string
	}{
		{"words", "Hello world", []string{"Hello", " world"}},
		{"two_spaces", "  two spaces", []string{" ", " two", " spaces"}},
		{"trailing_spaces", "end  ", []string{"end", "  "}},
		{"newlines", "a\n\nb", []string{"a", "\n", "\n", "b"}},
		{"space_newline", " \n x", []string{" \n", " x"}},
		{"contractions", "it's they're I'LL", []string{"it", "'s", " they", "'re", " I", "'", "LL"}},
		{"quotes", "''s 's", []string{"''", "s", " '", "s"}},
		{"ideographic_space", "x\u3000\u3000y", []string{"x", "\u3000", "\u3000", "y"}},
		{"nbsp", "a \u00a0b", []string{"a", " ", "\u00a0", "b"}},
		{"em_spaces", "\u2003\u2003", []string{"\u2003\u2003"}},
		{"file_separator", "a\x1cb", []string{"a", "\x1c", "b"}},
		{"superscripts", "x²+y²", []string{"x", "²", "+", "y", "²"}},
		{"combining", "e\u0301t\u00e9", []string{"e", "\u0301", "t\u00e9"}},
		{"punctuation", "don't!?", []string{"don", "'t", "!?"}},
		{"space_digits", "  123abc", []string{" ", " 123", "abc"}},
		{"tabs", "\t\tx", []string{"\t", "\t", "x"}},
		{"space_tab", "a \t b", []string{"a", " \t", " b"}},
		{"invalid_byte", "a\xffb", []string{"a", "\xff", "b"}},
		{"invalid_run", " \xff\xfe!é", []string{" \xff\xfe!", "é"}},
		{"truncated", "\xe2\x82A", []string{"\xe2\x82", "A"}},
		{"truncated_end", "é\xc3", []string{"é", "\xc3"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for s := c.text; len(s) > 0; {
				n := preTokenLen(s)
				got, s = append(got, s[:n]), s[n:]
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("pre-tokens of %q mismatch (-want +got):\n%s", c.text, diff)
			}
		})
	}
}

// randomText returns n random pieces of text: letters, digits, Unicode
// spaces, punctuation, contractions, emoji, CJK, combining marks and
// control characters, the places where GPT-2's pattern is subtle.
func randomText(r *rand.Rand, n int) string {
	pieces := []string{
		"a", "b", "z", "X", "Q", "0", "7", "9", " ", " ", " ", "  ", ".", ",", "!", "?", "-", "_", "(", ")",
		"\"", "'", "<", ">", "/", "\\", "@", "#", "$", "%", "&", "*", "+", "=", "~", "`", "|", "{", "}",
		"'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'RE", "''",
		"\t", "\n", "\r\n", "\v", "\f", "\x1c", "\x1f", "\u0085", "\u00a0", "\u1680", "\u2000", "\u2003",
		"\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u200b", "\u180e", "\ufeff",
		"é", "ü", "ñ", "ß", "Ω", "ж", "Я", "中", "文", "日本", "ひら", "カタ", "한국", "مرحبا", "שלום",
		"e\u0301", "\u0308", "²", "½", "Ⅻ", "٣", "२", "👋", "🌍", "👨\u200d👩\u200d👧", "🇺🇸", "👍🏽",
		"\u200d", "\ufffd", "\x00", "\x07", "\x1b", "\x7f", "€", "…", "—", "“",
		"hello", "world", " the", "ing", "123456", "<|endoftext|>",
	}
	var sb strings.Builder
	for range n {
		sb.WriteString(pieces[r.IntN(len(pieces))])
	}
	return sb.String()
}

// r50k is tiktoken-go's r50k_base, GPT-2's ranks, loaded once.
var r50k = sync.OnceValues(func() (tiktoken.Codec, error) { return tiktoken.Get(tiktoken.R50kBase) })

func tiktokenEncode(tb testing.TB, s string) []int32 {
	tb.Helper()
	codec, err := r50k()
	if err != nil {
		tb.Fatal(err)
	}
	ids, _, err := codec.Encode(s)
	if err != nil {
		tb.Fatalf("tiktoken-go Encode(%q): %v", s, err)
	}
	out := make([]int32, len(ids))
	for i, id := range ids {
		out[i] = int32(id)
	}
	return out
}

// TestCrossCheckTiktoken compares Encode with tiktoken-go's r50k_base on
// random strings and on real text.
func TestCrossCheckTiktoken(t *testing.T) {
	tok := loadGPT2(t)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		// tiktoken-go v0.10.0 drops the byte 0x7F (DEL, token 221) from its
		// input; encoder.py does not (TestBPEMatchesEncoderPy covers it).
		s := strings.ReplaceAll(randomText(r, r.IntN(40)), "\x7f", "")
		if diff := cmp.Diff(tiktokenEncode(t, s), tok.Encode(s), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("random string %d, Encode(%q) mismatch (-tiktoken +got):\n%s", i, s, diff)
		}
	}
	text := realText(t)
	want := tiktokenEncode(t, text)
	if len(want) < 50000 {
		t.Fatalf("tiktoken-go gives %d tokens for the real text, want it to be a large test", len(want))
	}
	if diff := cmp.Diff(want, tok.Encode(text)); diff != "" {
		t.Errorf("Encode(real text) mismatch (-tiktoken +got):\n%s", diff)
	}
}

// encoderPyBPE is the bpe function of OpenAI's encoder.py, ported as is: in
// passes, merge every occurrence, left to right, of the lowest-ranked pair
// present. It is the O(n²) reference for appendBPE.
func encoderPyBPE(t *Tokenizer, word string) []int32 {
	ids := make([]int32, len(word))
	for i := range len(word) {
		ids[i] = t.byteIDs[word[i]]
	}
	for len(ids) > 1 {
		var best merge
		var left, right int32
		found := false
		for i := range len(ids) - 1 {
			if m, ok := t.merges[pairKey(ids[i], ids[i+1])]; ok && (!found || m.rank < best.rank) {
				best, left, right, found = m, ids[i], ids[i+1], true
			}
		}
		if !found {
			break
		}
		var merged []int32
		for i := 0; i < len(ids); i++ {
			if i+1 < len(ids) && ids[i] == left && ids[i+1] == right {
				merged = append(merged, best.id)
				i++
			} else {
				merged = append(merged, ids[i])
			}
		}
		ids = merged
	}
	return ids
}

// TestBPEMatchesEncoderPy compares appendBPE with the reference on the
// pre-tokens of random text, for both vocabularies in testdata.
func TestBPEMatchesEncoderPy(t *testing.T) {
	tiny, err := Load(os.DirFS("testdata/gpt2-tiny"))
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]*Tokenizer{"gpt2": loadGPT2(t), "gpt2-tiny": tiny} {
		t.Run("vocab="+name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, 4))
			words := 0
			for range 500 {
				for s := randomText(r, 60); len(s) > 0; {
					n := preTokenLen(s)
					word := s[:n]
					s = s[n:]
					if n < 2 {
						continue
					}
					words++
					if diff := cmp.Diff(encoderPyBPE(tok, word), tok.appendBPE(nil, word)); diff != "" {
						t.Fatalf("BPE of %q mismatch (-encoder.py +got):\n%s", word, diff)
					}
				}
			}
			if words < 5000 {
				t.Fatalf("only %d words of 2 bytes or more", words)
			}
		})
	}
}

// TestBPEPasses checks that pairs made during a pass wait for the next
// pass, as in encoder.py, even when merges.txt ranks them first: with the
// merges "ab a" then "a b", "abab" is ab|ab, not aba|b.
func TestBPEPasses(t *testing.T) {
	vocab := byteVocab()
	vocab["ab"] = 256
	vocab["aba"] = 257
	tok, err := newTokenizer(vocab, [][2]string{{"ab", "a"}, {"a", "b"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		word string
		want []int32
	}{
		{"abab", []int32{256, 256}},
		{"aba", []int32{257}}, // "a b" in the first pass, "ab a" in the second
		{"ababa", []int32{256, 257}},
	} {
		t.Run("word="+c.word, func(t *testing.T) {
			if diff := cmp.Diff(c.want, tok.appendBPE(nil, c.word)); diff != "" {
				t.Errorf("BPE mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.want, encoderPyBPE(tok, c.word)); diff != "" {
				t.Errorf("reference BPE mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// byteVocab returns a vocabulary of the 256 byte tokens in GPT-2's order.
func byteVocab() map[string]int32 {
	vocab := make(map[string]int32)
	for b, r := range byteRunes {
		vocab[string(r)] = int32(b)
	}
	return vocab
}

// TestLongWord checks that a word of 40,000 random letters encodes in
// O(n log n) time (encoder.py's O(n²) takes minutes) and exactly.
func TestLongWord(t *testing.T) {
	tok := loadGPT2(t)
	r := rand.New(rand.NewPCG(5, 6))
	b := make([]byte, 40000)
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	word := " " + string(b)
	start := time.Now()
	got := tok.Encode(word)
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Encode of a %d-byte word took %v, want well under a second", len(word), elapsed)
	}
	if diff := cmp.Diff(tiktokenEncode(t, word), got); diff != "" {
		t.Errorf("Encode mismatch (-tiktoken +got):\n%s", diff)
	}
}

// TestTiny loads the 500-token tokenizer of the gpt2-tiny oracle model and
// checks ids from a port of encoder.py run with Python's regex module.
func TestTiny(t *testing.T) {
	tok, err := Load(os.DirFS("testdata/gpt2-tiny"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := [3]int{tok.VocabSize(), int(tok.BOS()), int(tok.EOS())}, [3]int{500, 499, 499}; got != want {
		t.Errorf("VocabSize, BOS, EOS = %v, want %v", got, want)
	}
	for _, c := range []struct {
		text string
		want []int32
	}{
		{"Hello world", []int32{39, 68, 346, 78, 270, 262, 397}},
		{"The Go programming language", []int32{399, 68, 350, 78, 324, 362, 76, 285, 302, 292, 70, 84, 64, 422}},
		{" the interface", []int32{267, 487, 69, 498}},
		{"func main() {}", []int32{69, 385, 66, 289, 393, 7, 8, 220, 90, 92}},
		{"<|endoftext|>", []int32{27, 91, 401, 78, 69, 83, 68, 87, 83, 91, 29}},
		{"naïve café 👋", []int32{77, 64, 127, 107, 316, 266, 64, 69, 127, 102, 220, 172, 253, 239, 233}},
	} {
		t.Run(fmt.Sprintf("text=%q", c.text), func(t *testing.T) {
			ids := tok.Encode(c.text)
			if diff := cmp.Diff(c.want, ids); diff != "" {
				t.Errorf("Encode mismatch (-want +got):\n%s", diff)
			}
			if got, err := tok.Decode(ids); err != nil || got != c.text {
				t.Errorf("Decode(Encode(%q)) = %q, %v", c.text, got, err)
			}
		})
	}
	if diff := cmp.Diff([]int32{499, 39, 68, 75}, tok.EncodeWith("<|endoftext|>Hel", EncodeOptions{AllowSpecial: true})); diff != "" {
		t.Errorf("EncodeWith(AllowSpecial) mismatch (-want +got):\n%s", diff)
	}
	text := realText(t)[:20000]
	if got, err := tok.Decode(tok.Encode(text)); err != nil || got != text {
		t.Errorf("Decode(Encode(real text)) differs from the text, error %v", err)
	}
}

// gpt2TokenizerJSON returns the tokenizer.json of Hugging Face's gpt2,
// converted from the vocab.json and merges.txt in dir, with its merges as
// "left right" strings or, with pairs, as [left, right] lists.
func gpt2TokenizerJSON(tb testing.TB, dir string, pairs bool) map[string]any {
	tb.Helper()
	data, err := os.ReadFile(dir + "/vocab.json")
	if err != nil {
		tb.Fatal(err)
	}
	var vocab map[string]int32
	if err := json.Unmarshal(data, &vocab); err != nil {
		tb.Fatal(err)
	}
	data, err = os.ReadFile(dir + "/merges.txt")
	if err != nil {
		tb.Fatal(err)
	}
	lines, err := parseMergesTxt(data)
	if err != nil {
		tb.Fatal(err)
	}
	var merges any = lines
	if !pairs {
		strs := make([]string, len(lines))
		for i, m := range lines {
			strs[i] = m[0] + " " + m[1]
		}
		merges = strs
	}
	byteLevel := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
	return map[string]any{
		"version":    "1.0",
		"truncation": nil,
		"padding":    nil,
		"added_tokens": []any{map[string]any{
			"id": vocab[endOfText], "content": endOfText, "single_word": false, "lstrip": false,
			"rstrip": false, "normalized": true, "special": true,
		}},
		"normalizer":     nil,
		"pre_tokenizer":  byteLevel,
		"post_processor": byteLevel,
		"decoder":        byteLevel,
		"model": map[string]any{
			"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": "",
			"end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": merges,
		},
	}
}

func mapFS(tb testing.TB, files map[string]any) fstest.MapFS {
	tb.Helper()
	fsys := fstest.MapFS{}
	for name, v := range files {
		data, ok := v.(string)
		if !ok {
			b, err := json.Marshal(v)
			if err != nil {
				tb.Fatal(err)
			}
			data = string(b)
		}
		fsys[name] = &fstest.MapFile{Data: []byte(data)}
	}
	return fsys
}

// TestLoadTokenizerJSON checks that tokenizer.json, with either form of
// merges, gives the same tokenizer as vocab.json and merges.txt, and that
// it wins over them.
func TestLoadTokenizerJSON(t *testing.T) {
	cases := goldenCases(t)
	for _, pairs := range []bool{false, true} {
		t.Run(fmt.Sprintf("pair_merges=%t", pairs), func(t *testing.T) {
			fsys := mapFS(t, map[string]any{
				"tokenizer.json": gpt2TokenizerJSON(t, "testdata/gpt2", pairs),
				"vocab.json":     "not read",
				"merges.txt":     "not read",
			})
			tok, err := Load(fsys)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := [3]int{tok.VocabSize(), int(tok.BOS()), int(tok.EOS())}, [3]int{50257, 50256, 50256}; got != want {
				t.Errorf("VocabSize, BOS, EOS = %v, want %v", got, want)
			}
			for _, c := range cases {
				if diff := cmp.Diff(c.IDs, tok.Encode(c.Text), cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("case %s: Encode mismatch (-want +got):\n%s", c.Name, diff)
				}
				if c.IDsHFSpecial != nil {
					if diff := cmp.Diff(c.IDsHFSpecial, tok.EncodeWith(c.Text, EncodeOptions{AllowSpecial: true})); diff != "" {
						t.Errorf("case %s: EncodeWith(AllowSpecial) mismatch (-want +got):\n%s", c.Name, diff)
					}
				}
			}
		})
	}
}

// TestAddedTokens checks tokenizer.json's added tokens: a non-special one is
// always matched, a special one only with AllowSpecial, the longest of two
// at one place, and their text round-trips though it is not byte-level.
func TestAddedTokens(t *testing.T) {
	tj := gpt2TokenizerJSON(t, "testdata/gpt2-tiny", false)
	tj["added_tokens"] = []any{
		map[string]any{"id": 499, "content": endOfText, "special": true},
		map[string]any{"id": 500, "content": "<|user|>", "special": false},
		map[string]any{"id": 501, "content": "<|user|>\n", "special": false},
		map[string]any{"id": 502, "content": "Ġ∅", "special": true},
	}
	tok, err := Load(mapFS(t, map[string]any{"tokenizer.json": tj}))
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 503 {
		t.Errorf("VocabSize() = %d, want 503", tok.VocabSize())
	}
	for _, c := range []struct {
		name, text     string
		allowSpecial   bool
		want           []int32
		wantRoundTrips bool
	}{
		{"non_special", "a<|user|>b", false, []int32{64, 500, 65}, true},
		{"longest", "<|user|>\nb", false, []int32{501, 65}, true},
		{"special_plain", "Ġ∅", false, []int32{128, 254, 158, 230, 227}, true},
		{"special_allowed", "xĠ∅<|endoftext|>", true, []int32{87, 502, 499}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ids := tok.EncodeWith(c.text, EncodeOptions{AllowSpecial: c.allowSpecial})
			if diff := cmp.Diff(c.want, ids); diff != "" {
				t.Errorf("EncodeWith(%q) mismatch (-want +got):\n%s", c.text, diff)
			}
			if got, err := tok.Decode(ids); err != nil || got != c.text {
				t.Errorf("Decode(%v) = %q, %v, want %q", ids, got, err, c.text)
			}
		})
	}
}

// TestLoadErrors checks that Load refuses what it cannot encode exactly,
// naming it, and tells a folder without a tokenizer apart.
func TestLoadErrors(t *testing.T) {
	tinyVocab, err := os.ReadFile("testdata/gpt2-tiny/vocab.json")
	if err != nil {
		t.Fatal(err)
	}
	tinyMerges, err := os.ReadFile("testdata/gpt2-tiny/merges.txt")
	if err != nil {
		t.Fatal(err)
	}
	withJSON := func(edit func(tj map[string]any)) map[string]any {
		tj := gpt2TokenizerJSON(t, "testdata/gpt2-tiny", false)
		edit(tj)
		return map[string]any{"tokenizer.json": tj}
	}
	model := func(tj map[string]any) map[string]any { return tj["model"].(map[string]any) }
	for _, c := range []struct {
		name    string
		files   map[string]any
		wantErr string // a substring of the error
		wantIs  error
	}{
		{"empty_folder", map[string]any{"config.json": "{}"}, "no tokenizer.json, vocab.json or merges.txt", ErrNoTokenizer},
		{"vocab_without_merges", map[string]any{"vocab.json": string(tinyVocab)}, "merges.txt", fs.ErrNotExist},
		{"merges_without_vocab", map[string]any{"merges.txt": string(tinyMerges)}, "vocab.json", fs.ErrNotExist},
		{"wordpiece", withJSON(func(tj map[string]any) { model(tj)["type"] = "WordPiece" }), `model type "WordPiece" is not supported`, nil},
		{"unigram", withJSON(func(tj map[string]any) { model(tj)["type"] = "Unigram" }), `model type "Unigram" is not supported`, nil},
		{"metaspace", withJSON(func(tj map[string]any) { tj["pre_tokenizer"] = map[string]any{"type": "Metaspace"} }), `pre_tokenizer type "Metaspace" is not supported`, nil},
		{"sequence", withJSON(func(tj map[string]any) { tj["pre_tokenizer"] = map[string]any{"type": "Sequence"} }), `pre_tokenizer type "Sequence" is not supported`, nil},
		{"no_pre_tokenizer", withJSON(func(tj map[string]any) { tj["pre_tokenizer"] = nil }), "no pre_tokenizer", nil},
		{"add_prefix_space", withJSON(func(tj map[string]any) {
			tj["pre_tokenizer"] = map[string]any{"type": "ByteLevel", "add_prefix_space": true}
		}), "add_prefix_space", nil},
		{"normalizer", withJSON(func(tj map[string]any) { tj["normalizer"] = map[string]any{"type": "NFC"} }), `normalizer type "NFC" is not supported`, nil},
		{"decoder", withJSON(func(tj map[string]any) { tj["decoder"] = map[string]any{"type": "WordPiece"} }), `decoder type "WordPiece" is not supported`, nil},
		{"dropout", withJSON(func(tj map[string]any) { model(tj)["dropout"] = 0.1 }), "dropout", nil},
		{"byte_fallback", withJSON(func(tj map[string]any) { model(tj)["byte_fallback"] = true }), "byte_fallback", nil},
		{"merges_not_a_list", withJSON(func(tj map[string]any) { model(tj)["merges"] = 7 }), "model merges", nil},
		{"merge_not_in_vocab", map[string]any{"vocab.json": string(tinyVocab), "merges.txt": "#version: 0.2\nĠ xyz\n"}, `merge 0 ("Ġ" "xyz"): token not in the vocabulary`, nil},
		{"merge_one_token", map[string]any{"vocab.json": string(tinyVocab), "merges.txt": "#version: 0.2\nĠt\n"}, "line 2", nil},
		{"missing_byte", map[string]any{"vocab.json": `{"a": 0}`, "merges.txt": ""}, "no token for byte 0x00", nil},
		{"empty_token", map[string]any{"vocab.json": `{"": 5}`, "merges.txt": ""}, "id 5 is the empty string", nil},
		{"duplicate_id", map[string]any{"vocab.json": `{"a": 0, "b": 0}`, "merges.txt": ""}, "id 0 is both", nil},
		{"vocab_not_json", map[string]any{"vocab.json": "[", "merges.txt": ""}, "vocab.json", nil},
		{"huge_id", map[string]any{"vocab.json": `{"a": 2000000000}`, "merges.txt": ""}, "over the limit", nil},
		{"eos_not_in_vocab", map[string]any{"vocab.json": string(tinyVocab), "merges.txt": string(tinyMerges), "config.json": `{"eos_token_id": 500}`}, "config.json: eos_token_id: id 500", ErrUnknownID},
		{"bad_config", map[string]any{"vocab.json": string(tinyVocab), "merges.txt": string(tinyMerges), "generation_config.json": `{"bos_token_id": "x"}`}, "generation_config.json: bos_token_id", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			tok, err := Load(mapFS(t, c.files))
			if err == nil {
				t.Fatalf("Load = %v, want an error containing %q", tok, c.wantErr)
			}
			if !strings.Contains(err.Error(), c.wantErr) || !strings.HasPrefix(err.Error(), "tokenizer: load: ") {
				t.Errorf("Load error %q, want it to start with \"tokenizer: load: \" and contain %q", err, c.wantErr)
			}
			if c.wantIs != nil && !errors.Is(err, c.wantIs) {
				t.Errorf("Load error %q, want errors.Is %v", err, c.wantIs)
			}
			if c.wantIs != ErrNoTokenizer && errors.Is(err, ErrNoTokenizer) {
				t.Errorf("Load error %q is ErrNoTokenizer", err)
			}
		})
	}
}

// TestBOSEOS checks where bos and eos come from: generation_config.json over
// config.json over <|endoftext|>.
func TestBOSEOS(t *testing.T) {
	tinyVocab, err := os.ReadFile("testdata/gpt2-tiny/vocab.json")
	if err != nil {
		t.Fatal(err)
	}
	tinyMerges, err := os.ReadFile("testdata/gpt2-tiny/merges.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name              string
		config, genConfig string // "" for no file
		wantBOS, wantEOS  int32
	}{
		{"no_config", "", "", 499, 499},
		{"config", `{"bos_token_id": 1, "eos_token_id": 2}`, "", 1, 2},
		{"generation_config", `{"bos_token_id": 1, "eos_token_id": 2}`, `{"eos_token_id": 3}`, 1, 3},
		{"eos_list", "", `{"eos_token_id": [5, 6]}`, 499, 5},
		{"null", `{"bos_token_id": null, "eos_token_id": []}`, "", 499, 499},
	} {
		t.Run(c.name, func(t *testing.T) {
			files := map[string]any{"vocab.json": string(tinyVocab), "merges.txt": string(tinyMerges)}
			if c.config != "" {
				files["config.json"] = c.config
			}
			if c.genConfig != "" {
				files["generation_config.json"] = c.genConfig
			}
			tok, err := Load(mapFS(t, files))
			if err != nil {
				t.Fatal(err)
			}
			if tok.BOS() != c.wantBOS || tok.EOS() != c.wantEOS {
				t.Errorf("BOS, EOS = %d, %d, want %d, %d", tok.BOS(), tok.EOS(), c.wantBOS, c.wantEOS)
			}
		})
	}
	t.Run("no_endoftext", func(t *testing.T) {
		vocab, err := json.Marshal(byteVocab())
		if err != nil {
			t.Fatal(err)
		}
		tok, err := Load(mapFS(t, map[string]any{"vocab.json": string(vocab), "merges.txt": ""}))
		if err != nil {
			t.Fatal(err)
		}
		if tok.BOS() != -1 || tok.EOS() != -1 {
			t.Errorf("BOS, EOS = %d, %d, want -1, -1", tok.BOS(), tok.EOS())
		}
	})
}

// TestUnknownID checks that every way to decode an id outside the
// vocabulary fails with ErrUnknownID.
func TestUnknownID(t *testing.T) {
	tok := loadGPT2(t)
	for _, id := range []int32{-1, 50257, 1 << 30} {
		t.Run(fmt.Sprintf("id=%d", id), func(t *testing.T) {
			ids := []int32{15496, id}
			if _, err := tok.Decode(ids); !errors.Is(err, ErrUnknownID) || !strings.Contains(err.Error(), fmt.Sprintf("ids[1]: id %d", id)) {
				t.Errorf("Decode(%v) error = %v, want ErrUnknownID at ids[1]", ids, err)
			}
			if _, err := tok.DecodeBytes(ids); !errors.Is(err, ErrUnknownID) {
				t.Errorf("DecodeBytes(%v) error = %v, want ErrUnknownID", ids, err)
			}
			if _, err := tok.TokenBytes(id); !errors.Is(err, ErrUnknownID) {
				t.Errorf("TokenBytes(%d) error = %v, want ErrUnknownID", id, err)
			}
			if _, err := tok.NewStreamDecoder().Add(id); !errors.Is(err, ErrUnknownID) {
				t.Errorf("StreamDecoder.Add(%d) error = %v, want ErrUnknownID", id, err)
			}
		})
	}
	t.Run("gap", func(t *testing.T) {
		vocab := byteVocab()
		vocab[endOfText] = 300
		tok, err := newTokenizer(vocab, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tok.TokenBytes(299); !errors.Is(err, ErrUnknownID) {
			t.Errorf("TokenBytes(299) error = %v, want ErrUnknownID", err)
		}
	})
}

// TestTokenBytes checks token bytes, including tokens that hold part of a
// character, and that the result is a copy.
func TestTokenBytes(t *testing.T) {
	tok := loadGPT2(t)
	for _, c := range []struct {
		id   int32
		want string
	}{
		{15496, "Hello"},
		{995, " world"},
		{220, " "},
		{50256, endOfText},
		{12520, " \xf0\x9f"}, // a space and the first half of an emoji
	} {
		t.Run(fmt.Sprintf("id=%d", c.id), func(t *testing.T) {
			b, err := tok.TokenBytes(c.id)
			if err != nil || string(b) != c.want {
				t.Fatalf("TokenBytes(%d) = %q, %v, want %q", c.id, b, err, c.want)
			}
			b[0] = 'X'
			if again, _ := tok.TokenBytes(c.id); string(again) != c.want {
				t.Errorf("changing the result of TokenBytes changed the token to %q", again)
			}
		})
	}
}

// TestConcurrentEncode encodes from many goroutines at once, sharing the
// pre-token cache, and compares with the reference encoder; run it with
// -race.
func TestConcurrentEncode(t *testing.T) {
	tok := loadGPT2(t)
	r := rand.New(rand.NewPCG(7, 8))
	texts := make([]string, 64)
	want := make([][]int32, len(texts))
	for i := range texts {
		texts[i] = randomText(r, 200)
		want[i] = encoderPyEncode(tok, texts[i])
	}
	got := make([][][]int32, 8)
	var wg sync.WaitGroup
	for g := range got {
		wg.Go(func() {
			for i := range texts {
				j := (i + g*8) % len(texts)
				got[g] = append(got[g], tok.Encode(texts[j]))
			}
		})
	}
	wg.Wait()
	for g := range got {
		for i, ids := range got[g] {
			j := (i + g*8) % len(texts)
			if diff := cmp.Diff(want[j], ids); diff != "" {
				t.Fatalf("goroutine %d, text %d mismatch (-want +got):\n%s", g, j, diff)
			}
		}
	}
}

// encoderPyEncode encodes s with the reference BPE and no cache.
func encoderPyEncode(tok *Tokenizer, s string) []int32 {
	var ids []int32
	for len(s) > 0 {
		n := preTokenLen(s)
		ids = append(ids, encoderPyBPE(tok, s[:n])...)
		s = s[n:]
	}
	return ids
}
