package tokenizer

import (
	"encoding/json"
	"io/fs"
	"testing/fstest"
)

// ByteLevelName is the name under which a training job asks for the byte-level vocabulary
// (Spec.TokenizerModel "bytes") instead of a model's tokenizer.
const ByteLevelName = "bytes"

// ByteLevelFiles returns the files of the byte-level vocabulary in GPT-2's format: vocab.json
// maps the byte-to-unicode form of byte b to id b (0..255) and <|endoftext|> to 256, and
// merges.txt has no merges, so that every byte is one token. It is the vocabulary of small
// models trained from scratch, where BPE's 50257-row embedding would outweigh the network; the
// files load in Transformers' GPT2Tokenizer like any GPT-2 vocabulary.
func ByteLevelFiles() map[string][]byte {
	vocab := make(map[string]int, 257)
	for b, r := range byteRunes {
		vocab[string(r)] = b
	}
	vocab[endOfText] = 256
	data, err := json.Marshal(vocab)
	if err != nil {
		panic(err) // a map of strings to ints always marshals
	}
	return map[string][]byte{"vocab.json": data, "merges.txt": []byte("#version: 0.2\n")}
}

// ByteLevelFS returns ByteLevelFiles as a folder.
func ByteLevelFS() fs.FS {
	fsys := fstest.MapFS{}
	for name, data := range ByteLevelFiles() {
		fsys[name] = &fstest.MapFile{Data: data}
	}
	return fsys
}

// ByteLevel returns the byte-level tokenizer of ByteLevelFiles: 257 tokens, <|endoftext|> = 256
// as bos and eos.
func ByteLevel() *Tokenizer {
	t, err := Load(ByteLevelFS())
	if err != nil {
		panic("tokenizer: byte-level vocabulary: " + err.Error()) // the files above always load
	}
	return t
}
