package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// The oracle files are copies of ../shared/oracle/gpt2-tiny/{hf,hf-bf16}/model.safetensors
// (see testdata/README-oracle.md): a float32 GPT-2 written by PyTorch, and the
// same weights rounded to bfloat16.
const (
	oracleF32  = "model.safetensors"
	oracleBF16 = "model-bf16.safetensors"
)

// sameBits reports whether a and b are the same float32 bit for bit, except
// that any two NaNs are equal.
func sameBits(a, b float32) bool {
	if a != a && b != b {
		return true
	}
	return math.Float32bits(a) == math.Float32bits(b)
}

func diffBits(t *testing.T, name string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values, want %d", name, len(got), len(want))
	}
	for i := range got {
		if !sameBits(got[i], want[i]) {
			t.Fatalf("%s[%d] = %v (%#08x), want %v (%#08x)", name, i,
				got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

func writeBytes(t testing.TB, tensors []Tensor, metadata map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, tensors, metadata); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

func parseBytes(b []byte) (*File, error) { return Parse(bytes.NewReader(b), int64(len(b))) }

// specials are float32 values a converter is likely to get wrong.
var specials = []float32{
	0, float32(math.Copysign(0, -1)), 1, -2, 0.1, -1e-3, 3.4028235e38, -3.4028235e38,
	float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()),
	math.Float32frombits(0x7fc12345), // quiet NaN with a payload
	math.Float32frombits(0x00000001), // smallest float32 subnormal
	math.Float32frombits(0x807fffff), // largest negative float32 subnormal
	65504, 65520, 6.1035156e-05, 5.9604645e-08, 2.9802322e-08, 2.9802326e-08,
}

func TestRoundTrip(t *testing.T) {
	seq := func(n int) []float32 {
		r := rand.New(rand.NewPCG(1, 2))
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		return x
	}
	tensors := []Tensor{
		{Name: "z.specials", Shape: []int{len(specials)}, Data: specials},
		{Name: "a.matrix", Shape: []int{3, 5}, Data: seq(15)},
		{Name: "scalar", Shape: []int{}, Data: []float32{42}},
		{Name: "empty", Shape: []int{0, 7}, Data: []float32{}},
		{Name: "big", Shape: []int{100, 200}, Data: seq(20000)}, // more than one read chunk
		{Name: `odd "name" <&>`, Shape: []int{2}, Data: []float32{-1, 1}},
	}
	metadata := map[string]string{"format": "pt", "note": "<&>"}
	for _, dt := range []DType{F32, BF16, F16} {
		t.Run("dtype="+string(dt), func(t *testing.T) {
			in := make([]Tensor, len(tensors))
			for i, x := range tensors {
				x.DType = dt
				in[i] = x
			}
			b := writeBytes(t, in, metadata)
			n := binary.LittleEndian.Uint64(b)
			if n%8 != 0 {
				t.Errorf("header length %d is not a multiple of 8", n)
			}
			f, err := parseBytes(b)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(metadata, f.Metadata()); diff != "" {
				t.Errorf("Metadata (-want +got):\n%s", diff)
			}
			var off int64
			infos := f.Tensors()
			if len(infos) != len(in) {
				t.Fatalf("got %d tensors, want %d", len(infos), len(in))
			}
			for i, x := range in {
				size := int64(len(x.Data)) * int64(dt.Bits()/8)
				want := Info{Name: x.Name, DType: dt, Shape: x.Shape, Begin: off, End: off + size}
				off += size
				if diff := cmp.Diff(want, infos[i]); diff != "" {
					t.Errorf("Tensors()[%d] (-want +got):\n%s", i, diff)
				}
				got, err := f.Float32(x.Name)
				if err != nil {
					t.Fatalf("Float32: %v", err)
				}
				wantData := make([]float32, len(x.Data))
				for j, v := range x.Data {
					switch dt {
					case F32:
						wantData[j] = v
					case BF16:
						wantData[j] = bf16ToFloat32(bf16FromFloat32(v))
					case F16:
						wantData[j] = f16ToFloat32(f16FromFloat32(v))
					}
				}
				diffBits(t, x.Name, got, wantData)
			}
		})
	}
}

// TestWriteBytes pins the exact bytes Write produces for a small file.
func TestWriteBytes(t *testing.T) {
	b := writeBytes(t, []Tensor{
		{Name: "b", Shape: []int{2}, Data: []float32{1, -2}},
		{Name: "a", Shape: []int{1}, Data: []float32{0.5}, DType: BF16},
	}, map[string]string{"format": "pt"})
	header := `{"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"BF16","shape":[1],"data_offsets":[8,10]}}`
	header += strings.Repeat(" ", (8-len(header)%8)%8)
	want := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	want = append(want, header...)
	want = append(want, 0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0, 0x00, 0x3f)
	if diff := cmp.Diff(want, b); diff != "" {
		t.Errorf("Write (-want +got):\n%s", diff)
	}
}

func TestDecodeBF16(t *testing.T) {
	for _, c := range []struct {
		h    uint16
		want float32
	}{
		{0x3f80, 1},
		{0xc000, -2},
		{0x0000, 0},
		{0x8000, float32(math.Copysign(0, -1))},
		{0x3f00, 0.5},
		{0x4049, 3.140625},
		{0x7f7f, 3.3895314e38},                     // largest finite
		{0x0080, 1.1754944e-38},                    // smallest normal
		{0x0001, math.Float32frombits(0x00010000)}, // subnormal
		{0x7f80, float32(math.Inf(1))},
		{0xff80, float32(math.Inf(-1))},
		{0x7fc0, float32(math.NaN())},
	} {
		t.Run(fmt.Sprintf("h=%#04x", c.h), func(t *testing.T) {
			if got := bf16ToFloat32(c.h); !sameBits(got, c.want) {
				t.Errorf("bf16ToFloat32(%#04x) = %v, want %v", c.h, got, c.want)
			}
		})
	}
}

func TestDecodeF16(t *testing.T) {
	for _, c := range []struct {
		h    uint16
		want float32
	}{
		{0x3c00, 1},
		{0xc000, -2},
		{0x3800, 0.5},
		{0x3555, 0.33325195}, // 1365/4096
		{0x0000, 0},
		{0x8000, float32(math.Copysign(0, -1))},
		{0x0001, 0x1p-24}, // smallest subnormal
		{0x8001, -0x1p-24},
		{0x0200, 0x1p-15},
		{0x03ff, 1023 * 0x1p-24}, // largest subnormal
		{0x0400, 0x1p-14},        // smallest normal
		{0x7bff, 65504},          // largest finite
		{0x7c00, float32(math.Inf(1))},
		{0xfc00, float32(math.Inf(-1))},
		{0x7e00, float32(math.NaN())},
	} {
		t.Run(fmt.Sprintf("h=%#04x", c.h), func(t *testing.T) {
			if got := f16ToFloat32(c.h); !sameBits(got, c.want) {
				t.Errorf("f16ToFloat32(%#04x) = %v, want %v", c.h, got, c.want)
			}
		})
	}
	// NaN payloads survive, in the top mantissa bits.
	if got := math.Float32bits(f16ToFloat32(0xfd23)); got != 0xffa46000 {
		t.Errorf("f16ToFloat32(0xfd23) bits = %#08x, want 0xffa46000", got)
	}
}

// TestF16AllValues checks every binary16 against the formula of IEEE 754,
// and that encoding the decoded value gives it back.
func TestF16AllValues(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		got := f16ToFloat32(h)
		sign, exp, mant := h>>15, int(h>>10&0x1f), float64(h&0x3ff)
		var want float64
		switch {
		case exp == 0x1f && mant != 0:
			if got == got {
				t.Fatalf("f16ToFloat32(%#04x) = %v, want NaN", h, got)
			}
			if back := f16FromFloat32(got); back&0x7fff <= 0x7c00 || back>>15 != sign {
				t.Fatalf("f16FromFloat32(NaN %#04x) = %#04x, want a NaN of the same sign", h, back)
			}
			continue
		case exp == 0x1f:
			want = math.Inf(1)
		case exp == 0:
			want = math.Ldexp(mant, -24)
		default:
			want = math.Ldexp(1+mant/1024, exp-15)
		}
		if sign == 1 {
			want = -want
		}
		if !sameBits(got, float32(want)) {
			t.Fatalf("f16ToFloat32(%#04x) = %v, want %v", h, got, want)
		}
		if back := f16FromFloat32(got); back != h {
			t.Fatalf("f16FromFloat32(f16ToFloat32(%#04x)) = %#04x", h, back)
		}
	}
}

// TestRoundNearestEven checks BF16 and F16 encoding of special and random
// float32 values against a float64 search for the nearest 16-bit value,
// ties going to the even one, with overflow as if the exponent had no limit
// (IEEE 754 section 4.3.1: a value at or beyond max + half an ulp rounds to Inf).
func TestRoundNearestEven(t *testing.T) {
	formats := []struct {
		name   string
		encode func(float32) uint16
		decode func(uint16) float32
		inf    uint16
		infAt  float64 // what Inf stands for when rounding: max + 1 ulp
	}{
		{"BF16", bf16FromFloat32, bf16ToFloat32, 0x7f80, 0x1p128},
		{"F16", f16FromFloat32, f16ToFloat32, 0x7c00, 0x1p16},
	}
	r := rand.New(rand.NewPCG(3, 4))
	xs := append([]float32{}, specials...)
	for range 200000 {
		xs = append(xs, math.Float32frombits(r.Uint32()))
	}
	for i := range 1 << 16 { // every 16-bit value, the midpoints next to it, and near misses
		h := uint16(i)
		xs = append(xs, bf16ToFloat32(h), math.Float32frombits(uint32(h)<<16|0x8000), f16ToFloat32(h), f16ToFloat32(h)*1.0001)
		if h&0x7fff < 0x7c00 { // the midpoint to the next binary16 away from 0, exact in float32
			mid := (float64(f16ToFloat32(h)) + float64(f16ToFloat32(h+1))) / 2
			if h&0x7fff == 0x7bff {
				mid = math.Copysign(65520, mid)
			}
			xs = append(xs, float32(mid), math.Nextafter32(float32(mid), 0), math.Nextafter32(float32(mid), float32(2*mid)))
		}
	}
	for _, fm := range formats {
		t.Run("dtype="+fm.name, func(t *testing.T) {
			value := func(h uint16) float64 {
				if h&0x7fff == fm.inf {
					return math.Copysign(fm.infAt, float64(fm.decode(h)))
				}
				return float64(fm.decode(h))
			}
			for _, x := range xs {
				h := fm.encode(x)
				if x != x {
					if y := fm.decode(h); y == y {
						t.Fatalf("%s(NaN %#08x) = %#04x, not a NaN", fm.name, math.Float32bits(x), h)
					}
					continue
				}
				if math.IsInf(float64(x), 0) {
					if h&0x7fff != fm.inf {
						t.Fatalf("%s(%v) = %#04x, want Inf", fm.name, x, h)
					}
					continue
				}
				d := math.Abs(value(h) - float64(x))
				mag := h & 0x7fff
				for _, nb := range []uint16{mag - 1, mag + 1} {
					if nb > fm.inf {
						continue // below zero (wrapped), or beyond Inf
					}
					dn := math.Abs(value(h&0x8000|nb) - float64(x))
					if dn < d || dn == d && h&1 == 1 {
						t.Fatalf("%s(%v = %#08x) = %#04x (%v), but %#04x is nearer or even",
							fm.name, x, math.Float32bits(x), h, fm.decode(h), h&0x8000|nb)
					}
				}
				if math.Signbit(float64(x)) != (h&0x8000 != 0) {
					t.Fatalf("%s(%v) = %#04x has the wrong sign", fm.name, x, h)
				}
			}
		})
	}
}

func TestOracle(t *testing.T) {
	fsys := os.DirFS("testdata")
	f32, err := Open(fsys, oracleF32)
	if err != nil {
		t.Fatal(err)
	}
	defer f32.Close()
	bf16, err := Open(fsys, oracleBF16)
	if err != nil {
		t.Fatal(err)
	}
	defer bf16.Close()

	wantShapes := map[string][]int{
		"transformer.wte.weight":             {500, 64},
		"transformer.wpe.weight":             {64, 64},
		"transformer.h.0.ln_1.weight":        {64},
		"transformer.h.0.attn.c_attn.weight": {64, 192},
		"transformer.h.0.attn.c_attn.bias":   {192},
		"transformer.h.1.attn.c_proj.weight": {64, 64},
		"transformer.h.1.mlp.c_fc.weight":    {64, 256},
		"transformer.h.1.mlp.c_proj.weight":  {256, 64},
		"transformer.ln_f.bias":              {64},
	}
	for _, c := range []struct {
		f     *File
		dtype DType
	}{{f32, F32}, {bf16, BF16}} {
		t.Run("dtype="+string(c.dtype), func(t *testing.T) {
			infos := c.f.Tensors()
			if len(infos) != 28 {
				t.Errorf("got %d tensors, want 28 (wte, wpe, 12 per layer, ln_f)", len(infos))
			}
			total, off := 0, int64(0)
			for _, info := range infos {
				if info.DType != c.dtype {
					t.Errorf("%s: dtype %s, want %s", info.Name, info.DType, c.dtype)
				}
				if info.Begin != off {
					t.Errorf("%s: begins at %d, want %d (data-offset order)", info.Name, info.Begin, off)
				}
				off = info.End
				total += info.NumElements()
			}
			if total != 136192 {
				t.Errorf("got %d parameters, want 136192", total)
			}
			if infos[0].Name != "transformer.wte.weight" || infos[len(infos)-1].Name != "transformer.ln_f.bias" {
				t.Errorf("first and last tensors %q, %q; want the file's order", infos[0].Name, infos[len(infos)-1].Name)
			}
			for name, want := range wantShapes {
				info, ok := c.f.Info(name)
				if !ok {
					t.Errorf("no tensor %q", name)
					continue
				}
				if diff := cmp.Diff(want, info.Shape); diff != "" {
					t.Errorf("%s shape (-want +got):\n%s", name, diff)
				}
			}
			if diff := cmp.Diff(map[string]string{"format": "pt"}, c.f.Metadata()); diff != "" {
				t.Errorf("Metadata (-want +got):\n%s", diff)
			}
		})
	}

	// The bf16 file is the f32 file rounded to nearest even by PyTorch:
	// our rounding must agree bit for bit, and writing the f32 weights as
	// F32 or BF16 must reproduce each file's data section byte for byte.
	var asF32, asBF16 []Tensor
	for _, info := range f32.Tensors() {
		x, err := f32.Float32(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		if info.Name == "transformer.wte.weight" && (x[0] == 0 || len(x) != 32000) {
			t.Errorf("wte: len %d, first value %v", len(x), x[0])
		}
		y, err := bf16.Float32(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, len(x))
		for i, v := range x {
			want[i] = bf16ToFloat32(bf16FromFloat32(v))
		}
		diffBits(t, info.Name, y, want)
		asF32 = append(asF32, Tensor{Name: info.Name, Shape: info.Shape, Data: x})
		asBF16 = append(asBF16, Tensor{Name: info.Name, Shape: info.Shape, Data: x, DType: BF16})
	}
	for _, c := range []struct {
		file    string
		tensors []Tensor
	}{{oracleF32, asF32}, {oracleBF16, asBF16}} {
		orig, err := os.ReadFile("testdata/" + c.file)
		if err != nil {
			t.Fatal(err)
		}
		b := writeBytes(t, c.tensors, map[string]string{"format": "pt"})
		dataStart := func(b []byte) int { return 8 + int(binary.LittleEndian.Uint64(b)) }
		if !bytes.Equal(b[dataStart(b):], orig[dataStart(orig):]) {
			t.Errorf("%s: rewritten data section differs from the original", c.file)
		}
	}
}

// smallFile is a valid file of a few tensors, for the truncation tests.
func smallFile(t testing.TB) []byte {
	return writeBytes(t, []Tensor{
		{Name: "w", Shape: []int{2, 3}, Data: []float32{1, 2, 3, 4, 5, 6}},
		{Name: "b", Shape: []int{3}, Data: []float32{7, 8, 9}, DType: BF16},
		{Name: "h", Shape: []int{1}, Data: []float32{10}, DType: F16},
	}, map[string]string{"format": "pt"})
}

func TestTruncated(t *testing.T) {
	full := smallFile(t)
	headerEnd := 8 + int(binary.LittleEndian.Uint64(full))
	for n := range len(full) {
		fsys := fstest.MapFS{"model.safetensors": {Data: full[:n]}}
		_, err := Open(fsys, "model.safetensors")
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Fatalf("prefix of %d bytes: got error %v, want a *FormatError", n, err)
		}
		if !strings.Contains(err.Error(), "model.safetensors") {
			t.Errorf("prefix of %d bytes: error %q does not name the file", n, err)
		}
		// Past the header, the error names a tensor that does not fit.
		if n >= headerEnd && !strings.Contains(err.Error(), `tensor "`) {
			t.Errorf("prefix of %d bytes: error %q does not name the tensor", n, err)
		}
	}
	if _, err := parseBytes(full); err != nil {
		t.Fatalf("full file: %v", err)
	}
}

// shrinking reports the full size but holds only the first n bytes: a file
// truncated after it was parsed.
type shrinking struct {
	b []byte
	n int
}

func (s shrinking) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(s.b[:s.n]).ReadAt(p, off)
}

