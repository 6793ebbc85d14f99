package tokenizer

import (
	"slices"
	"testing"
)

func TestByteLevel(t *testing.T) {
	tok := ByteLevel()
	if tok.VocabSize() != 257 || tok.EOS() != 256 || tok.BOS() != 256 {
		t.Fatalf("vocab %d, bos %d, eos %d; want 257, 256, 256", tok.VocabSize(), tok.BOS(), tok.EOS())
	}
	s := "func main() {\n\tfmt.Println(\"héllo\")\n}\xff"
	ids := tok.Encode(s)
	want := make([]int32, len(s))
	for i := range len(s) {
		want[i] = int32(s[i])
	}
	if !slices.Equal(ids, want) {
		t.Errorf("Encode = %v, want the bytes %v", ids, want)
	}
	if back, err := tok.Decode(ids); err != nil || back != s {
		t.Errorf("Decode = %q, %v", back, err)
	}
	if got := tok.EncodeWith("a<|endoftext|>", EncodeOptions{AllowSpecial: true}); !slices.Equal(got, []int32{'a', 256}) {
		t.Errorf("special token: %v", got)
	}
}
