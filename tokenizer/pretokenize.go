package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// Character classes of the GPT-2 pre-tokenizer pattern.
const (
	classOther  uint8 = iota // [^\s\p{L}\p{N}], and every byte that is not valid UTF-8
	classLetter              // \p{L}
	classNumber              // \p{N}
	classSpace               // \s: the Unicode White_Space property
)

// asciiClass is the class of each ASCII byte.
var asciiClass = func() (c [utf8.RuneSelf]uint8) {
	for b := range c {
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z':
			c[b] = classLetter
		case '0' <= b && b <= '9':
			c[b] = classNumber
		case b == ' ', '\t' <= b && b <= '\r':
			c[b] = classSpace
		}
	}
	return c
}()

// charAt returns the class and the length in bytes of the character that
// starts s[i:]. A byte that does not start valid UTF-8 is a character of
// its own, of classOther.
func charAt(s string, i int) (class uint8, size int) {
	if b := s[i]; b < utf8.RuneSelf {
		return asciiClass[b], 1
	}
	r, size := utf8.DecodeRuneInString(s[i:])
	switch {
	case unicode.IsLetter(r):
		return classLetter, size
	case unicode.IsNumber(r):
		return classNumber, size
	case isSpace(r):
		return classSpace, size
	}
	return classOther, size
}

// isSpace reports whether r has the Unicode White_Space property, the set
// that \s matches in Python's regex module. Unlike Python's str.isspace it
// excludes U+001C..U+001F.
func isSpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', ' ', 0x85, 0xA0, 0x1680,
		0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
		return true
	}
	return 0x2000 <= r && r <= 0x200A
}

// preTokenLen returns the length in bytes of the first pre-token of the
// non-empty s: the match of the GPT-2 pattern
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// at the start of s, the first alternative that matches winning.
func preTokenLen(s string) int {
	if s[0] == '\'' && len(s) > 1 {
		switch s[1] {
		case 's', 't', 'm', 'd':
			return 2
		}
		if len(s) > 2 {
			switch s[1:3] {
			case "re", "ve", "ll":
				return 3
			}
		}
	}
	// ` ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+`: an optional space, then a run
	// of one class other than space.
	start := 0
	if s[0] == ' ' && len(s) > 1 {
		if class, _ := charAt(s, 1); class != classSpace {
			start = 1
		}
	}
	class, size := charAt(s, start)
	if class != classSpace {
		end := start + size
		for end < len(s) {
			c, n := charAt(s, end)
			if c != class {
				break
			}
			end += n
		}
		return end
	}
	// `\s+(?!\S)|\s+`: a run of white space, less its last character when a
	// non-space follows it and it has more than one (that last one then
	// starts the next pre-token, joining the word after it if it is ' ').
	end, last := 0, 0
	for end < len(s) {
		c, n := charAt(s, end)
		if c != classSpace {
			break
		}
		last = end
		end += n
	}
	if end == len(s) || last == 0 {
		return end
	}
	return last
}
