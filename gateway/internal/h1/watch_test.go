package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Bounds generous enough for a busy machine: a sweep is a quarter of a second.
const (
	cancelBound = 5 * time.Second  // from the cause to a handler seeing its context done
	handlerWait = 20 * time.Second // a handler's wait for what does not come
)

// waitCause is a handler that reads the body, tells entered, and waits for its
// request's context to end: it tells causes the context's cause, or nil if nothing
// ended it within handlerWait.
type waitCause struct {
	entered chan struct{}
	causes  chan error
}

func newWaitCause() *waitCause {
	return &waitCause{entered: make(chan struct{}, 1), causes: make(chan error, 1)}
}

func (h *waitCause) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.ReadAll(r.Body)
	h.entered <- struct{}{}
	select {
	case <-r.Context().Done():
		h.causes <- context.Cause(r.Context())
	case <-time.After(handlerWait):
		h.causes <- nil
	}
}

// cause waits for the handler's context to end, within bound.
func (h *waitCause) cause(t *testing.T, bound time.Duration) error {
	t.Helper()
	select {
	case err := <-h.causes:
		if err == nil {
			t.Fatal("the handler's context lived on")
		}
		return err
	case <-time.After(bound):
		t.Fatalf("the handler's context not canceled within %v", bound)
	}
	return nil
}

// watched waits until s started more than n background reads.
func watched(t *testing.T, s *Server, n int64) {
	t.Helper()
	deadline := time.Now().Add(cancelBound)
	for s.watches.Load() <= n {
		if time.Now().After(deadline) {
			t.Fatalf("no background read started within %v", cancelBound)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCloseCancels(t *testing.T) {
	h := newWaitCause()
	addr, s := serve(t, h)
	c := newClient(t, addr)
	c.send(get("/"))
	<-h.entered
	s.Close()
	if err := h.cause(t, cancelBound); !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("cause %v, want http.ErrServerClosed", err)
	}
	if !c.closed() {
		t.Fatal("connection not closed")
	}
}

func TestShutdownTimeoutCancels(t *testing.T) {
	h := newWaitCause()
	addr, s := serve(t, h)
	c := newClient(t, addr)
	c.send(get("/"))
	<-h.entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want context.DeadlineExceeded", err)
	}
	if err := h.cause(t, cancelBound); !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("cause %v, want http.ErrServerClosed", err)
	}
	// The request was cut off: the handler returning does not make a response of it,
	// and the connection closes.
	if resp, err := c.readAny("GET"); err == nil {
		t.Fatalf("a response (%d) to a request Shutdown cut off", resp.StatusCode)
	}
}

// TestShutdownTimeoutCutsOff: a response under way when Shutdown's deadline passes is cut
// short, not ended as if whole, when its handler returns on its canceled context (as a
// proxy's does when its upstream call is canceled): the client must not take half a body
// for all of it.
func TestShutdownTimeoutCutsOff(t *testing.T) {
	entered := make(chan struct{})
	addr, s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "the first half, ")
		w.(http.Flusher).Flush()
		close(entered)
		select {
		case <-r.Context().Done():
		case <-time.After(handlerWait):
			io.WriteString(w, "and the second")
		}
	}))
	c := newClient(t, addr)
	c.send(get("/"))
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	s.Shutdown(ctx)
	resp, err := c.readAny("GET")
	if err != nil {
		t.Fatalf("reading the response's head: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("the body %q ended as if whole; want it cut short", b)
	}
	if string(b) != "the first half, " {
		t.Fatalf("body %q before the cut", b)
	}
}

// TestWriteErrorCancels: a write that fails cancels the request's context at once.
func TestWriteErrorCancels(t *testing.T) {
	entered, result := make(chan struct{}), make(chan error, 1)
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		chunk := make([]byte, 64<<10)
		deadline := time.Now().Add(handlerWait)
		for time.Now().Before(deadline) {
			if _, err := w.Write(chunk); err != nil {
				result <- r.Context().Err()
				return
			}
		}
		result <- errors.New("writes kept succeeding")
	}))
	c := newClient(t, addr)
	c.send(get("/"))
	<-entered
	c.c.Close()
	if err := <-result; !errors.Is(err, context.Canceled) {
		t.Fatalf("context after a failed write: %v, want canceled", err)
	}
}

// TestClientGone: a handler that waits on its context learns that its client went
// away, with or without a body, without reading or writing anything.
func TestClientGone(t *testing.T) {
	t.Parallel()
	h := newWaitCause()
	addr, s := serve(t, h)
	for _, raw := range []string{
		get("/"),
		post("Content-Length: 5\r\n", "hello"),
		post(chunked, "5\r\nhello\r\n0\r\n\r\n"),
	} {
		c := newClient(t, addr)
		n := s.watches.Load()
		c.send(raw)
		<-h.entered
		watched(t, s, n)
		c.c.Close()
		err := h.cause(t, cancelBound)
		if errors.Is(err, context.Canceled) || errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("%q: cause %v, want the connection's error", methodOf(raw), err)
		}
	}
}

// TestClientGoneEarly: a client that went away before its handler's background read
// starts is noticed by it too.
func TestClientGoneEarly(t *testing.T) {
	t.Parallel()
	h := newWaitCause()
	addr, _ := serve(t, h)
	c := newClient(t, addr)
	c.send(get("/"))
	<-h.entered
	c.c.Close()
	h.cause(t, cancelBound)
}

