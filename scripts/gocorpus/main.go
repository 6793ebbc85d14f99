// Command gocorpus writes the training corpus of modeld's built-in model: the Go source files
// of the Go distribution on this machine ($(go env GOROOT)/src, BSD-licensed, present on every
// machine that builds modeld), in a fixed order, separated by <|endoftext|>.
//
//	go run ./scripts/gocorpus -o data/go-corpus.txt -max-mib 24
//
// Test data, vendored code and generated files are left out. Files are taken in sorted path
// order, every -stride'th one, until -max-mib MiB are written, so the corpus is the same on
// every machine with the same Go version.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

func main() {
	out := flag.String("o", "go-corpus.txt", "output file")
	maxMiB := flag.Int("max-mib", 24, "stop after this many MiB")
	stride := flag.Int("stride", 2, "take every stride'th file in path order")
	flag.Parse()
	if err := run(*out, int64(*maxMiB)<<20, *stride); err != nil {
		fmt.Fprintln(os.Stderr, "gocorpus:", err)
		os.Exit(1)
	}
}

func run(out string, max int64, stride int) error {
	root := filepath.Join(runtime.GOROOT(), "src")
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "vendor") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	var n int64
	kept := 0
	for i, path := range files {
		if i%stride != 0 || n >= max {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data[:min(len(data), 1024)], []byte("Code generated")) || bytes.Contains(data, []byte("<|endoftext|>")) {
			continue
		}
		w.Write(data)
		w.WriteString("<|endoftext|>")
		n += int64(len(data))
		kept++
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "gocorpus: %d of %d files, %d bytes, from %s (%s)\n", kept, len(files), n, root, runtime.Version())
	return f.Close()
}
