package main

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// The flag.Value types of the request fields the standard flags do not cover. Each String
// method works on the zero value, as flag.PrintDefaults requires.

// uint32Flag is a uint32 field.
type uint32Flag struct{ p *uint32 }

func (f uint32Flag) String() string {
	if f.p == nil {
		return "0"
	}
	return strconv.FormatUint(uint64(*f.p), 10)
}

func (f uint32Flag) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return fmt.Errorf("want an integer in [0, %d]", uint32(1<<32-1))
	}
	*f.p = uint32(v)
	return nil
}

// float32Flag is a float field.
type float32Flag struct{ p *float32 }

func (f float32Flag) String() string {
	if f.p == nil {
		return "0"
	}
	return strconv.FormatFloat(float64(*f.p), 'g', -1, 32)
}

func (f float32Flag) Set(s string) error {
	v, err := strconv.ParseFloat(s, 32)
	if err != nil {
		return fmt.Errorf("want a number")
	}
	*f.p = float32(v)
	return nil
}

// stringsFlag is a repeated string field: each use of the flag adds one.
type stringsFlag struct{ p *[]string }

func (f stringsFlag) String() string {
	if f.p == nil {
		return ""
	}
	return strings.Join(*f.p, ",")
}

func (f stringsFlag) Set(s string) error {
	*f.p = append(*f.p, s)
	return nil
}

// idsFlag is a repeated int32 field given as a comma-separated list, "1,2,3"; uses add up.
type idsFlag struct{ p *[]int32 }

func (f idsFlag) String() string {
	if f.p == nil {
		return ""
	}
	return formatIDs(*f.p, ",")
}

func (f idsFlag) Set(s string) error {
	for field := range strings.SplitSeq(s, ",") {
		v, err := strconv.ParseInt(strings.TrimSpace(field), 10, 32)
		if err != nil {
			return fmt.Errorf("%q: want comma-separated token ids, e.g. 1,2,3", field)
		}
		*f.p = append(*f.p, int32(v))
	}
	return nil
}

// biasFlag is SamplingParams.logit_bias, given as "ID=BIAS,ID=BIAS"; uses add up.
type biasFlag struct{ p *map[int32]float32 }

func (f biasFlag) String() string {
	if f.p == nil || len(*f.p) == 0 {
		return ""
	}
	var parts []string
	for _, id := range slices.Sorted(maps.Keys(*f.p)) {
		parts = append(parts, fmt.Sprintf("%d=%g", id, (*f.p)[id]))
	}
	return strings.Join(parts, ",")
}

func (f biasFlag) Set(s string) error {
	if *f.p == nil {
		*f.p = map[int32]float32{}
	}
	for field := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(field), "=")
		id, err1 := strconv.ParseInt(k, 10, 32)
		bias, err2 := strconv.ParseFloat(v, 32)
		if !ok || err1 != nil || err2 != nil {
			return fmt.Errorf("%q: want ID=BIAS pairs, e.g. 50256=-100,13=5", field)
		}
		(*f.p)[int32(id)] = float32(bias)
	}
	return nil
}

// formatIDs joins token ids with sep.
func formatIDs(ids []int32, sep string) string {
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(strconv.FormatInt(int64(id), 10))
	}
	return b.String()
}
