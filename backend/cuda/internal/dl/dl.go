// Package dl finds and opens the CUDA shared libraries at run time with purego, so that modeld
// builds with CGO_ENABLED=0 on any machine and uses a GPU only where one is present.
//
// Libraries are searched, in order, in LD_LIBRARY_PATH, $CUDA_HOME/lib64 and $CUDA_PATH/lib64,
// /usr/local/cuda*/lib64, the lib folders of pip's nvidia-* packages (site-packages/nvidia/*/lib),
// and finally by bare name through the system loader (ld.so.cache: /usr/lib/x86_64-linux-gnu...).
package dl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ebitengine/purego"
)

// ErrNotFound is returned (wrapped) when none of the requested library names can be opened.
var ErrNotFound = errors.New("library not found")

// Lib is an opened shared library.
type Lib struct {
	// Path is what was passed to dlopen: an absolute path, or a bare name the system loader resolved.
	Path   string
	handle uintptr
}

// SearchDirs lists the folders searched before the system loader's own path, in order.
func SearchDirs() []string {
	var dirs []string
	for _, d := range filepath.SplitList(os.Getenv("LD_LIBRARY_PATH")) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	for _, env := range []string{"CUDA_HOME", "CUDA_PATH"} {
		if h := os.Getenv(env); h != "" {
			dirs = append(dirs, filepath.Join(h, "lib64"), filepath.Join(h, "lib"))
		}
	}
	cuda, _ := filepath.Glob("/usr/local/cuda*/lib64")
	sort.Sort(sort.Reverse(sort.StringSlice(cuda))) // newest toolkit first
	dirs = append(dirs, cuda...)
	patterns := []string{
		"/usr/lib/python3*/site-packages/nvidia/*/lib",
		"/usr/local/lib/python3*/dist-packages/nvidia/*/lib",
		"/usr/local/lib/python3*/site-packages/nvidia/*/lib",
	}
	// An unset HOME or VIRTUAL_ENV adds nothing: joined with "", the pattern would be relative
	// and load libraries from the working folder.
	for _, p := range []struct{ env, rel string }{
		{"HOME", ".local/lib/python3*/site-packages/nvidia/*/lib"},
		{"VIRTUAL_ENV", "lib/python3*/site-packages/nvidia/*/lib"},
	} {
		if h := os.Getenv(p.env); h != "" {
			patterns = append(patterns, filepath.Join(h, p.rel))
		}
	}
	for _, pattern := range patterns {
		m, _ := filepath.Glob(pattern)
		dirs = append(dirs, m...)
	}
	return dirs
}

// Open opens the first of names that exists, trying each name in every search folder and then by
// bare name through the system loader. Symbols are bound globally (RTLD_GLOBAL) so that a library
// opened later (libcublas) finds one opened earlier (libcublasLt). The error wraps ErrNotFound and
// lists what was tried.
func Open(names ...string) (*Lib, error) {
	var tried []string
	dirs := SearchDirs()
	for _, name := range names {
		for _, dir := range dirs {
			p := filepath.Join(dir, name)
			if _, err := os.Stat(p); err != nil {
				continue
			}
			h, err := purego.Dlopen(p, purego.RTLD_NOW|purego.RTLD_GLOBAL)
			if err == nil {
				return &Lib{Path: p, handle: h}, nil
			}
			tried = append(tried, fmt.Sprintf("%s: %v", p, err))
		}
		h, err := purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err == nil {
			return &Lib{Path: name, handle: h}, nil
		}
		tried = append(tried, name)
	}
	return nil, fmt.Errorf("%w: %s (tried %s)", ErrNotFound, strings.Join(names, ", "), strings.Join(tried, "; "))
}

// Bind looks up the first of syms that the library exports and makes *fnptr (a pointer to a Go
// func variable with the C function's signature) call it. List "_v2" names before the plain one.
// A missing symbol is an error, never a panic; it returns the name bound.
func (l *Lib) Bind(fnptr any, syms ...string) (string, error) {
	for _, s := range syms {
		addr, err := purego.Dlsym(l.handle, s)
		if err != nil || addr == 0 {
			continue
		}
		purego.RegisterFunc(fnptr, addr)
		return s, nil
	}
	return "", fmt.Errorf("%s: no symbol %s", l.Path, strings.Join(syms, " or "))
}

// Has reports whether the library exports sym.
func (l *Lib) Has(sym string) bool {
	addr, err := purego.Dlsym(l.handle, sym)
	return err == nil && addr != 0
}
