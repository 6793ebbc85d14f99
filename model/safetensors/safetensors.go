// Package safetensors reads and writes Hugging Face safetensors files
// (model.safetensors), the weight format of Hugging Face model folders.
//
// A file is an 8-byte little-endian header length N, N bytes of JSON
//
//	{"name": {"dtype": "F32", "shape": [500, 64], "data_offsets": [begin, end]}, ...,
//	 "__metadata__": {"format": "pt"}}
//
// and then the data section. Offsets are byte offsets into the data section;
// the tensors are row-major, little-endian, contiguous, non-overlapping and
// cover the data section exactly. The format is specified by
// https://github.com/huggingface/safetensors; [Parse] validates a header as
// that repository's Rust crate does (SafeTensors::read_metadata, version
// 0.6: dtypes, overflow, sorting by offsets, coverage), with two
// differences: a tensor name given twice is an error (the crate keeps the
// last), and a field given twice within one entry is not (serde reports one).
//
// [Parse] treats the file as hostile: every number in the header is checked
// against the file size before anything is allocated from it, so a truncated
// or malicious file yields a [*FormatError] naming the file and tensor, never a
// panic or an allocation larger than a small multiple of the file. Tensor data
// is read on demand through an [io.ReaderAt], so a File holds only its header
// in memory and [File.Float32] reads each tensor once, straight into the
// returned slice.
//
// # Why not github.com/nlpodyssey/safetensors
//
// That library (the only Go one on the module proxy, untagged, last changed
// February 2025) was evaluated first and does not fit: it deserializes from a
// []byte holding the whole file (no io.ReaderAt or fs.File), so loading costs
// the file in memory plus the converted float32 copy; it has no BF16/F16 to
// float32 conversion; it decodes the header into a Go map, so duplicate tensor
// names are silently dropped; its errors never name the file, and its shape
// errors not the tensor; its writer takes a map and reorders tensors by dtype
// and name rather than keeping the caller's order; and its TensorView counts
// the elements of a scalar (shape []) as 0. What we need is a few hundred
// lines, so we keep our own.
package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"math/bits"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxHeaderSize is the largest JSON header accepted, in bytes; it matches the
// Rust crate's MAX_HEADER_SIZE.
const MaxHeaderSize = 100_000_000

// metadataKey is the header entry holding the string-to-string metadata.
const metadataKey = "__metadata__"

// DType names the element type of a tensor, as spelled in the header.
type DType string

// The dtypes of the safetensors format. Parse accepts all of them (checking
// sizes); [File.Float32] reads F32, BF16 and F16 and refuses the rest;
// [Write] writes F32, BF16 and F16.
const (
	BOOL   DType = "BOOL"
	U8     DType = "U8"
	I8     DType = "I8"
	I16    DType = "I16"
	U16    DType = "U16"
	I32    DType = "I32"
	U32    DType = "U32"
	I64    DType = "I64"
	U64    DType = "U64"
	F16    DType = "F16"  // IEEE 754 binary16
	BF16   DType = "BF16" // bfloat16: the top 16 bits of a float32
	F32    DType = "F32"
	F64    DType = "F64"
	C64    DType = "C64" // complex64: two float32
	F8E5M2 DType = "F8_E5M2"
	F8E4M3 DType = "F8_E4M3"
	F8E8M0 DType = "F8_E8M0"
	F6E2M3 DType = "F6_E2M3"
	F6E3M2 DType = "F6_E3M2"
	F4     DType = "F4"
)

// dtypeBits is the size of one element of each known dtype, in bits.
var dtypeBits = map[DType]int64{
	BOOL: 8, U8: 8, I8: 8, F8E5M2: 8, F8E4M3: 8, F8E8M0: 8,
	I16: 16, U16: 16, F16: 16, BF16: 16,
	I32: 32, U32: 32, F32: 32,
	I64: 64, U64: 64, F64: 64, C64: 64,
	F6E2M3: 6, F6E3M2: 6, F4: 4,
}

// Bits returns the size of one element in bits (4 for F4, 16 for BF16), or 0
// for a dtype this package does not know.
func (d DType) Bits() int { return int(dtypeBits[d]) }

// Info describes one tensor of a file.
type Info struct {
	Name  string
	DType DType
	Shape []int // row-major; [] for a scalar
	// Begin and End are byte offsets into the data section, End exclusive;
	// the data section starts 8+N bytes into the file.
	Begin, End int64
}

