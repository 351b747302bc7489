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
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestPipelining(t *testing.T) {
	addr, _ := serve(t, &recorder{})
	c := newClient(t, addr)
	c.send(get("/1") + post("Content-Length: 3\r\n", "abc") + get("/3"))
	for _, want := range []string{"GET /1 0", "POST /p 3", "GET /3 0"} {
		if _, body := c.mustRead("GET"); body != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
}

// TestEmptyLineAfterBody: a CRLF after a POST body, as old clients send, is skipped.
func TestEmptyLineAfterBody(t *testing.T) {
	addr, _ := serve(t, &recorder{})
	c := newClient(t, addr)
	c.send(post("Content-Length: 3\r\n", "abc") + "\r\n" + get("/2"))
	c.mustRead("POST")
	if _, body := c.mustRead("GET"); body != "GET /2 0" {
		t.Fatalf("got %q", body)
	}
}

func TestKeepAlive(t *testing.T) {
	var conns atomic.Int32
	addr, _ := serve(t, &recorder{}, func(s *Server) {
		s.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			conns.Add(1)
			return ctx
		}
	})
	c := newClient(t, addr)
	for i := range 3 {
		c.send(get(fmt.Sprintf("/%d", i)))
		resp, body := c.mustRead("GET")
		if resp.Close || body != fmt.Sprintf("GET /%d 0", i) {
			t.Fatalf("request %d: close %v, body %q", i, resp.Close, body)
		}
		if resp.Header.Get("Date") == "" || resp.ContentLength != int64(len(body)) {
			t.Fatalf("request %d: header %v", i, resp.Header)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

func TestConnectionClose(t *testing.T) {
	addr, _ := serve(t, &recorder{})
	c := newClient(t, addr)
	c.send("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + get("/never"))
	resp, _ := c.mustRead("GET")
	if !resp.Close { // (ReadResponse drops the Connection: close it saw)
		t.Fatalf("response %v", resp.Header)
	}
	if !c.closed() {
		t.Fatal("connection stayed open")
	}

	// The handler can ask for it too.
	addr, _ = serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	}))
	c = newClient(t, addr)
	c.send(get("/"))
	if resp, _ := c.mustRead("GET"); !resp.Close || !c.closed() {
		t.Fatal("connection stayed open")
	}
}

func TestHTTP10(t *testing.T) {
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
		if r.URL.Path == "/stream" {
			w.(http.Flusher).Flush()
			io.WriteString(w, " world")
		}
	}))

	c := newClient(t, addr)
	c.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	resp, body := c.mustRead("GET")
	if resp.Proto != "HTTP/1.0" || resp.Header.Get("Connection") != "keep-alive" || resp.ContentLength != 5 || body != "hello" {
		t.Fatalf("keep-alive: %s %v %q", resp.Proto, resp.Header, body)
	}
	// Still open: a second request is answered.
	c.send("GET / HTTP/1.0\r\n\r\n")
	resp, _ = c.mustRead("GET")
	if !resp.Close || !c.closed() {
		t.Fatal("HTTP/1.0 without keep-alive: connection stayed open")
	}

	// A body of unknown length is delimited by the close, even with keep-alive.
	c = newClient(t, addr)
	c.send("GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	resp, body = c.mustRead("GET")
	if resp.ContentLength != -1 || len(resp.TransferEncoding) != 0 || body != "hello world" {
		t.Fatalf("close-delimited: %v %v %q", resp.ContentLength, resp.TransferEncoding, body)
	}
}

func TestHEAD(t *testing.T) {
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/declared" {
			w.Header().Set("Content-Length", "100")
		}
		n, err := io.WriteString(w, "thirteen byte")
		if n != 13 || err != nil {
			panic(fmt.Sprint(n, err))
		}
	}))
	c := newClient(t, addr)
	c.send("HEAD / HTTP/1.1\r\nHost: a\r\n\r\nHEAD /declared HTTP/1.1\r\nHost: a\r\n\r\n" + get("/"))
	for _, want := range []int64{13, 100} {
		resp, body := c.mustRead("HEAD")
		if resp.ContentLength != want || body != "" {
			t.Fatalf("HEAD: Content-Length %d, body %q; want %d", resp.ContentLength, body, want)
		}
	}
	// The GET after them parses: the HEADs sent no body.
	if _, body := c.mustRead("GET"); body != "thirteen byte" {
		t.Fatalf("GET after HEAD: %q", body)
	}
}

