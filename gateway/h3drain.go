package gateway

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// h3Linger is how long an HTTP/3 listener's connections stay open on shutdown after its
// last request ended: the last responses' bytes may still be unacknowledged, and closing
// a QUIC connection drops what its streams have not delivered. A second covers a lost
// packet's retransmission at any round trip a client is likely to have.
const h3Linger = time.Second

// h3Requests counts an HTTP/3 listener's requests in flight. quic-go's Shutdown sends
// GOAWAY and then waits for the clients to close their connections, which a client that
// keeps an idle connection open (or went away without closing it) never does: shutdown
// would wait out the whole drain timeout and then report requests cut off that were not
// there. With the count, shutdown closes the connections once no request is left, as
// the HTTP/1.1 and HTTP/2 servers close their idle connections.
type h3Requests struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed as n reaches 0 while shutdown waits for it; else nil
}

// wrap counts h's requests.
func (c *h3Requests) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
		defer c.done()
		h.ServeHTTP(w, r)
	})
}

func (c *h3Requests) done() {
	c.mu.Lock()
	if c.n--; c.n == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
	c.mu.Unlock()
}

func (c *h3Requests) inFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// wait returns once no request is in flight, or with ctx's error.
func (c *h3Requests) wait(ctx context.Context) error {
	c.mu.Lock()
	if c.n == 0 {
		c.mu.Unlock()
		return nil
	}
	if c.idle == nil {
		c.idle = make(chan struct{})
	}
	idle := c.idle
	c.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// shutdownH3 shuts srv down gracefully: GOAWAY to every connection, then, once no request
// has been in flight for h3Linger, the connections closed (H3_NO_ERROR) rather than
// waited for. The error is ctx's when requests were still in flight as it ended.
func shutdownH3(ctx context.Context, srv *http3.Server, reqs *h3Requests) error {
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	// What Shutdown returns once ctx ended: its deadline only if a request was cut off.
	cut := func() error {
		err := <-shut
		if reqs.inFlight() == 0 {
			return nil
		}
		return err
	}
	linger := time.NewTimer(h3Linger)
	defer linger.Stop()
	for {
		if reqs.wait(ctx) != nil {
			return cut()
		}
		linger.Reset(h3Linger)
		select {
		case err := <-shut: // every client closed its connection
			return err
		case <-ctx.Done():
			return cut()
		case <-linger.C:
		}
		if reqs.inFlight() == 0 {
			srv.Close()
			<-shut
			return nil
		}
		// A request came in before the client saw GOAWAY: wait for it too.
	}
}