// NumElements returns the product of the shape (1 for a scalar).
func (i Info) NumElements() int {
	n := 1
	for _, d := range i.Shape {
		n *= d // cannot overflow: Parse checked the product
	}
	return n
}

// A FormatError reports a problem with a file rather than with reading it:
// a header that is malformed or hostile, a file shorter than its header
// says, or (from [File.Float32]) a tensor the file lacks or holds in a dtype
// that cannot be read as float32. I/O errors are returned wrapped as they
// are, not as a FormatError.
type FormatError struct {
	File   string // the name given to Open; "" after Parse
	Tensor string // "" when the error is not about one tensor
	Msg    string
}

// Error returns "safetensors: FILE: tensor "NAME": MSG", leaving out the
// parts that are empty.
func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString("safetensors: ")
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Tensor != "" {
		fmt.Fprintf(&b, "tensor %q: ", e.Tensor)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// File is a parsed safetensors file: its header, and the reader its tensor
// data is read from. Its methods are safe for concurrent use when the
// reader's ReadAt is, as io.ReaderAt requires (an *os.File's is).
type File struct {
	name     string
	r        io.ReaderAt
	closer   io.Closer // from Open; nil after Parse
	dataOff  int64     // file offset of the data section: 8 + N
	tensors  []Info    // in data-offset order
	index    map[string]int
	metadata map[string]string
}

// Open opens name in fsys and parses its header; tensor data is read later,
// by [File.Float32], through the opened file's ReadAt. [File.Close] closes
// the file. A file that does not implement io.ReaderAt is read into memory.
// Errors name the file; a malformed file gives a [*FormatError].
func Open(fsys fs.FS, name string) (*File, error) {
	fl, err := fsys.Open(name)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	f, err := open(fl, name)
	if err != nil {
		fl.Close()
		return nil, err
	}
	return f, nil
}

func open(fl fs.File, name string) (*File, error) {
	st, err := fl.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", name, err)
	}
	size := st.Size()
	r, ok := fl.(io.ReaderAt)
	if !ok {
		// Read at most size+1 bytes, so a file that lies about its size
		// cannot make us allocate more than it said.
		buf, err := io.ReadAll(io.LimitReader(fl, size+1))
		if err != nil {
			return nil, fmt.Errorf("safetensors: %s: %w", name, err)
		}
		if int64(len(buf)) != size {
			return nil, &FormatError{File: name, Msg: fmt.Sprintf("read %d bytes, stat says %d", len(buf), size)}
		}
		r = bytes.NewReader(buf)
	}
	f, err := parse(r, size, name)
	if err != nil {
		return nil, err
	}
	f.closer = fl
	return f, nil
}

// Parse parses the header of a safetensors file of size bytes read through
// r. It reads only the header; tensor data is read by [File.Float32]. The
// header must be a JSON object of at most [MaxHeaderSize] bytes; each tensor
// needs a known dtype, non-negative dims, and data_offsets within the file
// whose length equals the shape's byte size; tensors must be contiguous and
// cover the data section; names must be unique. Otherwise it returns a
// [*FormatError], naming the tensor where there is one. Parse never
// allocates more than a small multiple of the header length, itself checked
// against size before it is read.
func Parse(r io.ReaderAt, size int64) (*File, error) {
	return parse(r, size, "")
}

