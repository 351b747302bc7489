package router

import (
	"errors"
	"io"
	"sync"
)

// replayLimit is the most request body kept for a retry to send again, as Envoy keeps a
// request's body for retries up to its buffer limit. A longer body that was partly sent
// cannot be retried.
const replayLimit = 1 << 20

// replay is the request body as attempts send it. It keeps what it read, up to its limit,
// so that an attempt after a failed one sends the whole body again: first what was kept,
// then the rest of the source. Each attempt reads through its own reader, which stops
// working when the next attempt starts: a transport still reading a failed attempt's body
// from its own goroutine cannot steal the next attempt's bytes.
type replay struct {
	mu       sync.Mutex
	src      io.ReadCloser
	limit    int // 0: keep nothing, no replay once anything was read
	kept     []byte
	read     bool  // something was read from src
	overflow bool  // more was read than the limit: the body cannot be sent again
	err      error // src's error, once it has one (io.EOF at the end)
	cur      *attemptBody
}

func newReplay(src io.ReadCloser, limit int) *replay { return &replay{src: src, limit: limit} }

// replayable reports whether the body can be sent again: nil (no body), nothing read yet,
// or everything read kept.
func (b *replay) replayable() bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.read || b.limit > 0 && !b.overflow
}

// attempt returns the body for the next attempt, and detaches the previous one's.
func (b *replay) attempt() io.ReadCloser {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur != nil {
		b.cur.detached = true
	}
	b.cur = &attemptBody{b: b}
	return b.cur
}

// finish closes the source once no attempt reads it any more.
func (b *replay) finish() {
	b.mu.Lock()
	if b.cur != nil {
		b.cur.detached = true
	}
	b.mu.Unlock()
	b.src.Close()
}

var errDetached = errors.New("request body of an abandoned attempt")

type attemptBody struct {
	b        *replay
	off      int // of kept, while replaying
	detached bool
}

func (a *attemptBody) Read(p []byte) (int, error) {
	b := a.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.detached {
		return 0, errDetached
	}
	if a.off < len(b.kept) {
		n := copy(p, b.kept[a.off:])
		a.off += n
		return n, nil
	}
	if b.err != nil && a.off == len(b.kept) && !b.overflow {
		return 0, b.err
	}
	// The source is read under the lock: one attempt at a time reads it, and what it reads
	// is kept before another attempt can ask for it.
	n, err := b.src.Read(p)
	if n > 0 {
		b.read = true
		if b.limit > 0 && !b.overflow {
			if len(b.kept)+n <= b.limit {
				b.kept = append(b.kept, p[:n]...)
				a.off = len(b.kept)
			} else {
				b.overflow, b.kept = true, nil
			}
		}
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// Close does not close the source: a transport closes the body of a failed attempt, and the
// next one still needs it. finish closes it.
func (a *attemptBody) Close() error { return nil }
