package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Tensor is one tensor to [Write].
type Tensor struct {
	Name  string
	Shape []int     // row-major; [] for a scalar
	Data  []float32 // len(Data) is the product of Shape
	// DType is the dtype stored: F32 (or "") writes Data as is; BF16 and F16
	// round each value to nearest, ties to even (BF16 as PyTorch's
	// tensor.to(torch.bfloat16) does), overflow going to ±Inf.
	DType DType
}

// Write writes a safetensors file holding tensors, in the given order, with
// contiguous data offsets, and metadata as its "__metadata__" entry (omitted
// when empty; keys sorted). As the Rust crate does, the JSON header is padded
// with spaces to a multiple of 8 bytes, so the data section is 8-byte aligned.
// It returns an error naming the tensor for a name that is empty, repeated,
// "__metadata__" or not UTF-8, a negative dim, a len(Data) that does not
// match the shape, or a dtype other than F32, BF16 and F16; and write errors
// from w, after which w holds a partial file.
func Write(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("safetensors: write: metadata %q: not valid UTF-8", k)
		}
	}
	var h bytes.Buffer
	h.WriteByte('{')
	if len(metadata) > 0 {
		writeJSONString(&h, metadataKey)
		h.WriteString(":{")
		for i, k := range slices.Sorted(maps.Keys(metadata)) {
			if i > 0 {
				h.WriteByte(',')
			}
			writeJSONString(&h, k)
			h.WriteByte(':')
			writeJSONString(&h, metadata[k])
		}
		h.WriteByte('}')
	}
	seen := make(map[string]bool, len(tensors))
	var off int64
	for i, t := range tensors {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("safetensors: write tensor %q: %s", t.Name, fmt.Sprintf(format, args...))
		}
		switch {
		case t.Name == "":
			return fmt.Errorf("safetensors: write tensor %d: empty name", i)
		case !utf8.ValidString(t.Name):
			return bad("name is not valid UTF-8")
		case t.Name == metadataKey:
			return bad("name is reserved for metadata")
		case seen[t.Name]:
			return bad("name appears twice")
		}
		seen[t.Name] = true
		n := 1
		for _, d := range t.Shape {
			if d < 0 {
				return bad("shape %v has a negative dim", t.Shape)
			}
			if d != 0 && n > math.MaxInt/d {
				return bad("shape %v: element count overflows", t.Shape)
			}
			n *= d
		}
		if n != len(t.Data) {
			return bad("shape %v has %d elements, Data has %d", t.Shape, n, len(t.Data))
		}
		dt := t.DType
		if dt == "" {
			dt = F32
		}
		if dt != F32 && dt != BF16 && dt != F16 {
			return bad("cannot write dtype %s (want F32, BF16 or F16)", dt)
		}
		end := off + int64(n)*dtypeBits[dt]/8
		if len(metadata) > 0 || i > 0 {
			h.WriteByte(',')
		}
		writeJSONString(&h, t.Name)
		fmt.Fprintf(&h, `:{"dtype":"%s","shape":[`, dt)
		for j, d := range t.Shape {
			if j > 0 {
				h.WriteByte(',')
			}
			h.WriteString(strconv.Itoa(d))
		}
		fmt.Fprintf(&h, `],"data_offsets":[%d,%d]}`, off, end)
		off = end
	}
	h.WriteByte('}')
	for h.Len()%8 != 0 {
		h.WriteByte(' ')
	}
	if h.Len() > MaxHeaderSize {
		return fmt.Errorf("safetensors: write: header of %d bytes exceeds the limit of %d", h.Len(), MaxHeaderSize)
	}

	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(h.Len()))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return fmt.Errorf("safetensors: write header: %w", err)
	}
	if _, err := w.Write(h.Bytes()); err != nil {
		return fmt.Errorf("safetensors: write header: %w", err)
	}
	buf := make([]byte, 0, chunkBytes)
	for _, t := range tensors {
		for j, x := range t.Data {
			switch t.DType {
			case BF16:
				buf = binary.LittleEndian.AppendUint16(buf, bf16FromFloat32(x))
			case F16:
				buf = binary.LittleEndian.AppendUint16(buf, f16FromFloat32(x))
			default:
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
			}
			if len(buf) >= chunkBytes-4 || j == len(t.Data)-1 {
				if _, err := w.Write(buf); err != nil {
					return fmt.Errorf("safetensors: write tensor %q: %w", t.Name, err)
				}
				buf = buf[:0]
			}
		}
	}
	return nil
}

// writeJSONString writes s as a JSON string, without escaping <, > and &
// as json.Marshal would.
func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)           // cannot fail for a string
	b.Truncate(b.Len() - 1) // the newline Encode adds
}
