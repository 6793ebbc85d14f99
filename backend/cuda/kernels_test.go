package cuda

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/modeld-dev/modeld/backend"
)

// TestKernelModules checks, without a GPU, that every .cu has its PTX, generated for compute_70
// as PTX ISA 7.8, and that every launch in the Go code names an entry of some module with as
// many arguments as the entry has parameters, and that every entry is launched (a misspelt
// name or a missing argument would otherwise show only on a GPU, as "unknown kernel" or a
// kernel reading garbage).
func TestKernelModules(t *testing.T) {
	mods := kernelModules()
	if len(mods) == 0 {
		t.Fatal("no kernel modules embedded")
	}
	params := map[string]int{} // entry -> number of parameters
	module := map[string]string{}
	entry := regexp.MustCompile(`\.visible \.entry (\w+)\(([^)]*)\)`)
	for _, m := range mods {
		if len(m.CU) == 0 || len(m.PTX) == 0 {
			t.Errorf("module %s: %d bytes of CUDA, %d of PTX", m.Name, len(m.CU), len(m.PTX))
		}
		for _, want := range []string{".version 7.8\n", ".target sm_70\n", ".address_size 64\n"} {
			if !bytes.Contains(m.PTX, []byte(want)) {
				t.Errorf("module %s: PTX lacks %q", m.Name, want)
			}
		}
		for _, e := range entry.FindAllSubmatch(m.PTX, -1) {
			name := string(e[1])
			if other, dup := module[name]; dup {
				t.Errorf("kernel %s is in both %s and %s", name, other, m.Name)
			}
			module[name] = m.Name
			params[name] = bytes.Count(e[2], []byte(".param "))
		}
	}
	launched := map[string]bool{}
	fset := token.NewFileSet()
	for _, file := range []string{"kernels.go", "kernels_attention.go", "flash.go", "cuda.go"} {
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "launch" || len(call.Args) < 4 {
				return true
			}
			// b.launch(kernel, grid, block, sharedBytes, args...): kernel is "name" or
			// "name_"+d, d one of headBound's suffixes.
			var names []string
			switch k := call.Args[0].(type) {
			case *ast.BasicLit:
				names = []string{strings.Trim(k.Value, `"`)}
			case *ast.BinaryExpr:
				lit, ok := k.X.(*ast.BasicLit)
				if !ok {
					t.Fatalf("%s: kernel name %T", fset.Position(call.Pos()), k.X)
				}
				for _, d := range []string{"32", "64"} {
					names = append(names, strings.Trim(lit.Value, `"`)+d)
				}
			default:
				t.Fatalf("%s: kernel name %T, want a string literal", fset.Position(call.Pos()), k)
			}
			for _, name := range names {
				launched[name] = true
				want, ok := params[name]
				switch {
				case !ok:
					t.Errorf("%s: the Go code launches %q, which no module defines", fset.Position(call.Pos()), name)
				case len(call.Args)-4 != want:
					t.Errorf("%s: %s launched with %d arguments, its entry has %d parameters",
						fset.Position(call.Pos()), name, len(call.Args)-4, want)
				}
			}
			return true
		})
	}
	if len(launched) < 20 {
		t.Fatalf("found only %d kernels launched in the Go sources: %v", len(launched), launched)
	}
	for name := range params {
		if !launched[name] {
			t.Errorf("kernel %s (%s.cu) is never launched", name, module[name])
		}
	}
}

