package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestHandlerLogsCarryCallFields checks that what a handler logs with the call's context (here
// toStatus's line for an Internal error) carries the fields the interceptors put there.
func TestHandlerLogsCarryCallFields(t *testing.T) {
	var buf bytes.Buffer
	s := New(Options{Log: slog.New(slog.NewTextHandler(&buf, nil))})
	ctx := logging.InjectFields(context.Background(), logging.Fields{"request_id", "r-1", "grpc.method", "Generate"})
	err := toStatus(ctx, s.log, errors.New("boom"))
	if status.Code(err) != codes.Internal {
		t.Fatalf("toStatus = %v, want Internal", err)
	}
	line := buf.String()
	for _, want := range []string{`msg="internal error"`, "err=boom", "request_id=r-1", "grpc.method=Generate"} {
		if !strings.Contains(line, want) {
			t.Errorf("log line %q lacks %s", line, want)
		}
	}
}

// TestLimiterSweep checks that the per-client buckets do not grow without bound: a bucket that
// has refilled is forgotten when the map is swept, one still in use is kept.
func TestLimiterSweep(t *testing.T) {
	client := func(i int) context.Context {
		return context.WithValue(context.Background(), clientKey{}, fmt.Sprint("c", i))
	}
	fast := newLimiter(1e12, 1) // refills at once
	for i := range 1025 {
		if err := fast.Limit(client(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(fast.clients); n != 1 {
		t.Errorf("refilled buckets: %d clients kept after the sweep, want 1 (the newest)", n)
	}
	slow := newLimiter(1e-9, 1) // never refills
	for i := range 1025 {
		if err := slow.Limit(client(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n, at := len(slow.clients), slow.sweepAt; n != 1025 || at != 2048 {
		t.Errorf("busy buckets: %d clients, next sweep at %d; want 1025 and 2048", n, at)
	}
	if err := slow.Limit(client(0)); err == nil {
		t.Error("client 0's second call passed the limit")
	}
}

func TestSaneRequestID(t *testing.T) {
	for id, want := range map[string]bool{
		"abc": true, "req-1.2_3:4/5+6=7": true, strings.Repeat("a", 128): true,
		"": false, strings.Repeat("a", 129): false, "a b": false, "a\nb": false, `a"b`: false, "é": false,
	} {
		if got := SaneRequestID(id); got != want {
			t.Errorf("SaneRequestID(%q) = %v, want %v", id, got, want)
		}
	}
}
