package tokenizer

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync/atomic"
)

// byteRunes is GPT-2's bytes_to_unicode table (encoder.py): the printable
// character that stands for each byte in vocab.json and merges.txt. Printable
// Latin-1 bytes stand for themselves; the other 68 map to U+0100 onwards in
// byte order (the space 0x20 becomes 'Ġ', U+0120).
var byteRunes = func() (t [256]rune) {
	next := rune(256)
	for b := range t {
		if '!' <= b && b <= '~' || '¡' <= b && b <= '¬' || '®' <= b && b <= 'ÿ' {
			t[b] = rune(b)
		} else {
			t[b] = next
			next++
		}
	}
	return t
}()

// runeBytes inverts byteRunes: the byte each of its runes stands for.
var runeBytes = func() map[rune]byte {
	m := make(map[rune]byte, len(byteRunes))
	for b, r := range byteRunes {
		m[r] = byte(b)
	}
	return m
}()

// merge is the result of merging an adjacent pair of tokens.
type merge struct {
	rank int32 // line of the pair in merges.txt, from 0; lower merges first
	id   int32 // the merged token
}

// pairKey is the key of the pair (left, right) in Tokenizer.merges.
func pairKey(left, right int32) uint64 {
	return uint64(uint32(left))<<32 | uint64(uint32(right))
}

// symbol is one token of a word being merged, in a doubly linked list.
type symbol struct {
	id         int32 // -1 once merged into the symbol before it
	prev, next int32 // index of the neighbours; -1 at either end
}

// candidate is an adjacent pair that merges.txt can merge.
type candidate struct {
	rank        int32 // of the pair
	pos         int32 // index of the left symbol
	left, right int32 // the pair's ids when it was pushed, to spot stale entries
	id          int32 // the merged token
}

// before orders the merge heap: lowest rank first, the leftmost pair among
// equal ranks, as encoder.py merges all occurrences of a pair left to right.
func (c candidate) before(d candidate) bool {
	return c.rank < d.rank || c.rank == d.rank && c.pos < d.pos
}

// appendBPE appends the ids of word, a pre-token of at least 2 bytes, merged
// as encoder.py's bpe merges it: in passes, each of which merges every
// occurrence, left to right, of the adjacent pair that merges.txt ranks
// first, until no pair has a rank. A min-heap of candidate pairs over a
// linked list of symbols makes it O(n log n) in the length of word where
// encoder.py is O(n²).
func (t *Tokenizer) appendBPE(dst []int32, word string) []int32 {
	var symBuf [32]symbol
	var heapBuf, freshBuf [32]candidate
	syms, h, fresh := symBuf[:0], heapBuf[:0], freshBuf[:0]
	for i := range len(word) {
		syms = append(syms, symbol{id: t.byteIDs[word[i]], prev: int32(i) - 1, next: int32(i) + 1})
	}
	syms[len(syms)-1].next = -1
	for i := range len(syms) - 1 {
		if c, ok := t.pairAt(syms, int32(i)); ok {
			h = append(h, c)
		}
	}
	for i := len(h)/2 - 1; i >= 0; i-- {
		heapDown(h, i)
	}
	for len(h) > 0 {
		c := h[0]
		h[0] = h[len(h)-1]
		h = h[:len(h)-1]
		heapDown(h, 0)

		// Merge the pair unless it is stale: one side has merged with another
		// neighbour since it was pushed.
		if l := &syms[c.pos]; l.id == c.left && l.next >= 0 && syms[l.next].id == c.right {
			r := &syms[l.next]
			l.id, r.id = c.id, -1
			l.next = r.next
			if l.next >= 0 {
				syms[l.next].prev = c.pos
				if p, ok := t.pairAt(syms, c.pos); ok {
					fresh = append(fresh, p)
				}
			}
			if l.prev >= 0 {
				if p, ok := t.pairAt(syms, l.prev); ok {
					fresh = append(fresh, p)
				}
			}
		}
		// The pairs a pass makes wait for the next pass, as in encoder.py,
		// even if merges.txt ranks one before the pair being merged.
		if len(h) == 0 || h[0].rank != c.rank {
			for _, p := range fresh {
				h = heapPush(h, p)
			}
			fresh = fresh[:0]
		}
	}
	for i := int32(0); i >= 0; i = syms[i].next {
		dst = append(dst, syms[i].id)
	}
	return dst
}

// pairAt returns the candidate for the pair that starts at syms[pos], and
// whether merges.txt has that pair.
func (t *Tokenizer) pairAt(syms []symbol, pos int32) (candidate, bool) {
	left, right := syms[pos].id, syms[syms[pos].next].id
	m, ok := t.merges[pairKey(left, right)]
	return candidate{rank: m.rank, pos: pos, left: left, right: right, id: m.id}, ok
}

// heapPush pushes c onto the heap h.
func heapPush(h []candidate, c candidate) []candidate {
	h = append(h, c)
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h[i].before(h[parent]) {
			break
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
	return h
}

// heapDown restores the heap order below h[i].
func heapDown(h []candidate, i int) {
	for {
		least := i
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < len(h) && h[c].before(h[least]) {
				least = c
			}
		}
		if least == i {
			return
		}
		h[i], h[least] = h[least], h[i]
		i = least
	}
}

// Bounds of the pre-token cache.
const (
	cacheSlots      = 1 << 16 // entries, at most
	maxCachedLength = 64      // bytes; longer pre-tokens are rare and not cached
)

// cache maps pre-tokens to their ids. It is direct-mapped: the hash of a
// pre-token picks its one slot, and a new entry replaces the old one there.
// It is safe for concurrent use without locks, as entries are immutable and
// slots atomic, and holds at most cacheSlots entries.
type cache struct {
	seed  maphash.Seed
	slots [cacheSlots]atomic.Pointer[cacheEntry]
}

type cacheEntry struct {
	word string
	ids  []int32
}

func newCache() *cache {
	return &cache{seed: maphash.MakeSeed()}
}

func (c *cache) slot(word string) *atomic.Pointer[cacheEntry] {
	return &c.slots[maphash.String(c.seed, word)%cacheSlots]
}

// get returns the cached ids of word; the caller must not modify them.
func (c *cache) get(word string) ([]int32, bool) {
	if e := c.slot(word).Load(); e != nil && e.word == word {
		return e.ids, true
	}
	return nil, false
}

// put caches copies of word and its ids.
func (c *cache) put(word string, ids []int32) {
	c.slot(word).Store(&cacheEntry{word: strings.Clone(word), ids: slices.Clone(ids)})
}
