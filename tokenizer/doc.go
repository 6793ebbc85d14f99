// Package tokenizer implements GPT-2's byte-level byte-pair encoding (BPE):
// it turns text into the token ids a GPT-2-family model reads and the ids it
// writes back into text.
//
// [Load] reads a tokenizer from a Hugging Face model folder: vocab.json and
// merges.txt (the files of OpenAI's GPT-2 release), or tokenizer.json with a
// BPE model and the ByteLevel pre-tokenizer and decoder. [Tokenizer.Encode]
// gives the ids of OpenAI's GPT-2 encoder.py, tiktoken's r50k_base
// encode_ordinary and Hugging Face's GPT2Tokenizer for every string: the
// GPT-2 pre-tokenizer pattern
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// is matched by hand, with \s the Unicode White_Space property as in
// Python's regex module, and each pre-token is merged by the ranks of
// merges.txt. Text is a Go string, so it may hold invalid UTF-8: each invalid
// byte counts as a character of the [^\s\p{L}\p{N}] class, and
// Decode(Encode(s)) == s byte for byte for every s. Letters (\p{L}) and
// numbers (\p{N}) are those of Go's unicode package (Unicode 15.0): a
// character assigned in a later version of Unicode may fall in another class
// than in Python's regex module, which follows a newer one.
//
// Special tokens such as <|endoftext|> are plain text to [Tokenizer.Encode];
// only [Tokenizer.EncodeWith] with [EncodeOptions.AllowSpecial] turns their
// text into their ids, so user input cannot forge them.
//
// A [StreamDecoder] turns ids into text one id at a time, as a model
// generates them: a character whose UTF-8 bytes are split across tokens
// (emoji, CJK) comes out whole once its last byte arrives, and the text it
// emits is always valid UTF-8.
//
// A Tokenizer is safe for concurrent use by multiple goroutines. It keeps a
// bounded cache of the ids of recently seen pre-tokens, shared by all of them.
package tokenizer
