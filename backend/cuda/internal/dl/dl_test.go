package dl

import (
	"errors"
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
