package engine

import (
	"context"
	"io"
	"sync"
)

// Stream delivers a request's chunks from the engine's loop to the handler. The loop never
// waits for the handler: chunks queue in the Stream until Recv takes them, so a slow client
// delays only itself.
type Stream struct {
	mu     sync.Mutex
	chunks []Chunk
	closed bool  // every sequence finished
	err    error // the request failed
	notify chan struct{}
}

func newStream() *Stream { return &Stream{notify: make(chan struct{}, 1)} }

// Recv returns the chunks queued since the last call, in order, waiting for at least one. It
// returns io.EOF once every sequence has finished and its chunks were taken, the request's
// error if it failed (ErrClosed, or the context's error for a request cancelled while waiting),
// or ctx's error.
func (s *Stream) Recv(ctx context.Context) ([]Chunk, error) {
	for {
		s.mu.Lock()
		switch {
		case len(s.chunks) > 0:
			c := s.chunks
			s.chunks = nil
			s.mu.Unlock()
			return c, nil
		case s.err != nil:
			err := s.err
			s.mu.Unlock()
			return nil, err
		case s.closed:
			s.mu.Unlock()
			return nil, io.EOF
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.notify:
		}
	}
}

func (s *Stream) wakeUp() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *Stream) push(c Chunk) {
	s.mu.Lock()
	s.chunks = append(s.chunks, c)
	s.mu.Unlock()
	s.wakeUp()
}

func (s *Stream) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.wakeUp()
}

func (s *Stream) fail(err error) {
	s.mu.Lock()
	if !s.closed && s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.wakeUp()
}
