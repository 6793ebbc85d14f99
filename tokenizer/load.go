package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// ErrNoTokenizer is returned, wrapped, by [Load] when the folder holds none
// of tokenizer.json, vocab.json and merges.txt. A model without a tokenizer
// can still be served on token ids.
var ErrNoTokenizer = errors.New("no tokenizer files")

// endOfText is GPT-2's special token, its bos and eos.
const endOfText = "<|endoftext|>"

// maxVocabSize bounds the token ids a file may use, so that a corrupt or
// hostile file cannot make Load allocate without limit. The largest
// vocabularies in use have about 256k tokens.
const maxVocabSize = 1 << 21

// Load reads a GPT-2 byte-level BPE tokenizer from a Hugging Face model
// folder, such as os.DirFS(dir):
//
//   - tokenizer.json, when present, with a "BPE" model, no normalizer, and
//     the "ByteLevel" pre-tokenizer (add_prefix_space false, use_regex true)
//     and decoder. Its added_tokens become added tokens (matched whole in the
//     text, special ones only with [EncodeOptions.AllowSpecial]); their
//     lstrip, rstrip, single_word and normalized flags are not applied, nor
//     is its post_processor: Encode adds no bos or eos of its own.
//   - otherwise vocab.json and merges.txt (GPT-2's files: merges.txt may
//     start with a "#version" line), where <|endoftext|>, if in vocab.json,
//     is the one special token.
//
// The bos and eos ids come from generation_config.json, else config.json
// (bos_token_id, eos_token_id), else the special token <|endoftext|>.
//
// Load returns an error wrapping [ErrNoTokenizer] when the folder holds none
// of these tokenizer files, and an error naming the type for any other
// model, normalizer, pre-tokenizer or decoder. It also fails on malformed
// files, on a vocabulary without a token for each of the 256 bytes, on a
// merge whose tokens or result are not in the vocabulary, and on a bos or eos
// id outside the vocabulary (wrapping [ErrUnknownID]).
func Load(fsys fs.FS) (*Tokenizer, error) {
	t, err := loadModel(fsys)
	if err == nil {
		err = setBOSEOS(t, fsys)
	}
	if err != nil {
		return nil, fmt.Errorf("tokenizer: load: %w", err)
	}
	return t, nil
}

// loadModel reads tokenizer.json, or else vocab.json and merges.txt.
func loadModel(fsys fs.FS) (*Tokenizer, error) {
	data, err := fs.ReadFile(fsys, "tokenizer.json")
	switch {
	case err == nil:
		t, err := parseTokenizerJSON(data)
		if err != nil {
			return nil, fmt.Errorf("tokenizer.json: %w", err)
		}
		return t, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	vocabData, vocabErr := fs.ReadFile(fsys, "vocab.json")
	mergesData, mergesErr := fs.ReadFile(fsys, "merges.txt")
	switch {
	case errors.Is(vocabErr, fs.ErrNotExist) && errors.Is(mergesErr, fs.ErrNotExist):
		return nil, fmt.Errorf("no tokenizer.json, vocab.json or merges.txt: %w", ErrNoTokenizer)
	case vocabErr != nil:
		return nil, vocabErr
	case mergesErr != nil:
		return nil, mergesErr
	}
	var vocab map[string]int32
	if err := json.Unmarshal(vocabData, &vocab); err != nil {
		return nil, fmt.Errorf("vocab.json: %w", err)
	}
	merges, err := parseMergesTxt(mergesData)
	if err != nil {
		return nil, fmt.Errorf("merges.txt: %w", err)
	}
	var added []addedToken
	if id, ok := vocab[endOfText]; ok {
		added = append(added, addedToken{text: endOfText, id: id, special: true})
	}
	return newTokenizer(vocab, merges, added)
}

// parseMergesTxt returns the pairs of merges.txt in rank order, in GPT-2's
// byte-to-unicode form.
func parseMergesTxt(data []byte) ([][2]string, error) {
	var merges [][2]string
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" || i == 0 && strings.HasPrefix(line, "#version") {
			continue
		}
		left, right, ok := strings.Cut(line, " ")
		if !ok || left == "" || right == "" || strings.Contains(right, " ") {
			return nil, fmt.Errorf("line %d: %q is not two tokens separated by a space", i+1, line)
		}
		merges = append(merges, [2]string{left, right})
	}
	return merges, nil
}