func TestNoBodyStatuses(t *testing.T) {
	errs := make(chan error, 1)
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := 204
		if r.URL.Path == "/304" {
			code = 304
		}
		w.Header().Set("Content-Length", "5")
		w.WriteHeader(code)
		_, err := io.WriteString(w, "hello")
		errs <- err
	}))
	c := newClient(t, addr)
	for _, path := range []string{"/204", "/304"} {
		c.send(get(path))
		// The raw head: no Content-Length, no Transfer-Encoding.
		head := readRawHead(t, c)
		if strings.Contains(head, "Content-Length") || strings.Contains(head, "Transfer-Encoding") {
			t.Fatalf("%s: head %q", path, head)
		}
		if err := <-errs; !errors.Is(err, http.ErrBodyNotAllowed) {
			t.Fatalf("%s: Write: %v", path, err)
		}
	}
}

// readRawHead reads a response head as bytes.
func readRawHead(t *testing.T, c *client) string {
	t.Helper()
	var b strings.Builder
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading a head: %v (so far %q)", err, b.String())
		}
		b.WriteString(line)
		if line == "\r\n" {
			return b.String()
		}
	}
}

func TestContentLengthMismatch(t *testing.T) {
	errs := make(chan error, 1)
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		if r.URL.Path == "/short" {
			io.WriteString(w, "hello")
			return
		}
		io.WriteString(w, "hello")
		_, err := io.WriteString(w, "hello world")
		errs <- err
		io.WriteString(w, "12345")
	}))
	c := newClient(t, addr)
	c.send(get("/long"))
	if _, body := c.mustRead("GET"); body != "hello12345" {
		t.Fatalf("body %q", body)
	}
	if err := <-errs; !errors.Is(err, http.ErrContentLength) {
		t.Fatalf("writing past Content-Length: %v", err)
	}
	c.send(get("/short"))
	if _, _, err := c.read("GET"); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short body: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestChunkedBothWays(t *testing.T) {
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != -1 || len(r.TransferEncoding) != 1 || r.TransferEncoding[0] != "chunked" {
			http.Error(w, "framing", 500)
			return
		}
		if _, ok := r.Trailer["X-Sum"]; !ok {
			http.Error(w, fmt.Sprintf("trailer not declared: %v", r.Trailer), 500)
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Trailer", "X-Declared")
		io.WriteString(w, string(b))
		w.(http.Flusher).Flush()
		io.WriteString(w, strings.Repeat("x", 10000))
		w.Header().Set("X-Declared", "d")
		w.Header().Set(http.TrailerPrefix+"X-Late", r.Trailer.Get("X-Sum"))
		w.Header().Set(http.TrailerPrefix+"Content-Length", "1") // may not be a trailer
	}))
	c := newClient(t, addr)
	c.send(post(chunked+"Trailer: X-Sum\r\n", "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 11\r\nX-Other: o\r\n\r\n"))
	resp, body := c.mustRead("POST")
	if resp.StatusCode != 200 || len(resp.TransferEncoding) == 0 || body != "hello world"+strings.Repeat("x", 10000) {
		t.Fatalf("%s %v %q", resp.Status, resp.TransferEncoding, body[:min(len(body), 100)])
	}
	want := http.Header{"X-Declared": {"d"}, "X-Late": {"11"}}
	if fmt.Sprint(resp.Trailer) != fmt.Sprint(want) {
		t.Fatalf("trailers %v, want %v", resp.Trailer, want)
	}
}

// TestRequestTrailerValues checks that Request.Trailer gets the values at EOF,
// undeclared fields included (as net/http does) but for those that may not be
// trailers.
func TestRequestTrailerValues(t *testing.T) {
	got := make(chan http.Header, 1)
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		before := len(r.Trailer["X-A"])
		io.ReadAll(r.Body)
		if before != 0 {
			r.Trailer.Set("Before", "set")
		}
		got <- r.Trailer
	}))
	c := newClient(t, addr)
	c.send(post(chunked+"Trailer: X-A\r\n", "1\r\nx\r\n0\r\nX-A: 1\r\nX-A: 2\r\nX-B: 3\r\nHost: h\r\n\r\n"))
	c.mustRead("POST")
	if tr := <-got; fmt.Sprint(tr) != "map[X-A:[1 2] X-B:[3]]" {
		t.Fatalf("trailer %v", tr)
	}
}