func TestTruncatedAfterParse(t *testing.T) {
	full := smallFile(t)
	f, err := Parse(shrinking{full, len(full) - 1}, int64(len(full)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Float32("w"); err != nil {
		t.Errorf(`Float32("w"): %v`, err)
	}
	_, err = f.Float32("h")
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Tensor != "h" || !strings.Contains(err.Error(), "truncated") {
		t.Errorf(`Float32("h") = %v, want a *FormatError for tensor "h" saying truncated`, err)
	}
}

// eofAtEnd returns io.EOF with a full read that reaches the end, as
// io.ReaderAt allows.
type eofAtEnd []byte

func (e eofAtEnd) ReadAt(p []byte, off int64) (int, error) {
	n, err := bytes.NewReader(e).ReadAt(p, off)
	if err == nil && off+int64(n) == int64(len(e)) {
		err = io.EOF
	}
	return n, err
}

func TestReaderAtEOF(t *testing.T) {
	full := smallFile(t)
	f, err := Parse(eofAtEnd(full), int64(len(full)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Float32("h") // the last tensor
	if err != nil {
		t.Fatal(err)
	}
	diffBits(t, "h", got, []float32{10})
}

// header builds a file from a JSON header and a data section of dataSize
// zero bytes.
func header(json string, dataSize int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(json)))
	b = append(b, json...)
	return append(b, make([]byte, dataSize)...)
}

// withLength is header with the length field replaced by n.
func withLength(n uint64, rest string) []byte {
	return append(binary.LittleEndian.AppendUint64(nil, n), rest...)
}

type hostileCase struct {
	name string
	file []byte
	want string // substring of the error
}

var hostileCases = []hostileCase{
	{"empty", nil, "shorter than the 8-byte header length"},
	{"short", []byte{1, 2, 3}, "shorter than the 8-byte header length"},
	{"header=over_limit", withLength(MaxHeaderSize+1, "{}"), "exceeds the limit"},
	{"header=max_uint64", withLength(math.MaxUint64, "{}"), "exceeds the limit"},
	{"header=past_eof", withLength(100, "{}"), "exceeds the 2 bytes after"},
	{"header=empty", header("", 0), "header: EOF"},
	{"header=array", header("[]", 0), "want a JSON object"},
	{"header=string", header(`"{}"`, 0), "want a JSON object"},
	{"header=not_utf8", header("{\"\xff\":1}", 0), "not valid UTF-8"},
	{"header=unterminated", header(`{"a":`, 0), "header"},
	{"header=trailing", header(`{} {}`, 0), "after the header object"},
	{"header=not_object_value", header(`{"a":5}`, 0), `tensor "a": header entry`},
	{"dtype=wrong_case", header(`{"a":{"DType":"F32","shape":[1],"data_offsets":[0,4]}}`, 4), `tensor "a": missing "dtype"`},
	{"dtype=missing", header(`{"a":{"shape":[1],"data_offsets":[0,4]}}`, 4), `tensor "a": missing "dtype"`},
	{"dtype=null_entry", header(`{"a":null}`, 0), `tensor "a": missing "dtype"`},
	{"shape=missing", header(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, 4), `tensor "a": missing "shape"`},
	{"offsets=missing", header(`{"a":{"dtype":"F32","shape":[1]}}`, 4), `tensor "a": missing "data_offsets"`},
	{"dtype=unknown", header(`{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}`, 16), `tensor "a": unknown dtype "F128"`},
	{"dtype=number", header(`{"a":{"dtype":1,"shape":[1],"data_offsets":[0,4]}}`, 4), `tensor "a": dtype: json: cannot unmarshal`},
	{"dtype=null", header(`{"a":{"dtype":null,"shape":[1],"data_offsets":[0,4]}}`, 4), `tensor "a": missing "dtype"`},
	{"shape=negative", header(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, 4), `tensor "a": shape [-1] has dim -1`},
	{"shape=fraction", header(`{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, 4), `tensor "a": shape: json: cannot unmarshal`},
	{"shape=huge_dim", header(`{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,4]}}`, 4), `tensor "a": shape: json: cannot unmarshal`},
	{"shape=overflow", header(`{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}}`, 4), `tensor "a": shape [4294967296 4294967296 4294967296]: element count overflows`},
	{"shape=overflow_bytes", header(`{"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}}`, 8), `tensor "a": shape [4611686018427387904] of F64: size in bits overflows`},
	{"shape=overflow_before_zero", header(`{"a":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}}`, 0), `tensor "a": shape [4294967296 4294967296 0]: element count overflows`},
	{"shape=mismatch", header(`{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}`, 20), `tensor "a": shape [2 3] of F32 is 24 bytes, data_offsets [0, 20] hold 20`},
	{"shape=huge_claim", header(`{"a":{"dtype":"F32","shape":[1000000000000],"data_offsets":[0,4000000000000]}}`, 0), `tensor "a": data_offsets [0, 4000000000000] outside the 0-byte data section`},
	{"shape=sub_byte", header(`{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}`, 2), `tensor "a": shape [3] of F4 is 12 bits`},
	{"offsets=negative", header(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`, 4), `tensor "a": data_offsets [-4, 0] outside`},
	{"offsets=reversed", header(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}`, 4), `tensor "a": data_offsets [4, 0] outside`},
	{"offsets=past_end", header(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 4), `tensor "a": data_offsets [4, 8] outside the 4-byte data section`},
	{"offsets=three", header(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, 8), `tensor "a": data_offsets has 3 numbers`},
	{"offsets=one", header(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4]}}`, 8), `tensor "a": data_offsets has 1 numbers`},
	{"offsets=string", header(`{"a":{"dtype":"F32","shape":[1],"data_offsets":["0","4"]}}`, 4), `tensor "a": data_offsets: json: cannot unmarshal`},
	{"offsets=overlap", header(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), `tensor "b": data_offsets [4, 8] overlaps`},
	{"offsets=same", header(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 8), `tensor "b": data_offsets [0, 4] overlaps`},
	{"offsets=gap", header(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, 12), `tensor "b": data_offsets [8, 12] leaves a gap`},
	{"offsets=first_not_zero", header(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), `tensor "a": data_offsets [4, 8] leaves a gap`},
	{"offsets=uncovered", header(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 8), "tensors cover 4 bytes of the 8-byte data section"},
	{"offsets=no_tensors_with_data", header(`{}`, 1), "tensors cover 0 bytes of the 1-byte data section"},
	{"name=duplicate", header(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), `tensor "a": appears twice`},
	{"metadata=duplicate", header(`{"__metadata__":{},"__metadata__":{}}`, 0), `tensor "__metadata__": appears twice`},
	{"metadata=not_string", header(`{"__metadata__":{"a":1}}`, 0), "header: __metadata__"},
	{"metadata=not_object", header(`{"__metadata__":[]}`, 0), "header: __metadata__"},
}

func TestParseHostile(t *testing.T) {
	for _, c := range hostileCases {
		t.Run(c.name, func(t *testing.T) {
			f, err := parseBytes(c.file)
			if err == nil {
				t.Fatalf("Parse succeeded with tensors %v, want an error containing %q", f.Tensors(), c.want)
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Errorf("error %v is not a *FormatError", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			// Through Open, the error also names the file.
			_, err = Open(fstest.MapFS{"m.safetensors": {Data: c.file}}, "m.safetensors")
			if err == nil || !strings.Contains(err.Error(), "safetensors: m.safetensors: ") {
				t.Errorf("Open: error %v does not name the file", err)
			}
		})
	}
}

// TestParseAllocs checks that a header's numbers do not drive allocations:
// files claiming terabytes cost what their bytes cost.
func TestParseAllocs(t *testing.T) {
	for _, c := range hostileCases {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		parseBytes(c.file)
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
			t.Errorf("%s: Parse allocated %d bytes for a %d-byte file", c.name, n, len(c.file))
		}
	}
}

func TestParseValid(t *testing.T) {
	for _, c := range []struct {
		name string
		file []byte
		want []Info
	}{
		{"empty", header(`{}`, 0), []Info{}},
		{"padded", header(`{"__metadata__":{"k":"v"}}      `, 0), []Info{}},
		{"leading_space", header(` {}`, 0), []Info{}},
		{"null_metadata", header(`{"__metadata__":null}`, 0), []Info{}},
		{"unknown_field", header(`{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4],"extra":[1]}}`, 4),
			[]Info{{Name: "s", DType: F32, Shape: []int{}, Begin: 0, End: 4}}},
		{"scalar", header(`{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}`, 4),
			[]Info{{Name: "s", DType: F32, Shape: []int{}, Begin: 0, End: 4}}},
		// Out of order in the header, and zero-size tensors anywhere: the
		// Rust crate sorts by offsets, and so do we.
		{"unordered", header(`{"b":{"dtype":"F16","shape":[2],"data_offsets":[4,8]},"z":{"dtype":"F32","shape":[4611686018427387904,0],"data_offsets":[4,4]},"a":{"dtype":"I64","shape":[],"data_offsets":[8,16]},"c":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`, 16),
			[]Info{
				{Name: "c", DType: U8, Shape: []int{4}, Begin: 0, End: 4},
				{Name: "z", DType: F32, Shape: []int{4611686018427387904, 0}, Begin: 4, End: 4},
				{Name: "b", DType: F16, Shape: []int{2}, Begin: 4, End: 8},
				{Name: "a", DType: I64, Shape: []int{}, Begin: 8, End: 16},
			}},
		{"sub_byte", header(`{"a":{"dtype":"F4","shape":[2,3],"data_offsets":[0,3]}}`, 3),
			[]Info{{Name: "a", DType: F4, Shape: []int{2, 3}, Begin: 0, End: 3}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := parseBytes(c.file)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, f.Tensors()); diff != "" {
				t.Errorf("Tensors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFloat32Errors(t *testing.T) {
	f, err := Open(fstest.MapFS{"x.safetensors": {Data: header(`{"i":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}`, 4)}}, "x.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ tensor, want string }{
		{"i", `safetensors: x.safetensors: tensor "i": dtype I32 cannot be read as float32`},
		{"nope", `safetensors: x.safetensors: tensor "nope": no such tensor`},
	} {
		if _, err := f.Float32(c.tensor); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Float32(%q) = %v, want an error containing %q", c.tensor, err, c.want)
		}
	}
	if err := f.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// noReadAt hides ReadAt, as a network or archive fs.File might.
type noReadAt struct{ fs.FS }

func (n noReadAt) Open(name string) (fs.File, error) {
	f, err := n.FS.Open(name)
	return struct{ fs.File }{f}, err
}

func TestOpenWithoutReadAt(t *testing.T) {
	fsys := noReadAt{os.DirFS("testdata")}
	f, err := Open(fsys, oracleBF16)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	x, err := f.Float32("transformer.ln_f.bias")
	if err != nil || len(x) != 64 {
		t.Fatalf("Float32 = %d values, %v", len(x), err)
	}
	if _, err := Open(fsys, "missing.safetensors"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing) = %v, want fs.ErrNotExist", err)
	}
}

func TestWriteErrors(t *testing.T) {
	for _, c := range []struct {
		name     string
		tensors  []Tensor
		metadata map[string]string
		want     string
	}{
		{"mismatch", []Tensor{{Name: "a", Shape: []int{2, 2}, Data: make([]float32, 3)}}, nil, `tensor "a": shape [2 2] has 4 elements, Data has 3`},
		{"negative", []Tensor{{Name: "a", Shape: []int{-1}, Data: nil}}, nil, `tensor "a": shape [-1] has a negative dim`},
		{"overflow", []Tensor{{Name: "a", Shape: []int{1 << 40, 1 << 40}, Data: nil}}, nil, `tensor "a": shape [1099511627776 1099511627776]: element count overflows`},
		{"duplicate", []Tensor{{Name: "a", Shape: []int{}, Data: []float32{1}}, {Name: "a", Shape: []int{}, Data: []float32{1}}}, nil, `tensor "a": name appears twice`},
		{"reserved", []Tensor{{Name: "__metadata__", Shape: []int{}, Data: []float32{1}}}, nil, "reserved"},
		{"empty_name", []Tensor{{Shape: []int{}, Data: []float32{1}}}, nil, "tensor 0: empty name"},
		{"not_utf8", []Tensor{{Name: "\xff", Shape: []int{}, Data: []float32{1}}}, nil, "not valid UTF-8"},
		{"metadata_not_utf8", nil, map[string]string{"k": "\xff"}, `metadata "k": not valid UTF-8`},
		{"dtype", []Tensor{{Name: "a", Shape: []int{}, Data: []float32{1}, DType: I8}}, nil, `tensor "a": cannot write dtype I8`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Write(io.Discard, c.tensors, c.metadata)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Write = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n -= len(p); w.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWriteFails(t *testing.T) {
	n := len(smallFile(t))
	for limit := range n {
		err := Write(&failingWriter{limit}, []Tensor{
			{Name: "w", Shape: []int{2, 3}, Data: []float32{1, 2, 3, 4, 5, 6}},
			{Name: "b", Shape: []int{3}, Data: []float32{7, 8, 9}, DType: BF16},
			{Name: "h", Shape: []int{1}, Data: []float32{10}, DType: F16},
		}, map[string]string{"format": "pt"})
		if err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Fatalf("writer failing after %d bytes: Write = %v", limit, err)
		}
	}
}

func BenchmarkFloat32(b *testing.B) {
	for _, file := range []string{oracleF32, oracleBF16} {
		b.Run("file="+file, func(b *testing.B) {
			f, err := Open(os.DirFS("testdata"), file)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			infos := f.Tensors()
			b.SetBytes(infos[len(infos)-1].End)
			for b.Loop() {
				for _, info := range infos {
					if _, err := f.Float32(info.Name); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