// parse is Parse, with errors naming the file.
func parse(r io.ReaderAt, size int64, name string) (*File, error) {
	bad := func(tensor, format string, args ...any) error {
		return &FormatError{File: name, Tensor: tensor, Msg: fmt.Sprintf(format, args...)}
	}
	if size < 8 {
		return nil, bad("", "file is %d bytes, shorter than the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if err := readAt(r, lenBuf[:], 0); err != nil {
		return nil, ioError(name, "", "reading header length", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > MaxHeaderSize {
		return nil, bad("", "header length %d exceeds the limit of %d bytes", n, MaxHeaderSize)
	}
	if n > uint64(size-8) {
		return nil, bad("", "header length %d exceeds the %d bytes after the length field", n, size-8)
	}
	header := make([]byte, n) // n <= size-8 and <= MaxHeaderSize
	if err := readAt(r, header, 8); err != nil {
		return nil, ioError(name, "", "reading header", err)
	}
	dataSize := size - 8 - int64(n)
	tensors, metadata, err := parseHeader(header, dataSize, bad)
	if err != nil {
		return nil, err
	}
	f := &File{
		name:     name,
		r:        r,
		dataOff:  8 + int64(n),
		tensors:  tensors,
		index:    make(map[string]int, len(tensors)),
		metadata: metadata,
	}
	for i, t := range tensors {
		f.index[t.Name] = i
	}
	return f, nil
}

// parseHeader decodes and validates the JSON header of a file whose data
// section is dataSize bytes. It returns the tensors in data-offset order.
func parseHeader(header []byte, dataSize int64, bad func(tensor, format string, args ...any) error) ([]Info, map[string]string, error) {
	if !utf8.Valid(header) {
		return nil, nil, bad("", "header is not valid UTF-8")
	}
	// Decode token by token rather than into a map, to see duplicate names
	// and to name the tensor whose entry is malformed.
	dec := json.NewDecoder(bytes.NewReader(header))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		if err == nil {
			err = fmt.Errorf("got %v, want a JSON object", tok)
		}
		return nil, nil, bad("", "header: %v", err)
	}
	var (
		tensors  []Info
		metadata map[string]string
		seen     = make(map[string]bool)
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, bad("", "header: %v", err)
		}
		key, ok := tok.(string)
		if !ok { // unreachable: object keys are strings
			return nil, nil, bad("", "header: unexpected %v", tok)
		}
		if seen[key] {
			return nil, nil, bad(key, "appears twice in the header")
		}
		seen[key] = true
		if key == metadataKey {
			if err := dec.Decode(&metadata); err != nil {
				return nil, nil, bad("", "header: %s: %v", metadataKey, err)
			}
			continue
		}
		// A map, not a struct: encoding/json matches struct fields without
		// regard to case, and serde (so the Rust crate) does not.
		var entry map[string]json.RawMessage
		if err := dec.Decode(&entry); err != nil {
			return nil, nil, bad(key, "header entry: %v", err)
		}
		info, err := checkInfo(key, entry, dataSize, bad)
		if err != nil {
			return nil, nil, err
		}
		tensors = append(tensors, info)
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, nil, bad("", "header: %v", err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = fmt.Errorf("unexpected %v after the header object", tok)
		}
		return nil, nil, bad("", "header: %v", err)
	}

	// Contiguous, non-overlapping, covering the data section; sorted as the
	// Rust crate does, so zero-size tensors may sit anywhere.
	slices.SortStableFunc(tensors, func(a, b Info) int {
		if c := cmp.Compare(a.Begin, b.Begin); c != 0 {
			return c
		}
		return cmp.Compare(a.End, b.End)
	})
	var off int64
	for _, t := range tensors {
		if t.Begin != off {
			what := "overlaps the previous tensor"
			if t.Begin > off {
				what = "leaves a gap after the previous tensor"
			}
			return nil, nil, bad(t.Name, "data_offsets [%d, %d] %s, which ends at %d", t.Begin, t.End, what, off)
		}
		off = t.End
	}
	if off != dataSize {
		return nil, nil, bad("", "tensors cover %d bytes of the %d-byte data section", off, dataSize)
	}
	return tensors, metadata, nil
}

// checkInfo decodes and validates one header entry against a data section
// of dataSize bytes.
func checkInfo(name string, entry map[string]json.RawMessage, dataSize int64, bad func(tensor, format string, args ...any) error) (Info, error) {
	var (
		dtype          string
		shape, offsets []int64
	)
	for _, f := range []struct {
		key string
		v   any
	}{{"dtype", &dtype}, {"shape", &shape}, {"data_offsets", &offsets}} {
		raw, ok := entry[f.key]
		if !ok || string(raw) == "null" {
			return Info{}, bad(name, "missing %q", f.key)
		}
		if err := json.Unmarshal(raw, f.v); err != nil {
			return Info{}, bad(name, "%s: %v", f.key, err)
		}
	}
	dt := DType(dtype)
	nbits := dtypeBits[dt]
	if nbits == 0 {
		return Info{}, bad(name, "unknown dtype %q", dtype)
	}
	if len(offsets) != 2 {
		return Info{}, bad(name, "data_offsets has %d numbers, want 2", len(offsets))
	}
	begin, end := offsets[0], offsets[1]
	if begin < 0 || end < begin || end > dataSize {
		return Info{}, bad(name, "data_offsets [%d, %d] outside the %d-byte data section", begin, end, dataSize)
	}
	// The element count and bit count as the Rust crate checks them: a
	// product that overflows is an error even if a later dim is 0.
	dims := make([]int, len(shape)) // len <= header length
	elems := uint64(1)
	for i, d := range shape {
		if d < 0 || uint64(d) > math.MaxInt {
			return Info{}, bad(name, "shape %v has dim %d out of range", shape, d)
		}
		dims[i] = int(d)
		hi, lo := bits.Mul64(elems, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return Info{}, bad(name, "shape %v: element count overflows", shape)
		}
		elems = lo
	}
	hi, totalBits := bits.Mul64(elems, uint64(nbits))
	if hi != 0 || totalBits > math.MaxInt64 {
		return Info{}, bad(name, "shape %v of %s: size in bits overflows", shape, dt)
	}
	if totalBits%8 != 0 {
		return Info{}, bad(name, "shape %v of %s is %d bits, not a whole number of bytes", shape, dt, totalBits)
	}
	if int64(totalBits/8) != end-begin {
		return Info{}, bad(name, "shape %v of %s is %d bytes, data_offsets [%d, %d] hold %d", shape, dt, totalBits/8, begin, end, end-begin)
	}
	return Info{Name: name, DType: dt, Shape: dims, Begin: begin, End: end}, nil
}

// readAt fills p from r at off. A full read is a success even with io.EOF,
// which io.ReaderAt allows at the end of the input (and some readers
// return for an empty p there); a short read without an error is
// io.ErrUnexpectedEOF.
func readAt(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// ioError wraps an I/O error with the file, the tensor and what was being
// done. A short read (io.EOF) means the file shrank below the size given to
// Parse, and is reported as a FormatError.
func ioError(file, tensor, doing string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &FormatError{File: file, Tensor: tensor, Msg: doing + ": file is truncated"}
	}
	prefix := "safetensors: "
	if file != "" {
		prefix += file + ": "
	}
	if tensor != "" {
		prefix += fmt.Sprintf("tensor %q: ", tensor)
	}
	return fmt.Errorf("%s%s: %w", prefix, doing, err)
}

// Name returns the name the file was opened with, or "" after Parse.
func (f *File) Name() string { return f.name }

// Tensors returns the tensors in data-offset order, which is the order
// their data is laid out in the file. The slice and shapes are copies.
func (f *File) Tensors() []Info {
	out := make([]Info, len(f.tensors))
	for i, t := range f.tensors {
		t.Shape = slices.Clone(t.Shape)
		out[i] = t
	}
	return out
}

// Info returns the description of the named tensor, and whether the file
// has it.
func (f *File) Info(name string) (Info, bool) {
	i, ok := f.index[name]
	if !ok {
		return Info{}, false
	}
	t := f.tensors[i]
	t.Shape = slices.Clone(t.Shape)
	return t, true
}

// Metadata returns a copy of the header's "__metadata__" entry, or nil when
// the file has none.
func (f *File) Metadata() map[string]string { return maps.Clone(f.metadata) }

// chunkBytes is how much tensor data Float32 reads at a time.
const chunkBytes = 64 << 10

// Float32 reads the named tensor and returns its NumElements values in
// row-major order. F32 data is returned as stored; BF16 and F16 are
// converted to float32 exactly (every BF16 and F16 value, subnormals,
// infinities and NaNs included, is a float32). Other dtypes, an unknown
// name, and I/O errors give an error naming the file and tensor.
func (f *File) Float32(name string) ([]float32, error) {
	i, ok := f.index[name]
	if !ok {
		return nil, &FormatError{File: f.name, Tensor: name, Msg: "no such tensor"}
	}
	t := f.tensors[i]
	var (
		size   int64
		decode func(dst []float32, src []byte)
	)
	switch t.DType {
	case F32:
		size, decode = 4, decodeF32
	case BF16:
		size, decode = 2, decodeBF16
	case F16:
		size, decode = 2, decodeF16
	default:
		return nil, &FormatError{File: f.name, Tensor: name, Msg: fmt.Sprintf("dtype %s cannot be read as float32 (want F32, BF16 or F16)", t.DType)}
	}
	n := (t.End - t.Begin) / size // checked against the file size by Parse
	out := make([]float32, n)
	buf := make([]byte, min(chunkBytes, t.End-t.Begin))
	per := int64(len(buf)) / size
	for j := int64(0); j < n; j += per {
		k := min(per, n-j)
		b := buf[:k*size]
		if err := readAt(f.r, b, f.dataOff+t.Begin+j*size); err != nil {
			return nil, ioError(f.name, name, "reading data", err)
		}
		decode(out[j:j+k], b)
	}
	return out, nil
}

// Close closes the file opened by [Open]. After [Parse] it does nothing:
// the caller owns the reader.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	return f.closer.Close()
}