func TestExpectContinue(t *testing.T) {
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/read" {
			b, _ := io.ReadAll(r.Body)
			io.WriteString(w, string(b))
			return
		}
		http.Error(w, "no", http.StatusForbidden)
	}))

	c := newClient(t, addr)
	c.send("POST /read HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	resp, err := c.readAny("POST")
	if err != nil || resp.StatusCode != 100 {
		t.Fatalf("got %v %v, want 100 Continue", resp, err)
	}
	c.send("hello")
	if resp, body := c.mustRead("POST"); resp.StatusCode != 200 || body != "hello" {
		t.Fatalf("got %s %q", resp.Status, body)
	}

	// A handler that answers without reading: no 100, and the connection closes, for
	// the body may or may not come.
	c = newClient(t, addr)
	c.send("POST /refuse HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	resp, err = c.readAny("POST")
	if err != nil || resp.StatusCode != http.StatusForbidden || !resp.Close {
		t.Fatalf("got %v %v, want 403 and close", resp, err)
	}
}

func TestEarlyHints(t *testing.T) {
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Add("Link", "</b.js>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusOK)
		w.WriteHeader(http.StatusTeapot) // superfluous: ignored
		io.WriteString(w, "page")
	}))
	c := newClient(t, addr)
	c.send(get("/"))
	for _, want := range []int{1, 2} {
		resp, err := c.readAny("GET")
		if err != nil || resp.StatusCode != 103 || len(resp.Header["Link"]) != want {
			t.Fatalf("got %v %v, want 103 with %d Link", resp, err, want)
		}
	}
	resp, body := c.mustRead("GET")
	if resp.StatusCode != 200 || body != "page" || len(resp.Header["Link"]) != 2 {
		t.Fatalf("got %s %v %q", resp.Status, resp.Header, body)
	}
}

func TestFlush(t *testing.T) {
	release := make(chan struct{})
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first")
		if err := http.NewResponseController(w).Flush(); err != nil {
			panic(err)
		}
		<-release
		io.WriteString(w, "second")
	}))
	c := newClient(t, addr)
	c.send(get("/"))
	resp, err := c.readAny("GET")
	if err != nil || len(resp.TransferEncoding) == 0 {
		t.Fatalf("got %v %v, want chunked", resp, err)
	}
	// The first chunk is readable while the handler waits.
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first" {
		t.Fatalf("read %q %v", buf, err)
	}
	close(release)
	if rest, err := io.ReadAll(resp.Body); err != nil || string(rest) != "second" {
		t.Fatalf("rest %q %v", rest, err)
	}
}

func TestHijack(t *testing.T) {
	addr, s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		defer conn.Close()
		if _, err := w.Write([]byte("x")); !errors.Is(err, http.ErrHijacked) {
			panic(fmt.Sprint("Write after Hijack: ", err))
		}
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		// Echo lines: the first came with the request, already buffered.
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString("echo " + line)
			brw.Flush()
		}
	}))
	c := newClient(t, addr)
	c.send("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nbuffered\n")
	resp, err := c.readAny("GET")
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("got %v %v", resp, err)
	}
	for _, line := range []string{"buffered\n", "later\n"} {
		if line == "later\n" {
			c.send(line)
		}
		got, err := c.br.ReadString('\n')
		if err != nil || got != "echo "+line {
			t.Fatalf("got %q %v", got, err)
		}
	}
	// The server forgot the connection: Shutdown does not wait for it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestResponseControllerDeadlines(t *testing.T) {
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			panic(err)
		}
		if err := rc.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
			panic(err)
		}
		if r.URL.Path == "/stall" {
			_, err := io.ReadAll(r.Body)
			fmt.Fprintf(w, "timeout %v", isTimeout(err))
			return
		}
		io.WriteString(w, "ok")
	}))
	c := newClient(t, addr)
	// The handler's deadline passes long before the next request: it was cleared.
	c.send(get("/"))
	c.mustRead("GET")
	time.Sleep(300 * time.Millisecond)
	c.send(get("/"))
	if _, body := c.mustRead("GET"); body != "ok" {
		t.Fatalf("second request: %q", body)
	}
	// A body that stalls past the deadline fails the read.
	c.send("POST /stall HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345")
	if _, body := c.mustRead("POST"); body != "timeout true" {
		t.Fatalf("stalled body: %q", body)
	}
}