// TestFlattenSeqs checks the CachedAttention metadata against the CPU backend's addressing,
// for the conformance suite's mixed batch: every new row's cache slot, the table each item
// points at, and that the prefill items cover the rows of the sequences with Len > 1 once and
// the decode items those with Len == 1.
func TestFlattenSeqs(t *testing.T) {
	const bs, nblocks = 4, 40
	seqs := []backend.CachedSeq{
		{Row: 3, Len: 7, Pos: 0, Blocks: []int32{5, 9}},
		{Row: 0, Len: 1, Pos: 12, Blocks: []int32{1, 2, 3, 4}},
		{Row: 10, Len: 1, Pos: 3, Blocks: []int32{7, 39}}, // an unused extra block
		{Row: 11, Len: 130, Pos: 9, Blocks: make([]int32, 35)},
		{Row: 1, Len: 1, Pos: 0, Blocks: []int32{0}},
		{Row: 2, Len: 1, Pos: 300, Blocks: make([]int32, 76)},
	}
	for i := range seqs[3].Blocks {
		seqs[3].Blocks[i] = int32(i % nblocks)
	}
	for i := range seqs[5].Blocks {
		seqs[5].Blocks[i] = int32((3 * i) % nblocks)
	}
	const N = 11 + 130 + 2 // row 141 and 142 belong to no sequence
	m, err := flattenSeqs(seqs, N, bs, nblocks)
	if err != nil {
		t.Fatal(err)
	}
	if m.rows != 7+1+1+130+1+1 {
		t.Errorf("rows = %d", m.rows)
	}
	slot := func(s backend.CachedSeq, pos int) int32 { return s.Blocks[pos/bs]*bs + int32(pos%bs) }
	want := slices.Repeat([]int32{-1}, N)
	for _, s := range seqs {
		for i := range s.Len {
			want[s.Row+i] = slot(s, s.Pos+i)
		}
	}
	if got := m.ints[:N]; !slices.Equal(got, want) {
		t.Errorf("slots:\n got %v\nwant %v", got, want)
	}
	// table returns the block table an item's offset points at, as the kernels read it.
	table := func(off int) []int32 { return m.ints[m.tables+off:] }
	covered := map[int]bool{}
	for it := m.prefill; it < m.decode; it += 4 {
		row0, nrows, pos0, off := int(m.ints[it]), int(m.ints[it+1]), int(m.ints[it+2]), int(m.ints[it+3])
		if nrows < 1 || nrows > prefillRows {
			t.Errorf("prefill item at %d has %d rows", it, nrows)
		}
		for r := range nrows {
			s := seqOfRow(t, seqs, row0+r)
			if s.Len <= 1 || covered[row0+r] || s.Pos+(row0+r-s.Row) != pos0+r {
				t.Errorf("prefill item at %d: row %d (pos %d) is wrong", it, row0+r, pos0+r)
			}
			covered[row0+r] = true
			for p := 0; p <= pos0+r; p++ {
				if got := table(off)[p/bs]*bs + int32(p%bs); got != slot(s, p) {
					t.Fatalf("prefill row %d reads position %d at slot %d, want %d", row0+r, p, got, slot(s, p))
				}
			}
		}
	}
	splits := 0
	for it := m.decode; it < len(m.ints); it += 3 {
		row, last, off := int(m.ints[it]), int(m.ints[it+1]), int(m.ints[it+2])
		s := seqOfRow(t, seqs, row)
		if s.Len != 1 || s.Pos != last || covered[row] {
			t.Errorf("decode item at %d: row %d, last %d", it, row, last)
		}
		covered[row] = true
		for p := 0; p <= last; p++ {
			if got := table(off)[p/bs]*bs + int32(p%bs); got != slot(s, p) {
				t.Fatalf("decode row %d reads position %d at slot %d, want %d", row, p, got, slot(s, p))
			}
		}
		splits = max(splits, (last+decodeChunk)/decodeChunk)
	}
	if len(covered) != m.rows {
		t.Errorf("items cover %d rows, want %d", len(covered), m.rows)
	}
	if m.splits != splits || splits != 3 {
		t.Errorf("splits = %d, the items need %d (want 3 for position 300)", m.splits, splits)
	}
}

func seqOfRow(t *testing.T, seqs []backend.CachedSeq, row int) backend.CachedSeq {
	t.Helper()
	for _, s := range seqs {
		if row >= s.Row && row < s.Row+s.Len {
			return s
		}
	}
	t.Fatalf("row %d belongs to no sequence", row)
	return backend.CachedSeq{}
}

// TestFlattenSeqsErrors checks the CPU backend's rejections: a sequence past the rows or its
// blocks, and a block id outside the cache.
func TestFlattenSeqsErrors(t *testing.T) {
	for i, s := range []backend.CachedSeq{
		{Row: 0, Len: 3, Pos: 0, Blocks: []int32{0}},    // 3 rows of 2
		{Row: 0, Len: 2, Pos: 3, Blocks: []int32{0}},    // positions 3..4 in one block of 4
		{Row: 0, Len: 2, Pos: 3, Blocks: []int32{0, 4}}, // block 4 of 4
		{Row: 0, Len: 2, Pos: 3, Blocks: []int32{-1, 1}},
		{Row: -1, Len: 1, Pos: 0, Blocks: []int32{0}},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			if _, err := flattenSeqs([]backend.CachedSeq{s}, 2, 4, 4); err == nil {
				t.Errorf("%+v was accepted", s)
			}
		})
	}
	if _, err := flattenSeqs([]backend.CachedSeq{{Row: 0, Len: 2, Pos: 3, Blocks: []int32{0, 3, 99}}}, 2, 4, 4); err != nil {
		t.Errorf("an unused block past the sequence's positions was checked: %v", err)
	}
}