// TestWatchedPipelined: bytes arriving while the connection is watched are the next
// request, served after the first.
func TestWatchedPipelined(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	addr, s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		fmt.Fprintf(w, "%s done", r.URL.Path)
	}))
	c := newClient(t, addr)
	c.send(get("/slow"))
	watched(t, s, 0)
	c.send(get("/2") + get("/3"))
	time.Sleep(50 * time.Millisecond) // most often, the background read takes them
	close(release)
	for _, want := range []string{"/slow done", "/2 done", "/3 done"} {
		if _, body := c.mustRead("GET"); body != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
}

// TestWatchedAnswers: a handler whose connection is watched and that reads nothing
// more gets its response out, and the connection serves the next request (the
// background read ended and left no deadline behind).
func TestWatchedAnswers(t *testing.T) {
	t.Parallel()
	release := make(chan struct{}, 1)
	addr, s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/p" {
			<-release
		}
		fmt.Fprintf(w, "%s %s", r.URL.Path, b)
	}))
	c := newClient(t, addr)
	for i := range 2 {
		n := s.watches.Load()
		c.send(post("Content-Length: 5\r\n", "hello"))
		watched(t, s, n)
		release <- struct{}{}
		if _, body := c.mustRead("POST"); body != "/p hello" {
			t.Fatalf("request %d: got %q", i, body)
		}
	}
	time.Sleep(2 * sweepPeriod)
	c.send(get("/after"))
	if _, body := c.mustRead("GET"); body != "/after " {
		t.Fatalf("got %q", body)
	}
}

// TestWatchedHijack: a handler that hijacks a watched connection gets what the client
// sent meanwhile.
func TestWatchedHijack(t *testing.T) {
	t.Parallel()
	hijack := make(chan struct{})
	addr, s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-hijack
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		defer conn.Close()
		line, err := brw.ReadString('\n')
		if err != nil {
			return
		}
		brw.WriteString("echo " + line)
		brw.Flush()
	}))
	c := newClient(t, addr)
	c.send(get("/"))
	watched(t, s, 0)
	c.send("early\n")
	time.Sleep(50 * time.Millisecond)
	close(hijack)
	if got, err := c.br.ReadString('\n'); err != nil || got != "echo early\n" {
		t.Fatalf("got %q %v", got, err)
	}
}

// TestWatchedReadDeadline: the handler's read deadline, set before its connection
// was watched, still holds for it after the background read ended (Hijack ends it).
func TestWatchedReadDeadline(t *testing.T) {
	t.Parallel()
	hijack, result := make(chan struct{}), make(chan error, 1)
	addr, s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		rc.SetReadDeadline(time.Now().Add(time.Hour))
		<-hijack
		rc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		conn, brw, err := rc.Hijack()
		if err != nil {
			panic(err)
		}
		defer conn.Close()
		_, err = brw.ReadByte()
		result <- err
	}))
	c := newClient(t, addr)
	c.send(get("/"))
	watched(t, s, 0)
	close(hijack)
	select {
	case err := <-result:
		if !isTimeout(err) {
			t.Fatalf("read after Hijack: %v, want a timeout", err)
		}
	case <-time.After(handlerWait):
		t.Fatal("the handler's read deadline was lost")
	}
}

// TestNoWatchWhileReading: a handler still reading its body does not get its
// connection read under it; the body's later bytes are the body's.
func TestNoWatchWhileReading(t *testing.T) {
	t.Parallel()
	addr, s := serve(t, &recorder{})
	c := newClient(t, addr)
	c.send(post("Content-Length: 10\r\n", "12345"))
	time.Sleep(3 * sweepPeriod)
	c.send("67890")
	if _, body := c.mustRead("POST"); body != "POST /p 10" {
		t.Fatalf("got %q", body)
	}
	if n := s.watches.Load(); n != 0 {
		t.Fatalf("%d background reads, want none", n)
	}
}

// TestWatchHammer mixes slow handlers with clients that leave, pipeline or wait, for
// -race to look at.
func TestWatchHammer(t *testing.T) {
	t.Parallel()
	addr, s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		if r.URL.Path == "/slow" {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(2 * sweepPeriod):
			}
		}
		io.WriteString(w, r.URL.Path)
	}))
	const clients = 6
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- watchClient(addr, i)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if s.watches.Load() == 0 {
		t.Error("no background read started")
	}
}

func watchClient(addr string, id int) error {
	for round := range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		c.SetDeadline(time.Now().Add(handlerWait))
		br := bufio.NewReader(c)
		var wants []string
		switch (id + round) % 3 {
		case 0: // leaves while the handler works
			io.WriteString(c, get("/slow"))
			time.Sleep(time.Duration(id%3+1) * sweepPeriod)
		case 1: // pipelines behind the slow request, late
			io.WriteString(c, get("/slow"))
			time.Sleep(time.Duration(id%2+1) * sweepPeriod)
			io.WriteString(c, get("/next"))
			wants = []string{"/slow", "/next"}
		case 2: // a body, then waits
			io.WriteString(c, strings.Replace(post("Content-Length: 3\r\n", "abc"), "/p", "/slow", 1))
			wants = []string{"/slow"}
		}
		for _, want := range wants {
			if err := expectBody(br, want); err != nil {
				c.Close()
				return fmt.Errorf("client %d round %d: %w", id, round, err)
			}
		}
		c.Close()
	}
	return nil
}

func expectBody(br *bufio.Reader, want string) error {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != want {
		return fmt.Errorf("got %q %v, want %q", b, err, want)
	}
	return nil
}