func TestFullDuplex(t *testing.T) {
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.EnableFullDuplex(); err != nil {
			panic(err)
		}
		w.WriteHeader(200)
		rc.Flush()
		br := bufio.NewReader(r.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			io.WriteString(w, "echo "+line)
			rc.Flush()
		}
	}))
	c := newClient(t, addr)
	c.send(post(chunked, ""))
	resp, err := c.readAny("POST")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("got %v %v", resp, err)
	}
	body := bufio.NewReader(resp.Body)
	for i := range 3 {
		line := fmt.Sprintf("line %d\n", i)
		c.send(fmt.Sprintf("%x\r\n%s\r\n", len(line), line))
		got, err := body.ReadString('\n')
		if err != nil || got != "echo "+line {
			t.Fatalf("got %q %v", got, err)
		}
	}
	c.send("0\r\n\r\n")
	if rest, err := io.ReadAll(body); err != nil || len(rest) != 0 {
		t.Fatalf("end: %q %v", rest, err)
	}
	// The connection is still good.
	c.send(get("/"))
	if resp, _, err := c.read("GET"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("next request: %v %v", resp, err)
	}
}

// TestNotFullDuplex: without EnableFullDuplex, the response going out ends the body.
func TestNotFullDuplex(t *testing.T) {
	errs := make(chan error, 1)
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush()
		_, err := r.Body.Read(make([]byte, 10))
		errs <- err
	}))
	c := newClient(t, addr)
	c.send(post("Content-Length: 5\r\n", "hello") + get("/next"))
	c.mustRead("POST")
	if err := <-errs; !errors.Is(err, http.ErrBodyReadAfterClose) {
		t.Fatalf("read after the header went: %v", err)
	}
	// The small body was read and thrown away: the connection goes on.
	if resp, _, err := c.read("GET"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("next request: %v %v", resp, err)
	}
}

func TestUnreadBody(t *testing.T) {
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "not reading")
	}))
	// A small unread body is thrown away and the connection reused.
	c := newClient(t, addr)
	c.send(post("Content-Length: 1000\r\n", strings.Repeat("a", 1000)) + get("/"))
	if resp, _ := c.mustRead("POST"); resp.Close {
		t.Fatal("closed after a small unread body")
	}
	c.mustRead("GET")

	// A large one closes it, and the client still gets the answer.
	c = newClient(t, addr)
	c.send("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n")
	go io.WriteString(c.c, strings.Repeat("a", 1000000))
	if resp, _ := c.mustRead("POST"); !resp.Close {
		t.Fatal("kept open after a large unread body")
	}
	if !c.closed() {
		t.Fatal("connection stayed open")
	}

	// So does a chunked one.
	c = newClient(t, addr)
	c.send(post(chunked, ""))
	chunk := fmt.Sprintf("%x\r\n%s\r\n", 100000, strings.Repeat("a", 100000))
	go io.WriteString(c.c, strings.Repeat(chunk, 10)+"0\r\n\r\n")
	if resp, _ := c.mustRead("POST"); !resp.Close {
		t.Fatal("kept open after a large unread chunked body")
	}
}

func TestTimeouts(t *testing.T) {
	addr, _ := serve(t, &recorder{}, func(s *Server) {
		s.ReadHeaderTimeout = 200 * time.Millisecond
		s.IdleTimeout = 300 * time.Millisecond
	})
	bound := 10 * time.Second // generous: the machine may be busy

	// A head that stops in the middle gets a 408.
	c := newClient(t, addr)
	start := time.Now()
	c.send("GET / HTTP/1.1\r\nHost:")
	resp, _, err := c.read("GET")
	if err != nil || resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("got %v %v, want 408", resp, err)
	}
	if !c.closed() || time.Since(start) > bound {
		t.Fatal("not closed in time")
	}

	// An idle keep-alive connection is closed, without a word.
	c = newClient(t, addr)
	c.send(get("/"))
	c.mustRead("GET")
	start = time.Now()
	if _, _, err := c.read("GET"); err == nil || isTimeout(err) || time.Since(start) > bound {
		t.Fatalf("idle connection: %v after %v, want closed", err, time.Since(start))
	}

	// A slow but steady connection is fine: each request gets its own time.
	c = newClient(t, addr)
	for range 3 {
		time.Sleep(100 * time.Millisecond)
		c.send(get("/"))
		c.mustRead("GET")
	}
}

