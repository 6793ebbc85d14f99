package tokenizer

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzRoundTrip checks, for any string s: that Decode(Encode(s)) == s byte
// for byte, with and without special tokens; that Encode gives the ids of
// the port of encoder.py (up to 1000 bytes, for its O(n²) time), so that the
// pre-token cache and the merge heap are exact; that the StreamDecoder emits
// only valid UTF-8, equal to s when s is valid UTF-8; and that it emits the
// same text whether the bytes come in GPT-2's tokens or one byte a token.
func FuzzRoundTrip(f *testing.F) {
	for _, c := range goldenCases(f) {
		f.Add(c.Text)
	}
	for _, s := range []string{"\xff", "a\xc3", "\xe2\x82A", "\xed\xa0\x80 x", " \xf0\x9f\x98", "'s'\xff't", "\u3000 \xa0\n "} {
		f.Add(s)
	}
	tok := loadGPT2(f)
	f.Fuzz(func(t *testing.T, s string) {
		for _, opts := range []EncodeOptions{{}, {AllowSpecial: true}} {
			ids := tok.EncodeWith(s, opts)
			got, err := tok.Decode(ids)
			if err != nil {
				t.Fatalf("Decode(EncodeWith(%q, %+v)): %v", s, opts, err)
			}
			if got != s {
				t.Fatalf("Decode(EncodeWith(%q, %+v)) = %q", s, opts, got)
			}
			b, err := tok.DecodeBytes(ids)
			if err != nil || !bytes.Equal(b, []byte(s)) {
				t.Fatalf("DecodeBytes(EncodeWith(%q, %+v)) = %q, %v", s, opts, b, err)
			}
		}
		ids := tok.Encode(s)
		if len(s) <= 1000 {
			if diff := cmp.Diff(encoderPyEncode(tok, s), ids, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("Encode(%q) mismatch (-encoder.py +got):\n%s", s, diff)
			}
		}
		texts, flushed := streamAll(t, tok, ids)
		streamed := strings.Join(texts, "") + flushed
		if !utf8.ValidString(streamed) {
			t.Fatalf("streamed text of %q is not valid UTF-8: %q", s, streamed)
		}
		if utf8.ValidString(s) && streamed != s {
			t.Fatalf("streamed text of %q is %q", s, streamed)
		}
		byteIDs := make([]int32, len(s))
		for i := range len(s) {
			byteIDs[i] = tok.byteIDs[s[i]]
		}
		texts, flushed = streamAll(t, tok, byteIDs)
		if byByte := strings.Join(texts, "") + flushed; byByte != streamed {
			t.Fatalf("streamed text of %q is %q by GPT-2's tokens, %q byte by byte", s, streamed, byByte)
		}
	})
}
