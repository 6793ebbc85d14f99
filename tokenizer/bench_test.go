package tokenizer

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// benchText returns about 1 MiB of real English text: the text of
// testdata/text repeated.
func benchText(b *testing.B) string {
	b.Helper()
	text := realText(b)
	return strings.Repeat(text, (1<<20)/len(text)+1)[:1<<20]
}

// BenchmarkEncode measures Encode of 1 MiB of real English text, in
// tokens/s, with the pre-token cache warm (as on a server that has seen
// text before) and cold (emptied before each run).
func BenchmarkEncode(b *testing.B) {
	tok := loadGPT2(b)
	text := benchText(b)
	for _, cold := range []bool{false, true} {
		name := "cache=warm"
		if cold {
			name = "cache=cold"
		}
		b.Run(name, func(b *testing.B) {
			tokens := len(tok.Encode(text))
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				if cold {
					tok.cache = newCache()
				}
				tok.Encode(text)
			}
			b.ReportMetric(float64(tokens*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// BenchmarkEncodeLongWord measures Encode of one word of 40,000 random
// letters, which the pre-token cache does not hold.
func BenchmarkEncodeLongWord(b *testing.B) {
	tok := loadGPT2(b)
	r := rand.New(rand.NewPCG(1, 2))
	letters := make([]byte, 40000)
	for i := range letters {
		letters[i] = byte('a' + r.IntN(26))
	}
	word := string(letters)
	for b.Loop() {
		tok.Encode(word)
	}
}

// BenchmarkStreamDecoder measures StreamDecoder.Add over the tokens of
// real text, in tokens/s.
func BenchmarkStreamDecoder(b *testing.B) {
	tok := loadGPT2(b)
	ids := tok.Encode(realText(b))
	for b.Loop() {
		d := tok.NewStreamDecoder()
		for _, id := range ids {
			if _, err := d.Add(id); err != nil {
				b.Fatal(err)
			}
		}
		d.Flush()
	}
	b.ReportMetric(float64(len(ids)*b.N)/b.Elapsed().Seconds(), "tokens/s")
}