func TestShutdown(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	addr, s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "done")
	}))
	idle := newClient(t, addr)
	idle.send(get("/"))
	idle.mustRead("GET")
	active := newClient(t, addr)
	active.send(get("/slow"))
	<-entered

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	if !idle.closed() {
		t.Fatal("idle connection not closed")
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request active", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("still accepting")
	}
	close(release)
	resp, body := active.mustRead("GET")
	if body != "done" || !resp.Close {
		t.Fatalf("active request: %q close %v", body, resp.Close)
	}
	if !active.closed() {
		t.Fatal("active connection not closed after its request")
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}

func TestShutdownTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	entered := make(chan struct{})
	addr, s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	}))
	c := newClient(t, addr)
	c.send(get("/"))
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want context.DeadlineExceeded", err)
	}
}

func TestPanic(t *testing.T) {
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/late":
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
		}
		panic("boom")
	}))
	c := newClient(t, addr)
	c.send(get("/early") + get("/never"))
	resp, _ := c.mustRead("GET")
	if resp.StatusCode != 500 || !resp.Close || !c.closed() {
		t.Fatalf("got %s, close %v", resp.Status, resp.Close)
	}
	// After the response began, the client sees it cut short.
	c = newClient(t, addr)
	c.send(get("/late"))
	if _, body, err := c.read("GET"); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %q %v, want io.ErrUnexpectedEOF", body, err)
	}
}

// TestAbortHandler: panic(http.ErrAbortHandler) resets the stream, as the gateway
// does for Proxy-Wasm's proxy_close_stream: the connection drops with nothing more
// written, neither a 500 nor the last chunk of a response that began.
func TestAbortHandler(t *testing.T) {
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/flushed":
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
		case "/buffered":
			w.Header().Set("X-Head", "1")
			io.WriteString(w, "never sent")
		case "/big":
			// A head and part of a body went out by themselves; the rest is
			// in the write buffer, and stays there.
			w.Write(make([]byte, 3*bufSize+100))
		}
		panic(http.ErrAbortHandler)
	}))
	for _, tc := range []struct {
		path, raw string
		want      func(got string) bool
	}{
		{"/early", get("/early") + get("/never"), func(got string) bool { return got == "" }},
		{"/buffered", get("/buffered"), func(got string) bool { return got == "" }},
		{"/flushed", get("/flushed"), func(got string) bool {
			return strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") && strings.HasSuffix(got, "\r\n\r\n7\r\npartial\r\n")
		}},
		{"/big", get("/big"), func(got string) bool {
			return strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") && !strings.HasSuffix(got, "0\r\n\r\n")
		}},
	} {
		c := dial(t, addr)
		io.WriteString(c, tc.raw)
		got, err := io.ReadAll(c)
		if err != nil && (isTimeout(err) || !errors.Is(err, syscall.ECONNRESET)) {
			t.Fatalf("%s: read %v, want the connection closed", tc.path, err)
		}
		if !tc.want(string(got)) {
			t.Fatalf("%s: got %q", tc.path, clipped(got))
		}
	}
}

// clipped shortens what a test shows of a long response.
func clipped(b []byte) []byte {
	if len(b) > 200 {
		return b[len(b)-200:]
	}
	return b
}

func TestContextCanceled(t *testing.T) {
	ctxs := make(chan context.Context, 1)
	readErr := make(chan error, 1)
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			_, err := io.ReadAll(r.Body)
			readErr <- err
		}
		ctxs <- r.Context()
	}))
	c := newClient(t, addr)
	c.send(get("/"))
	c.mustRead("GET")
	if ctx := <-ctxs; ctx.Err() == nil {
		t.Fatal("context alive after the handler returned")
	}

	// The client goes away in the middle of the body.
	c = newClient(t, addr)
	c.send("POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\npartial")
	time.Sleep(50 * time.Millisecond)
	c.c.Close()
	if err := <-readErr; !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("body read: %v", err)
	}
	ctx := <-ctxs
	select {
	case <-ctx.Done():
		if context.Cause(ctx) == context.Canceled {
			t.Fatalf("cause %v, want the connection's error", context.Cause(ctx))
		}
	default:
		t.Fatal("context alive after the client went away")
	}
}

