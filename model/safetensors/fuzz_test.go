package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse. It must return a *FormatError
// or a File whose tensors tile the data section, whose float tensors read
// with the right length, and which Write reproduces.
func FuzzParse(f *testing.F) {
	for _, name := range []string{oracleF32, oracleBF16} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:8+binary.LittleEndian.Uint64(b)]) // the real header, without its data
	}
	f.Add(smallFile(f))
	for _, c := range hostileCases {
		f.Add(c.file)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := parseBytes(b)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FormatError", err)
			}
			return
		}
		infos := file.Tensors()
		var off int64
		var tensors []Tensor
		for _, info := range infos {
			if info.Begin != off || info.End < info.Begin {
				t.Fatalf("tensor %q at [%d, %d], want it to begin at %d", info.Name, info.Begin, info.End, off)
			}
			off = info.End
			x, err := file.Float32(info.Name)
			switch info.DType {
			case F32, BF16, F16:
				if err != nil {
					t.Fatalf("Float32(%q): %v", info.Name, err)
				}
				if len(x) != info.NumElements() {
					t.Fatalf("Float32(%q) = %d values, want %d", info.Name, len(x), info.NumElements())
				}
				tensors = append(tensors, Tensor{Name: info.Name, Shape: info.Shape, Data: x, DType: info.DType})
			default:
				if err == nil {
					t.Fatalf("Float32(%q) of %s succeeded", info.Name, info.DType)
				}
			}
		}
		if len(tensors) != len(infos) {
			return
		}
		var buf bytes.Buffer
		if err := Write(&buf, tensors, file.Metadata()); err != nil {
			t.Fatalf("Write: %v", err)
		}
		again, err := parseBytes(buf.Bytes())
		if err != nil {
			t.Fatalf("Parse(Write(Parse(b))): %v", err)
		}
		for _, x := range tensors {
			y, err := again.Float32(x.Name)
			if err != nil {
				t.Fatal(err)
			}
			for i := range y {
				if !sameBits(x.Data[i], y[i]) {
					t.Fatalf("%s[%d]: %v rewritten as %v", x.Name, i, x.Data[i], y[i])
				}
			}
		}
	})
}
