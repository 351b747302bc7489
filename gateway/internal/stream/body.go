package stream

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ErrBodyTooLarge is the error of a request body past the listener's limit.
var ErrBodyTooLarge = errors.New("request body too large")

// ErrBodyTimeout is the error of a request body whose next bytes did not come within the
// listener's request_body_timeout.
var ErrBodyTimeout = errors.New("request body timeout")

// Body is the request body as it leaves the stream stage: it counts what was read,
// enforces the listener's body limit, and gives each read the listener's body timeout.
//
// The upstream client may read it from its own goroutine while the handler looks at it
// (a backend that answered before it read the whole body), and may go on reading after
// the handler returned. Detach, as the handler ends, cuts it off: from then on the
// connection is net/http's again, and a read neither touches its deadline nor the body.
type Body struct {
	rc       io.ReadCloser
	limit    int64
	timeout  time.Duration
	rc2      *http.ResponseController // sets the read deadlines; nil without a timeout
	n        atomic.Int64
	tooLarge atomic.Bool
	timedOut atomic.Bool
	ended    atomic.Bool
	waiting  atomic.Int64 // the deadline (Unix ns) of the read in progress; 0 when none is

	mu       sync.Mutex // orders a read's deadlines with Detach
	detached bool
}

// ErrBodyDetached is what a read gets once the request it belonged to has ended.
var ErrBodyDetached = errors.New("request ended before its body was read")

func newBody(rc io.ReadCloser, limit int64, timeout time.Duration, w http.ResponseWriter) *Body {
	b := &Body{rc: rc, limit: limit, timeout: timeout}
	if timeout > 0 {
		b.rc2 = http.NewResponseController(w)
	}
	return b
}

func (b *Body) Read(p []byte) (int, error) {
	if b.tooLarge.Load() {
		return 0, ErrBodyTooLarge
	}
	b.mu.Lock()
	if b.detached {
		b.mu.Unlock()
		return 0, ErrBodyDetached
	}
	if b.rc2 != nil && !b.ended.Load() {
		deadline := time.Now().Add(b.timeout)
		b.rc2.SetReadDeadline(deadline)
		b.waiting.Store(deadline.UnixNano())
		defer b.waiting.Store(0)
	}
	b.mu.Unlock()
	n, err := b.rc.Read(p)
	if total := b.n.Add(int64(n)); b.limit > 0 && total > b.limit {
		b.tooLarge.Store(true)
		return 0, ErrBodyTooLarge
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		// The deadline stays passed: the server, which would otherwise wait to drain the
		// rest of the body after the 408, gives up on the connection at once.
		b.ended.Store(true)
		b.timedOut.Store(true)
		return n, ErrBodyTimeout
	}
	if err != nil && b.rc2 != nil && !b.ended.Swap(true) {
		// The deadline must not outlive the body: on HTTP/1.1 it is the connection's, and
		// the server's watch for a client that goes away reads under it.
		b.mu.Lock()
		if !b.detached {
			b.rc2.SetReadDeadline(time.Time{})
		}
		b.mu.Unlock()
	}
	return n, err
}

// Detach ends the body's use by the request, when the handler returns: later reads fail
// with ErrBodyDetached, and a read in progress leaves the connection's deadline alone
// when it returns. (net/http's clean-up of the body waits for that read; the deadline
// it had is net/http's to replace as it reads the next request.)
func (b *Body) Detach() {
	b.mu.Lock()
	b.detached = true
	b.mu.Unlock()
}

func (b *Body) Close() error {
	b.mu.Lock()
	detached := b.detached
	b.mu.Unlock()
	if detached {
		return nil // net/http closes it as the request ends
	}
	return b.rc.Close()
}

// Received is how much of the body was read so far.
func (b *Body) Received() int64 { return b.n.Load() }

// TooLarge reports that the body went past the listener's limit.
func (b *Body) TooLarge() bool { return b.tooLarge.Load() }

// TimedOut reports that the client stopped sending the body for longer than the
// listener's body timeout.
//
// It also holds while a read is still blocked past its deadline: on HTTP/1.1 the server
// cancels the request's context as the connection's read fails, so the upstream client
// may give up on the request before the read that failed has returned here.
func (b *Body) TimedOut() bool {
	if b.timedOut.Load() {
		return true
	}
	d := b.waiting.Load()
	return d != 0 && time.Now().UnixNano() >= d
}