func TestRequestFields(t *testing.T) {
	reqs := make(chan *http.Request, 1)
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		reqs <- r
	}))
	c := newClient(t, addr)
	c.send("GET /a%20b/c?x=1&y HTTP/1.1\r\nhost: example.com:8080\r\nx-multi: 1\r\nX-Multi: 2\r\naccept-encoding: gzip\r\n\r\n")
	c.mustRead("GET")
	r := <-reqs
	checks := []struct {
		name      string
		got, want any
	}{
		{"Method", r.Method, "GET"},
		{"URL.Path", r.URL.Path, "/a b/c"},
		{"URL.RawPath", r.URL.RawPath, ""},
		{"URL.RawQuery", r.URL.RawQuery, "x=1&y"},
		{"RequestURI", r.RequestURI, "/a%20b/c?x=1&y"},
		{"Proto", r.Proto, "HTTP/1.1"},
		{"ProtoMinor", r.ProtoMinor, 1},
		{"Host", r.Host, "example.com:8080"},
		{"Header", fmt.Sprint(r.Header), "map[Accept-Encoding:[gzip] X-Multi:[1 2]]"},
		{"Close", r.Close, false},
		{"ContentLength", r.ContentLength, int64(0)},
		{"Body", r.Body, http.NoBody},
		{"RemoteAddr", r.RemoteAddr, c.c.LocalAddr().String()},
		{"LocalAddr", fmt.Sprint(r.Context().Value(http.LocalAddrContextKey)), addr},
		{"TLS", r.TLS == nil, true},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}

	c.send("POST http://Other.example/p?q HTTP/1.1\r\nHost: ignored\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
	c.mustRead("POST")
	r = <-reqs
	if r.Host != "Other.example" || r.URL.Scheme != "http" || r.URL.Host != "Other.example" || r.URL.Path != "/p" ||
		r.ContentLength != 2 || !r.Close || r.Header.Get("Host") != "" {
		t.Errorf("absolute-form: Host %q URL %#v ContentLength %d Close %v", r.Host, r.URL, r.ContentLength, r.Close)
	}
}

// TestServeConnBuffered serves a connection whose first bytes were read already.
func TestServeConnBuffered(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s := &Server{Handler: &recorder{}}
	defer s.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		peek := make([]byte, 4)
		if _, err := io.ReadFull(c, peek); err != nil {
			c.Close()
			return
		}
		s.ServeConn(c, peek)
	}()
	c := newClient(t, l.Addr().String())
	c.send(get("/peeked"))
	if _, body := c.mustRead("GET"); body != "GET /peeked 0" {
		t.Fatalf("got %q", body)
	}
}

// TestMalformedBody: a framing error reaches the handler as ErrBodyFraming, and the
// bytes after it are never taken for a request, whether the handler reads the body
// or leaves it to the server.
func TestMalformedBody(t *testing.T) {
	errs := make(chan error, 1)
	h := &recorder{}
	addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/read" {
			_, err := io.ReadAll(r.Body)
			errs <- err
		}
		h.ServeHTTP(w, r)
	}))
	for _, path := range []string{"/read", "/unread"} {
		c := newClient(t, addr)
		c.send("POST " + path + " HTTP/1.1\r\nHost: a\r\n" + chunked + "\r\n5\r\nhelloXX0\r\n\r\n" + get("/smuggled"))
		c.read("POST")
		if !c.closed() {
			t.Fatalf("%s: connection stayed open", path)
		}
		if path == "/read" {
			if err := <-errs; !errors.Is(err, ErrBodyFraming) {
				t.Fatalf("body read: %v, want ErrBodyFraming", err)
			}
		}
	}
	if h.saw("/smuggled") {
		t.Fatal("the bytes after a malformed body reached the handler as a request")
	}
}

// TestHammer runs clients at once, each mixing sequential, pipelined, chunked and
// closing requests, for -race to look at.
func TestHammer(t *testing.T) {
	addr, s := serve(t, hashHandler)
	const clients, rounds = 8, 30
	errs := make(chan error, clients)
	for i := range clients {
		go func() {
			errs <- hammer(addr, i, rounds)
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	ctx, cancel := contextWithTimeout(10 * time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func hammer(addr string, id, rounds int) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	for r := range rounds {
		body := strings.Repeat("x", (id*rounds+r)%3000)
		var raw string
		switch r % 3 {
		case 0:
			raw = get("/") + post(fmt.Sprintf("Content-Length: %d\r\n", len(body)), body)
		case 1:
			raw = post(chunked, fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body)+1, body+"y"))
		case 2:
			raw = get("/")
		}
		if _, err := io.WriteString(c, raw); err != nil {
			return err
		}
		for range strings.Count(raw, "HTTP/1.1\r\n") {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return fmt.Errorf("client %d round %d: %w", id, r, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("client %d round %d: %s", id, r, resp.Status)
			}
		}
	}
	return nil
}