// tokenizerJSON is the part of Hugging Face's tokenizer.json that Load reads.
type tokenizerJSON struct {
	AddedTokens []struct {
		ID      int32  `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
	Normalizer   *typed `json:"normalizer"`
	PreTokenizer *struct {
		typed
		AddPrefixSpace bool  `json:"add_prefix_space"`
		UseRegex       *bool `json:"use_regex"`
	} `json:"pre_tokenizer"`
	Decoder *typed `json:"decoder"`
	Model   struct {
		typed
		Dropout                 *float64         `json:"dropout"`
		ContinuingSubwordPrefix string           `json:"continuing_subword_prefix"`
		EndOfWordSuffix         string           `json:"end_of_word_suffix"`
		ByteFallback            bool             `json:"byte_fallback"`
		IgnoreMerges            bool             `json:"ignore_merges"`
		Vocab                   map[string]int32 `json:"vocab"`
		Merges                  json.RawMessage  `json:"merges"`
	} `json:"model"`
}

// typed is a tokenizer.json component, named by its type.
type typed struct {
	Type string `json:"type"`
}

func parseTokenizerJSON(data []byte) (*Tokenizer, error) {
	var tj tokenizerJSON
	if err := json.Unmarshal(data, &tj); err != nil {
		return nil, err
	}
	m := &tj.Model
	switch {
	case m.Type != "BPE":
		return nil, fmt.Errorf("model type %q is not supported: want BPE", m.Type)
	case m.Dropout != nil && *m.Dropout != 0:
		return nil, fmt.Errorf("BPE dropout %g is not supported", *m.Dropout)
	case m.ContinuingSubwordPrefix != "" || m.EndOfWordSuffix != "":
		return nil, errors.New("BPE continuing_subword_prefix and end_of_word_suffix are not supported")
	case m.ByteFallback:
		return nil, errors.New("BPE byte_fallback is not supported")
	case m.IgnoreMerges:
		return nil, errors.New("BPE ignore_merges is not supported")
	case tj.Normalizer != nil:
		return nil, fmt.Errorf("normalizer type %q is not supported: want none", tj.Normalizer.Type)
	case tj.PreTokenizer == nil:
		return nil, errors.New("no pre_tokenizer: want ByteLevel")
	case tj.PreTokenizer.Type != "ByteLevel":
		return nil, fmt.Errorf("pre_tokenizer type %q is not supported: want ByteLevel", tj.PreTokenizer.Type)
	case tj.PreTokenizer.AddPrefixSpace:
		return nil, errors.New("ByteLevel pre_tokenizer with add_prefix_space is not supported")
	case tj.PreTokenizer.UseRegex != nil && !*tj.PreTokenizer.UseRegex:
		return nil, errors.New("ByteLevel pre_tokenizer without use_regex is not supported")
	case tj.Decoder == nil:
		return nil, errors.New("no decoder: want ByteLevel")
	case tj.Decoder.Type != "ByteLevel":
		return nil, fmt.Errorf("decoder type %q is not supported: want ByteLevel", tj.Decoder.Type)
	}
	merges, err := parseMergesJSON(m.Merges)
	if err != nil {
		return nil, fmt.Errorf("model merges: %w", err)
	}
	added := make([]addedToken, len(tj.AddedTokens))
	for i, a := range tj.AddedTokens {
		if a.Content == "" {
			return nil, fmt.Errorf("added token %d has no content", a.ID)
		}
		added[i] = addedToken{text: a.Content, id: a.ID, special: a.Special}
	}
	return newTokenizer(m.Vocab, merges, added)
}

// parseMergesJSON reads the merges of a tokenizer.json BPE model, written
// either as "left right" strings or, by tokenizers 0.20 and later, as
// ["left", "right"] pairs.
func parseMergesJSON(raw json.RawMessage) ([][2]string, error) {
	var pairs [][2]string
	if err := json.Unmarshal(raw, &pairs); err == nil {
		return pairs, nil
	}
	var lines []string
	if err := json.Unmarshal(raw, &lines); err != nil {
		return nil, errors.New(`want a list of "left right" strings or of [left, right] pairs`)
	}
	pairs = make([][2]string, len(lines))
	for i, line := range lines {
		left, right, ok := strings.Cut(line, " ")
		if !ok || left == "" || right == "" || strings.Contains(right, " ") {
			return nil, fmt.Errorf("merge %d: %q is not two tokens separated by a space", i, line)
		}
		pairs[i] = [2]string{left, right}
	}
	return pairs, nil
}

// newTokenizer builds a Tokenizer from a vocabulary in GPT-2's
// byte-to-unicode form, merges in rank order and added tokens in raw text.
func newTokenizer(vocab map[string]int32, merges [][2]string, added []addedToken) (*Tokenizer, error) {
	size := 0
	for _, id := range vocab {
		size = max(size, int(id)+1)
	}
	for _, a := range added {
		size = max(size, int(a.id)+1)
	}
	if size > maxVocabSize {
		return nil, fmt.Errorf("token id %d is over the limit of %d", size-1, maxVocabSize-1)
	}
	t := &Tokenizer{
		tokens: make([]string, size),
		merges: make(map[uint64]merge, len(merges)),
		added:  added,
		bos:    -1,
		eos:    -1,
		cache:  newCache(),
	}
	for s, id := range vocab {
		if id < 0 {
			return nil, fmt.Errorf("vocabulary: token %q has a negative id %d", s, id)
		}
		if s == "" {
			return nil, fmt.Errorf("vocabulary: id %d is the empty string", id)
		}
		if t.tokens[id] != "" {
			return nil, fmt.Errorf("vocabulary: id %d is both %q and another token", id, s)
		}
		t.tokens[id] = byteLevelDecode(s)
	}
	for _, a := range added {
		if a.id < 0 {
			return nil, fmt.Errorf("added token %q has a negative id %d", a.text, a.id)
		}
		t.tokens[a.id] = a.text
	}
	for b, r := range byteRunes {
		id, ok := vocab[string(r)]
		if !ok {
			return nil, fmt.Errorf("vocabulary has no token for byte 0x%02x (%q)", b, r)
		}
		t.byteIDs[b] = id
	}
	for rank, pair := range merges {
		left, lok := vocab[pair[0]]
		right, rok := vocab[pair[1]]
		id, ok := vocab[pair[0]+pair[1]]
		if !lok || !rok || !ok {
			return nil, fmt.Errorf("merge %d (%q %q): token not in the vocabulary", rank, pair[0], pair[1])
		}
		// As in encoder.py, a pair listed twice keeps its last rank.
		t.merges[pairKey(left, right)] = merge{rank: int32(rank), id: id}
	}
	return t, nil
}

// byteLevelDecode returns the bytes that a token in GPT-2's byte-to-unicode
// form stands for. A token with a character outside that form stands for
// its own UTF-8 bytes, as in the ByteLevel decoder of Hugging Face's
// tokenizers.
func byteLevelDecode(token string) string {
	b := make([]byte, 0, len(token))
	for _, r := range token {
		c, ok := runeBytes[r]
		if !ok {
			return token
		}
		b = append(b, c)
	}
	return string(b)
}

// setBOSEOS sets t's bos and eos from the folder's generation_config.json or
// config.json, or else to <|endoftext|>.
func setBOSEOS(t *Tokenizer, fsys fs.FS) error {
	for _, a := range t.added {
		if a.text == endOfText {
			t.bos, t.eos = a.id, a.id
		}
	}
	for _, name := range []string{"config.json", "generation_config.json"} {
		data, err := fs.ReadFile(fsys, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		var cfg struct {
			BOS json.RawMessage `json:"bos_token_id"`
			EOS json.RawMessage `json:"eos_token_id"`
		}
		if err := json.Unmarshal(data, &cfg); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		for _, f := range []struct {
			key string
			raw json.RawMessage
			dst *int32
		}{{"bos_token_id", cfg.BOS, &t.bos}, {"eos_token_id", cfg.EOS, &t.eos}} {
			id, ok, err := parseTokenID(f.raw)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", name, f.key, err)
			}
			if !ok {
				continue
			}
			if _, err := t.token(id); err != nil {
				return fmt.Errorf("%s: %s: %w", name, f.key, err)
			}
			*f.dst = id
		}
	}
	return nil
}

// parseTokenID reads a config's bos_token_id or eos_token_id: an id, a list
// of ids (the first counts), or null or absent (ok is false).
func parseTokenID(raw json.RawMessage) (id int32, ok bool, err error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return 0, false, nil
	}
	if err := json.Unmarshal(raw, &id); err == nil {
		return id, true, nil
	}
	var ids []int32
	if err := json.Unmarshal(raw, &ids); err != nil {
		return 0, false, fmt.Errorf("%s is not a token id or a list of them", raw)
	}
	if len(ids) == 0 {
		return 0, false, nil
	}
	return ids[0], true, nil
}
