package dl

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestOpenMissingLibrary(t *testing.T) {
	_, err := Open("libmodeld-does-not-exist.so.1")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open of a missing library: err = %v, want ErrNotFound", err)
	}
}

func TestBindMissingSymbol(t *testing.T) {
	l, err := Open("libc.so.6")
	if err != nil {
		t.Skipf("no libc.so.6 on this system: %v", err)
	}
	var strlen func(string) uintptr
	if _, err := l.Bind(&strlen, "modeld_no_such_symbol"); err == nil {
		t.Fatal("Bind of a missing symbol succeeded")
	}
	name, err := l.Bind(&strlen, "modeld_no_such_symbol", "strlen")
	if err != nil || name != "strlen" {
		t.Fatalf("Bind fallback: %q, %v", name, err)
	}
	if n := strlen("modeld"); n != 6 {
		t.Fatalf("strlen through purego = %d, want 6", n)
	}
	if !l.Has("strlen") || l.Has("modeld_no_such_symbol") {
		t.Fatal("Has disagrees with the symbol table")
	}
}

// TestSearchDirsUnsetEnv checks that an unset HOME or VIRTUAL_ENV adds no relative folder, which
// would make Open load libraries from the working folder.
func TestSearchDirsUnsetEnv(t *testing.T) {
	dir := t.TempDir()
	for _, rel := range []string{".local/lib/python3.9/site-packages/nvidia/cublas/lib", "lib/python3.9/site-packages/nvidia/cublas/lib"} {
		if err := os.MkdirAll(filepath.Join(dir, rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	t.Setenv("HOME", "")
	t.Setenv("VIRTUAL_ENV", "")
	t.Setenv("LD_LIBRARY_PATH", "")
	for _, d := range SearchDirs() {
		if !filepath.IsAbs(d) {
			t.Errorf("SearchDirs() has the relative folder %q", d)
		}
	}
	t.Setenv("VIRTUAL_ENV", dir)
	if want := filepath.Join(dir, "lib/python3.9/site-packages/nvidia/cublas/lib"); !slices.Contains(SearchDirs(), want) {
		t.Errorf("SearchDirs() = %v, want it to hold %s", SearchDirs(), want)
	}
}
