package tokenizer

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnknownID is returned, wrapped, for a token id that is not in the
// vocabulary: negative, at least [Tokenizer.VocabSize], or a gap in it.
var ErrUnknownID = errors.New("unknown token id")

// Tokenizer is a GPT-2 byte-level BPE tokenizer. It is safe for concurrent
// use by multiple goroutines. The zero value is not usable: call [Load].
type Tokenizer struct {
	tokens  []string         // id -> the token's bytes; "" where no token has the id
	byteIDs [256]int32       // id of the token of each single byte
	merges  map[uint64]merge // pairKey(left, right) -> rank and merged id
	added   []addedToken     // tokens matched in the text before pre-tokenization
	bos     int32
	eos     int32
	cache   *cache
}

// addedToken is a token that is matched whole in the input text, outside
// BPE: Hugging Face's added_tokens, GPT-2's <|endoftext|>.
type addedToken struct {
	text    string
	id      int32
	special bool // matched only with EncodeOptions.AllowSpecial
}

// EncodeOptions changes how [Tokenizer.EncodeWith] reads its text.
type EncodeOptions struct {
	// AllowSpecial makes the text of a special token, such as
	// "<|endoftext|>", encode as that token's id, as Hugging Face's
	// GPT2Tokenizer does. When false, special-token text is encoded as plain
	// text, as tiktoken's encode_ordinary does, so that user input cannot
	// inject control tokens.
	AllowSpecial bool
}

// VocabSize returns the number of token ids: one more than the largest id of
// the vocabulary and its added tokens (50257 for GPT-2).
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// BOS returns the beginning-of-sequence token id: bos_token_id from the
// model folder's generation_config.json or else its config.json, or else the
// id of the special token <|endoftext|>; -1 when none of these exists.
func (t *Tokenizer) BOS() int32 { return t.bos }

// EOS returns the end-of-sequence token id, found as [Tokenizer.BOS] is from
// eos_token_id (the first one where it is a list); -1 when none exists.
func (t *Tokenizer) EOS() int32 { return t.eos }

// TokenBytes returns a copy of the bytes that token id stands for, which
// need not be valid UTF-8 on their own (one emoji takes several GPT-2
// tokens). An id outside the vocabulary returns an error wrapping
// [ErrUnknownID].
func (t *Tokenizer) TokenBytes(id int32) ([]byte, error) {
	s, err := t.token(id)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: token bytes: %w", err)
	}
	return []byte(s), nil
}

// token returns the bytes of id.
func (t *Tokenizer) token(id int32) (string, error) {
	if id < 0 || int(id) >= len(t.tokens) || t.tokens[id] == "" {
		return "", fmt.Errorf("id %d: %w", id, ErrUnknownID)
	}
	return t.tokens[id], nil
}

// Encode returns the token ids of s, treating the text of special tokens as
// plain text. It matches OpenAI's GPT-2 encoder.py and tiktoken's r50k_base
// encode_ordinary for GPT-2's vocabulary, and Hugging Face's GPT2Tokenizer
// with split_special_tokens=True. Encode never fails: each byte of invalid
// UTF-8 in s counts as a character of the [^\s\p{L}\p{N}] class, and
// [Tokenizer.Decode] gives s back byte for byte.
func (t *Tokenizer) Encode(s string) []int32 {
	return t.EncodeWith(s, EncodeOptions{})
}

// EncodeWith returns the token ids of s as [Tokenizer.Encode] does, with the
// options opts. Added tokens that are not special (from tokenizer.json) are
// always matched whole, as in Hugging Face's tokenizers; special tokens only
// with opts.AllowSpecial. Where several added tokens could match, the
// leftmost wins, then the longest.
func (t *Tokenizer) EncodeWith(s string, opts EncodeOptions) []int32 {
	ids := make([]int32, 0, len(s)/3+1) // GPT-2 averages 3 to 4 bytes a token
	// next[i] is the index in s of the next match of t.added[i] at or after
	// the current position, or -1 if there is none (or it is not matched).
	next := make([]int, len(t.added))
	for i, a := range t.added {
		next[i] = -1
		if !a.special || opts.AllowSpecial {
			next[i] = strings.Index(s, a.text)
		}
	}
	pos := 0
	for {
		best := -1
		for i, at := range next {
			if at < 0 {
				continue
			}
			if best < 0 || at < next[best] || at == next[best] && len(t.added[i].text) > len(t.added[best].text) {
				best = i
			}
		}
		if best < 0 {
			return t.appendOrdinary(ids, s[pos:])
		}
		ids = t.appendOrdinary(ids, s[pos:next[best]])
		ids = append(ids, t.added[best].id)
		pos = next[best] + len(t.added[best].text)
		for i, at := range next {
			if at >= 0 && at < pos {
				if j := strings.Index(s[pos:], t.added[i].text); j >= 0 {
					next[i] = pos + j
				} else {
					next[i] = -1
				}
			}
		}
	}
}

// appendOrdinary appends the ids of s, which holds no added tokens: each
// pre-token from the cache or else merged by BPE.
func (t *Tokenizer) appendOrdinary(dst []int32, s string) []int32 {
	for len(s) > 0 {
		n := preTokenLen(s)
		word := s[:n]
		s = s[n:]
		switch {
		case n == 1:
			dst = append(dst, t.byteIDs[word[0]])
		case n > maxCachedLength:
			dst = t.appendBPE(dst, word)
		default:
			if ids, ok := t.cache.get(word); ok {
				dst = append(dst, ids...)
				continue
			}
			start := len(dst)
			dst = t.appendBPE(dst, word)
			t.cache.put(word, dst[start:])
		}
	}
	return dst
}

// DecodeBytes returns the bytes that ids stand for, concatenated:
// DecodeBytes(Encode(s)) returns the bytes of s. They need not be valid
// UTF-8 (ids may end inside a character). An id outside the vocabulary
// returns an error wrapping [ErrUnknownID].
func (t *Tokenizer) DecodeBytes(ids []int32) ([]byte, error) {
	n, err := t.decodedLen(ids)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, n)
	for _, id := range ids {
		b = append(b, t.tokens[id]...)
	}
	return b, nil
}

// Decode returns the text that ids stand for, as [Tokenizer.DecodeBytes]
// does: Decode(Encode(s)) == s for every string s, and the result holds
// invalid UTF-8 wherever the bytes of ids do. Text that must be valid UTF-8
// (a protobuf string) should come from a [StreamDecoder]. An id outside the
// vocabulary returns an error wrapping [ErrUnknownID].
func (t *Tokenizer) Decode(ids []int32) (string, error) {
	n, err := t.decodedLen(ids)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	sb.Grow(n)
	for _, id := range ids {
		sb.WriteString(t.tokens[id])
	}
	return sb.String(), nil
}

// decodedLen returns the number of bytes that ids stand for, or an error
// for the first unknown id.
func (t *Tokenizer) decodedLen(ids []int32) (int, error) {
	n := 0
	for i, id := range ids {
		s, err := t.token(id)
		if err != nil {
			return 0, fmt.Errorf("tokenizer: decode: ids[%d]: %w", i, err)
		}
		n += len(s)
	}
	return n, nil
}
