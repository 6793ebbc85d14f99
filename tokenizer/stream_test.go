package tokenizer

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// streamAll adds ids to a new StreamDecoder and returns the text of each Add
// and of the final Flush.
func streamAll(tb testing.TB, tok *Tokenizer, ids []int32) (texts []string, flushed string) {
	tb.Helper()
	d := tok.NewStreamDecoder()
	for _, id := range ids {
		text, err := d.Add(id)
		if err != nil {
			tb.Fatalf("Add(%d): %v", id, err)
		}
		texts = append(texts, text)
	}
	return texts, d.Flush()
}

// TestStreamDecoderText checks that characters split across GPT-2 tokens
// (emoji, ZWJ sequences, flags, CJK) come out whole, with the token that
// completes them.
func TestStreamDecoderText(t *testing.T) {
	tok := loadGPT2(t)
	for _, c := range []struct {
		name, text string
		wantIDs    []int32
		want       []string // the text of each Add
	}{
		{"emoji", "Hello 👋 world 🌍!", []int32{15496, 50169, 233, 995, 12520, 234, 235, 0},
			[]string{"Hello", " ", "👋", " world", " ", "", "🌍", "!"}},
		{"zwj_family", "👨\u200d👩\u200d👧", []int32{41840, 101, 447, 235, 41840, 102, 447, 235, 41840, 100},
			[]string{"", "👨", "", "\u200d", "", "👩", "", "\u200d", "", "👧"}},
		{"flags", "🇺🇸🇯🇵", []int32{8582, 229, 118, 8582, 229, 116, 8582, 229, 107, 8582, 229, 113},
			[]string{"", "", "🇺", "", "", "🇸", "", "", "🇯", "", "", "🇵"}},
		{"skin_tone", "naïve 👍🏽 ok", []int32{2616, 38776, 50169, 235, 8582, 237, 121, 12876},
			[]string{"na", "ïve", " ", "👍", "", "", "🏽", " ok"}},
		{"cjk", "我爱自然语言处理。", []int32{22755, 239, 163, 230, 109, 164, 229, 103, 47078, 114, 46237, 255, 164, 101, 222, 13783, 226, 49426, 228, 16764},
			[]string{"", "我", "", "", "爱", "", "", "自", "", "然", "", "语", "", "", "言", "", "处", "", "理", "。"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ids := tok.Encode(c.text)
			if diff := cmp.Diff(c.wantIDs, ids); diff != "" {
				t.Fatalf("Encode(%q) mismatch (-want +got):\n%s", c.text, diff)
			}
			got, flushed := streamAll(t, tok, ids)
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("Add texts mismatch (-want +got):\n%s", diff)
			}
			if flushed != "" {
				t.Errorf("Flush() = %q, want \"\"", flushed)
			}
		})
	}
}

// TestStreamDecoderBytes feeds single-byte tokens and checks what is held
// back and where U+FFFD replaces invalid UTF-8: one per maximal subpart,
// as Python's bytes.decode("utf-8", "replace") gives.
func TestStreamDecoderBytes(t *testing.T) {
	tok := loadGPT2(t)
	for _, c := range []struct {
		name, bytes string
		want        []string // the text of each Add
		wantFlush   string
	}{
		{"two_bytes", "é", []string{"", "é"}, ""},
		{"four_bytes", "😀", []string{"", "", "", "😀"}, ""},
		{"truncated_then_ascii", "\xe2\x82A", []string{"", "", "\uFFFDA"}, ""},
		{"never_valid", "\xff\xfe", []string{"\uFFFD", "\uFFFD"}, ""},
		{"surrogate", "\xed\xa0\x80", []string{"", "\uFFFD\uFFFD", "\uFFFD"}, ""},
		{"overlong", "\xe0\x80\x80", []string{"", "\uFFFD\uFFFD", "\uFFFD"}, ""},
		{"above_max", "\xf4\x90\x80\x80", []string{"", "\uFFFD\uFFFD", "\uFFFD", "\uFFFD"}, ""},
		{"truncated_in_text", "a\xf0\x9fb", []string{"a", "", "", "\uFFFDb"}, ""},
		{"truncated_at_end", "ok\xf0\x9f\x98", []string{"o", "k", "", "", ""}, "\uFFFD"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ids := make([]int32, len(c.bytes))
			for i := range len(c.bytes) {
				ids[i] = tok.byteIDs[c.bytes[i]]
			}
			got, flushed := streamAll(t, tok, ids)
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("Add texts mismatch (-want +got):\n%s", diff)
			}
			if flushed != c.wantFlush {
				t.Errorf("Flush() = %q, want %q", flushed, c.wantFlush)
			}
		})
	}
}

// TestStreamDecoderReuse checks that an unknown id changes nothing and that
// Flush starts a new sequence.
func TestStreamDecoderReuse(t *testing.T) {
	tok := loadGPT2(t)
	d := tok.NewStreamDecoder()
	var got []string
	add := func(id int32) {
		text, err := d.Add(id)
		if err != nil {
			t.Fatalf("Add(%d): %v", id, err)
		}
		got = append(got, text)
	}
	add(tok.byteIDs[0xf0])
	if _, err := d.Add(-5); !errors.Is(err, ErrUnknownID) {
		t.Fatalf("Add(-5) error = %v, want ErrUnknownID", err)
	}
	add(tok.byteIDs[0x9f])
	got = append(got, d.Flush())
	for _, b := range []byte("😀") {
		add(tok.byteIDs[b])
	}
	got = append(got, d.Flush())
	if diff := cmp.Diff([]string{"", "", "\uFFFD", "", "", "", "😀", ""}, got); diff != "" {
		t.Errorf("texts mismatch (-want +got):\n%s", diff)
	}
}

// TestStreamDecoderRealText streams the tokens of real text and random
// text with every piece of it, and compares with the text.
func TestStreamDecoderRealText(t *testing.T) {
	tok := loadGPT2(t)
	for name, text := range map[string]string{"real": realText(t), "random": randomText(rand.New(rand.NewPCG(11, 12)), 5000)} {
		t.Run("text="+name, func(t *testing.T) {
			texts, flushed := streamAll(t, tok, tok.Encode(text))
			for i, s := range texts {
				if !utf8.ValidString(s) {
					t.Fatalf("Add %d returned invalid UTF-8 %q", i, s)
				}
			}
			if got := strings.Join(texts, "") + flushed; got != text {
				t.Errorf("streamed text differs from the text: %s", firstDiff(text, got))
			}
		})
	}
}

// firstDiff describes where got first differs from want.
func firstDiff(want, got string) string {
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	return fmt.Sprintf("at byte %d: want %q, got %q", i, want[i:min(i+20, len(want))], got[i:min(i+20, len(got))])
}
