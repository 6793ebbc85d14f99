package engine_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modeld-dev/modeld/internal/engine"
)

// recorder is an engine.Observer that keeps what it is told. hold, if set, is closed at the
// first NextToken, which then waits for release.
type recorder struct {
	mu            sync.Mutex
	admitted      []int // prompt tokens
	first, next   int
	finished      []engine.Finish
	hold, release chan struct{}
}

func (r *recorder) Admitted(_ time.Duration, promptTokens int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.admitted = append(r.admitted, promptTokens)
}

func (r *recorder) FirstToken(time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.first++
}

func (r *recorder) NextToken(time.Duration) {
	r.mu.Lock()
	r.next++
	hold := r.hold
	r.hold = nil
	r.mu.Unlock()
	if hold != nil {
		close(hold)
		<-r.release
	}
}

func (r *recorder) Finished(f engine.Finish) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finished = append(r.finished, f)
}

// TestObserverSeesEveryEvent: a request of n = 2 is admitted once with its prompt, and each
// sequence has one first token, a next token for each later one, and one finish.
func TestObserverSeesEveryEvent(t *testing.T) {
	rec := &recorder{}
	e := newEngine(t, engine.Config{Observer: rec})
	out := generate(t, e, engine.Request{Prompt: []int32{1, 2, 3}, MaxNewTokens: 4, N: 2, Sampling: greedy(), IgnoreEOS: true})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if diff := cmp.Diff([]int{3}, rec.admitted); diff != "" {
		t.Errorf("admissions (-want +got):\n%s", diff)
	}
	if rec.first != 2 || rec.next != 2*3 {
		t.Errorf("%d first and %d next tokens, want 2 and 6", rec.first, rec.next)
	}
	if len(rec.finished) != 2 {
		t.Fatalf("%d finishes, want 2", len(rec.finished))
	}
	for i, f := range rec.finished {
		if f.Reason != engine.FinishLength || f.CompletionTokens != 4 || f.TTFT <= 0 || f.Total < f.TTFT {
			t.Errorf("finish %d = %+v, want length after 4 tokens", i, f)
		}
	}
	if *out[0].finish != rec.finished[0] && *out[0].finish != rec.finished[1] {
		t.Errorf("streamed finish %+v is not among the observed %+v", *out[0].finish, rec.finished)
	}
}

// TestObserverSeesCancellation holds the engine at the request's second token, cancels it, and
// sees its sequence finish as cancelled, with every token it generated counted.
func TestObserverSeesCancellation(t *testing.T) {
	rec := &recorder{hold: make(chan struct{}), release: make(chan struct{})}
	hold := rec.hold
	e := newEngine(t, engine.Config{Observer: rec})
	ctx, cancel := context.WithCancel(t.Context())
	s, err := e.Submit(ctx, engine.Request{Prompt: []int32{1, 2, 3}, MaxNewTokens: 20, Sampling: greedy(), IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	<-hold
	cancel()
	close(rec.release)
	for {
		if _, err := s.Recv(t.Context()); err != nil {
			break // io.EOF, or the cancellation
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.finished) != 1 || rec.finished[0].Reason != engine.FinishCancelled {
		t.Fatalf("finishes %+v, want one cancelled", rec.finished)
	}
	if got, want := rec.first+rec.next, rec.finished[0].CompletionTokens; got != want || got >= 20 {
		t.Errorf("%d tokens observed, the finish says %d (of at most 20)", got, want)
	}
}
