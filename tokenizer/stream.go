package tokenizer

import (
	"fmt"
	"unicode/utf8"
)

// StreamDecoder turns token ids into text one id at a time, for text that a
// model generates token by token. Its text is always valid UTF-8: a
// character whose bytes are split across tokens is held back until the token
// that completes it, and bytes that cannot become valid UTF-8 come out as
// U+FFFD, one per maximal invalid subsequence (the Unicode "substitution of
// maximal subparts" practice of Python's bytes.decode with errors="replace"
// and Rust's String::from_utf8_lossy). So the text of all Add calls and a
// final Flush is the bytes of the ids decoded that way, the text of Hugging
// Face's GPT2Tokenizer.decode, and equals [Tokenizer.Decode] of the ids when
// that is valid UTF-8.
//
// A StreamDecoder is for one sequence and one goroutine at a time.
type StreamDecoder struct {
	t       *Tokenizer
	pending []byte // start of a character that the next token may complete; at most 3 bytes
	out     []byte // scratch for Add's text
}

// NewStreamDecoder returns a StreamDecoder with nothing held back.
func (t *Tokenizer) NewStreamDecoder() *StreamDecoder {
	return &StreamDecoder{t: t}
}

// Add decodes the token id and returns the text it completes, which may be
// empty while a character is incomplete. An id outside the vocabulary
// returns an error wrapping [ErrUnknownID] and leaves d unchanged.
func (d *StreamDecoder) Add(id int32) (string, error) {
	tok, err := d.t.token(id)
	if err != nil {
		return "", fmt.Errorf("tokenizer: stream decode: %w", err)
	}
	if len(d.pending) == 0 && utf8.ValidString(tok) {
		return tok, nil
	}
	b := append(d.pending, tok...)
	d.out = d.out[:0]
	for len(b) > 0 {
		if r, n := utf8.DecodeRune(b); r != utf8.RuneError || n > 1 {
			d.out = append(d.out, b[:n]...)
			b = b[n:]
			continue
		}
		n, complete := invalidPrefix(b)
		if !complete {
			break // b may still become a character
		}
		d.out = utf8.AppendRune(d.out, utf8.RuneError)
		b = b[n:]
	}
	d.pending = append(d.pending[:0], b...) // b may overlap d.pending: append moves memory safely
	return string(d.out), nil
}

// Flush returns what d holds back, a character that no token completed, as
// U+FFFD (or "" if nothing), and resets d for a new sequence.
func (d *StreamDecoder) Flush() string {
	if len(d.pending) == 0 {
		return ""
	}
	d.pending = d.pending[:0]
	return string(utf8.RuneError)
}

// invalidPrefix measures the maximal subpart at the start of b, which does
// not start with a valid UTF-8 character: the longest prefix of b that
// starts a valid character, or 1 byte if none does. complete reports
// whether it is final (a byte after it or its first byte rules out a
// character); if not, it ends b and more bytes may complete it.
func invalidPrefix(b []byte) (n int, complete bool) {
	// The ranges of the second byte after each first byte, from the table
	// of well-formed UTF-8 in the Unicode Standard, §3.9; later bytes are
	// always 0x80..0xBF.
	var size int
	lo, hi := byte(0x80), byte(0xBF)
	switch c := b[0]; {
	case 0xC2 <= c && c <= 0xDF:
		size = 2
	case c == 0xE0:
		size, lo = 3, 0xA0
	case c == 0xED:
		size, hi = 3, 0x9F
	case 0xE1 <= c && c <= 0xEF:
		size = 3
	case c == 0xF0:
		size, lo = 4, 0x90
	case c == 0xF4:
		size, hi = 4, 0x8F
	case 0xF1 <= c && c <= 0xF3:
		size = 4
	default:
		return 1, true
	}
	for n = 1; n < size; n++ {
		if n == len(b) {
			return n, false
		}
		if b[n] < lo || b[n] > hi {
			return n, true
		}
		lo, hi = 0x80, 0xBF
	}
	return n, true // not reached: b would start with a valid character
}
