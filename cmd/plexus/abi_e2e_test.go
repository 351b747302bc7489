package main

// Proxy-Wasm paths through the real gateway that the example filters do not take: trailers,
// proxy_close_stream, local replies with a gRPC status and from the response phase, body
// edits with proxy_set_buffer_bytes, proxy_log against the filter's log level, and a chain
// of two filters on one body. One filter, testdata/abi.wat, written by hand against the ABI,
// does all of it: the request path chooses what (see the head of abi.wat).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// abiSeen is what the backend saw of one request.
type abiSeen struct {
	Proto            string
	Body             string
	BodyErr          string
	Header, Trailer  http.Header
	ContentLength    int64
	TransferEncoding []string
}

// abiEnv is a gateway running abi.wat in front of a backend that records every request by
// path and answers according to the path's mode byte (the same byte the filter reads):
//
//	t, i  "backend body" with the trailers x-resp-in: from-backend, x-resp-replace: by-backend
//	k  "part1", flushed, then "part2" 50ms later
//	   any other mode: "backend body"; in one write with Content-Length, or, when the
//	   path's fifth byte is c, as "backend " (flushed) and "body" 20ms later, chunked
//
// Every answer carries x-backend: app.
type abiEnv struct {
	g    *gw
	yaml string // the config the gateway started with

	mu   sync.Mutex
	seen map[string]abiSeen
}

func startABI(t *testing.T) *abiEnv {
	t.Helper()
	e := &abiEnv{seen: map[string]abiSeen{}}
	app := startBackend(t, e)
	appH2C := startBackend(t, e)
	abi := module(t, "wat", "cmd/plexus/testdata/abi.wat")
	e.yaml = fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
node:
  id: gw-e2e
  cluster: edge
  metadata: {region: eu-west-1, labels: {tier: gold}, replicas: 3}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1, h2c]}]
backends:
  - {name: app, endpoints: [%s]}
  - {name: app-h2c, protocol: h2c, endpoints: [%s]}
filters:
  - {name: abi, module: "file:%[3]s"}
  - {name: abi-warn, module: "file:%[3]s", log_level: warn}
  - {name: abi-u, module: "file:%[3]s", config: "U"}
  - {name: abi-w, module: "file:%[3]s", config: "W"}
routes:
  - {name: warn, match: {headers: [{name: x-filter, exact: warn}]}, filters: [abi-warn], backend: app}
  - {name: chain, match: {headers: [{name: x-filter, exact: chain}]}, filters: [abi-u, abi-w], backend: app}
  - {name: h2c-backend, match: {headers: [{name: x-filter, exact: h2c-backend}]}, filters: [abi], backend: app-h2c}
  - {name: plain-h2c, match: {headers: [{name: x-filter, exact: plain-h2c}]}, backend: app-h2c}
  - {name: abi, match: {path_prefix: /}, filters: [abi], backend: app}
`, app.addr, appH2C.addr, abi)
	e.g = startGateway(t, e.yaml)
	return e
}

func (e *abiEnv) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	s := abiSeen{Proto: r.Proto, Body: string(body), Header: r.Header.Clone(), Trailer: r.Trailer.Clone(),
		ContentLength: r.ContentLength, TransferEncoding: r.TransferEncoding}
	if err != nil {
		s.BodyErr = err.Error()
	}
	e.mu.Lock()
	e.seen[r.URL.Path] = s
	e.mu.Unlock()
	path := r.URL.Path
	mode := func(i int) byte {
		if len(path) > i {
			return path[i]
		}
		return 0
	}
	h := w.Header()
	h.Set("X-Backend", "app")
	switch mode(1) {
	case 't', 'i':
		h.Set("Trailer", "X-Resp-In, X-Resp-Replace")
		io.WriteString(w, "backend body")
		h.Set("X-Resp-In", "from-backend")
		h.Set("X-Resp-Replace", "by-backend")
	case 'k':
		io.WriteString(w, "part1")
		w.(http.Flusher).Flush()
		time.Sleep(50 * time.Millisecond)
		io.WriteString(w, "part2")
	default:
		if mode(4) == 'c' {
			io.WriteString(w, "backend ")
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
			io.WriteString(w, "body")
			return
		}
		h.Set("Content-Length", "12")
		io.WriteString(w, "backend body")
	}
}

// backendSaw is what the backend saw of the request for path, and whether it saw one.
func (e *abiEnv) backendSaw(path string) (abiSeen, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.seen[path]
	return s, ok
}

// abiReq is one request of these tests.
type abiReq struct {
	method, path string
	parts        []string // the body, written in these parts 30ms apart; no body when empty
	length       int64    // Content-Length to send with a body: -1 for none (chunked in HTTP/1.1)
	header       []string // name, value, ...
	trailer      http.Header
}

// abiResult is what the client observed.
type abiResult struct {
	resp    *http.Response
	body    string
	err     error // from the round trip
	readErr error // from reading the body
	reused  bool  // the request went on a connection used before
}

func (e *abiEnv) do(t *testing.T, c *http.Client, q abiReq) abiResult {
	t.Helper()
	var res abiResult
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { res.reused = i.Reused },
	})
	var body io.Reader
	if len(q.parts) > 0 {
		pr, pw := io.Pipe()
		go func() {
			for i, p := range q.parts {
				if i > 0 {
					time.Sleep(30 * time.Millisecond)
				}
				if _, err := pw.Write([]byte(p)); err != nil {
					return
				}
			}
			pw.Close()
		}()
		body = pr
	}
	req, err := http.NewRequestWithContext(ctx, q.method, e.g.url("web", q.path), body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.ContentLength = q.length
	}
	for i := 0; i+1 < len(q.header); i += 2 {
		req.Header.Add(q.header[i], q.header[i+1])
	}
	req.Trailer = q.trailer
	res.resp, res.err = c.Do(req)
	if res.err != nil {
		return res
	}
	b, err := io.ReadAll(res.resp.Body)
	res.resp.Body.Close()
	res.body, res.readErr = string(b), err
	return res
}

// ok fails the test unless the exchange completed with status.
func (r abiResult) ok(t *testing.T, status int) {
	t.Helper()
	if r.err != nil || r.readErr != nil {
		t.Fatalf("request failed: %v / reading the body: %v", r.err, r.readErr)
	}
	if r.resp.StatusCode != status {
		t.Fatalf("status %d, want %d (header %v, body %q)", r.resp.StatusCode, status, r.resp.Header, r.body)
	}
}

var abiClients = []struct {
	name string
	new  func() *http.Client
}{{"h1", h1Client}, {"h2c", h2cClient}}

// client is a new client of kind new, whose idle connections close before the gateway
// stops (an open h2c connection would hold its shutdown up).
func (e *abiEnv) client(t *testing.T, new func() *http.Client) *http.Client {
	c := new()
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// TestABITrailers: a filter reads, adds and replaces request trailers in
// proxy_on_request_trailers and response trailers in proxy_on_response_trailers; the backend
// and the client see its edits, over HTTP/1.1 (chunked) and h2c on both sides.
func TestABITrailers(t *testing.T) {
	e := startABI(t)
	for _, cl := range abiClients {
		for _, be := range []string{"http1", "h2c"} {
			t.Run(cl.name+" to "+be, func(t *testing.T) {
				path := "/t---/" + cl.name + "/" + be
				trailer := http.Header{"X-In": {"from-client"}, "X-Replace": {"by-client"}}
				if be == "h2c" {
					// Go's HTTP/2 server hands its handler only the trailers the request
					// declared (Trailer header): the client declares the one the filter adds.
					// Over HTTP/1.1 the filter's trailer reaches the backend undeclared.
					trailer["X-Seen"] = nil
				}
				r := e.do(t, e.client(t, cl.new), abiReq{method: "POST", path: path, parts: []string{"pay", "load"}, length: -1,
					header:  []string{"x-filter", map[string]string{"http1": "none", "h2c": "h2c-backend"}[be]},
					trailer: trailer})
				r.ok(t, 200)
				s, _ := e.backendSaw(path)
				if s.Body != "payload" || s.BodyErr != "" {
					t.Errorf("backend body %q (%s)", s.Body, s.BodyErr)
				}
				want := http.Header{"X-In": {"from-client"}, "X-Seen": {"from-client"}, "X-Replace": {"by-filter"}}
				for k, v := range want {
					if !slices.Equal(s.Trailer[k], v) {
						t.Errorf("backend trailer %s = %q, want %q (all: %v)", k, s.Trailer[k], v, s.Trailer)
					}
				}
				if wantProto := map[string]string{"http1": "HTTP/1.1", "h2c": "HTTP/2.0"}[be]; s.Proto != wantProto {
					t.Errorf("backend spoke %s, want %s", s.Proto, wantProto)
				}
				if r.body != "backend body" || r.resp.Header.Get("X-Abi-Resp") != "-" {
					t.Errorf("client got body %q, header %v", r.body, r.resp.Header)
				}
				want = http.Header{"X-Resp-In": {"from-backend"}, "X-Resp-Seen": {"from-backend"}, "X-Resp-Replace": {"by-filter"}}
				for k, v := range want {
					if !slices.Equal(r.resp.Trailer[k], v) {
						t.Errorf("client trailer %s = %q, want %q (all: %v)", k, r.resp.Trailer[k], v, r.resp.Trailer)
					}
				}
			})
		}
	}
}

// TestABITrailersLengthAndTrailers: an HTTP/2 backend may answer with a Content-Length and
// trailers; an HTTP/1.1 client must get the body chunked, trailers and all, with or without
// filters on the route.
func TestABITrailersLengthAndTrailers(t *testing.T) {
	e := startABI(t)
	for _, route := range []string{"h2c-backend", "plain-h2c"} {
		t.Run(route, func(t *testing.T) {
			r := e.do(t, e.client(t, h1Client), abiReq{method: "GET", path: "/t---/length/" + route, header: []string{"x-filter", route}})
			r.ok(t, 200)
			want := "from-backend"
			if route == "h2c-backend" {
				if got := r.resp.Trailer.Get("X-Resp-Seen"); got != want {
					t.Errorf("x-resp-seen %q, want %q (trailers %v)", got, want, r.resp.Trailer)
				}
			}
			if r.body != "backend body" || r.resp.Trailer.Get("X-Resp-In") != want {
				t.Errorf("body %q, trailers %v, header %v", r.body, r.resp.Trailer, r.resp.Header)
			}
		})
	}
}

// TestABITrailerInjection: a filter that adds a trailer whose name carries CR LF and a second
// field gets no field of its making into the upstream request or the response.
func TestABITrailerInjection(t *testing.T) {
	e := startABI(t)
	t.Run("request", func(t *testing.T) {
		path := "/iq--/x"
		r := e.do(t, e.client(t, h1Client), abiReq{method: "POST", path: path, parts: []string{"payload"}, length: -1,
			trailer: http.Header{"X-In": {"from-client"}}})
		if r.err != nil {
			t.Fatal(r.err)
		}
		// The upstream request fails at its trailers: the backend may have seen its head or
		// nothing at all, but never a field of the filter's making.
		if s, saw := e.backendSaw(path); saw {
			if _, ok := s.Trailer["X-Injected"]; ok {
				t.Errorf("the filter injected a field into the upstream request's trailers: %v", s.Trailer)
			}
		}
		// The request could not be sent whole: the client must not see it succeed.
		if r.resp.StatusCode < 500 {
			t.Errorf("client got %d %v %q", r.resp.StatusCode, r.resp.Header, r.body)
		}
	})
	for _, cl := range abiClients {
		t.Run("response "+cl.name, func(t *testing.T) {
			r := e.do(t, e.client(t, cl.new), abiReq{method: "GET", path: "/is--/" + cl.name})
			r.ok(t, 200)
			if _, ok := r.resp.Trailer["X-Injected"]; ok || r.resp.Trailer.Get("X-Resp-In") != "from-backend" {
				t.Errorf("client trailers %v", r.resp.Trailer)
			}
		})
	}
}

// TestABITrailersAddedInBody: the spec lets a filter add trailers to a request (a response)
// that has none from its last proxy_on_request_body (proxy_on_response_body), with
// end_of_stream; Envoy then sends them after the body.
func TestABITrailersAddedInBody(t *testing.T) {
	e := startABI(t)
	for _, cl := range abiClients {
		t.Run(cl.name, func(t *testing.T) {
			path := "/e---/" + cl.name
			r := e.do(t, e.client(t, cl.new), abiReq{method: "POST", path: path, parts: []string{"payload"}, length: -1})
			r.ok(t, 200)
			if r.body != "backend body" {
				t.Errorf("client got body %q", r.body)
			}
			s, _ := e.backendSaw(path)
			if s.Body != "payload" || s.Trailer.Get("X-Added-In-Body") != "yes" {
				t.Errorf("backend got body %q, trailers %v; want x-added-in-body: yes", s.Body, s.Trailer)
			}
			if r.resp.Trailer.Get("X-Added-In-Body") != "yes" {
				t.Errorf("client got trailers %v; want x-added-in-body: yes", r.resp.Trailer)
			}
		})
	}
}

// TestABICloseStream: proxy_close_stream resets the client's stream: HTTP/1.1 loses the
// connection, h2c the stream only (the next request goes on the same connection). From the
// request headers the backend never hears of the request; from the response headers nothing
// of the backend's response reaches the client; from the response body, after the header
// went out, the client's body breaks off.
func TestABICloseStream(t *testing.T) {
	e := startABI(t)
	for _, cl := range abiClients {
		t.Run(cl.name, func(t *testing.T) {
			c := e.client(t, cl.new)
			good := func() {
				t.Helper()
				r := e.do(t, c, abiReq{method: "GET", path: "/n---/" + cl.name})
				r.ok(t, 200)
				if cl.name == "h2c" && !r.reused {
					t.Errorf("h2c: the request after a reset went on a new connection; the reset should end the stream only")
				}
			}
			// The request before a reset is on a fresh connection, the one after it on the
			// same one for h2c.
			if r := e.do(t, c, abiReq{method: "GET", path: "/n---/first/" + cl.name}); r.err != nil || r.resp.StatusCode != 200 {
				t.Fatalf("first request: %v", r.err)
			}
			reset := func(t *testing.T, err error) {
				t.Helper()
				switch {
				case err == nil:
					t.Errorf("no error: the stream was not reset")
				case cl.name == "h1" && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF):
					t.Errorf("HTTP/1.1: %v, want the connection closed (EOF)", err)
				case cl.name == "h2c" && !strings.Contains(err.Error(), "stream error"):
					t.Errorf("h2c: %v, want a stream reset (RST_STREAM)", err)
				}
			}
			// POST without a body: a request the client does not retry on its own.
			for _, tc := range []struct {
				name, mode  string
				reachesBack bool
			}{{"request headers", "c", false}, {"response headers", "r", true}} {
				t.Run(tc.name, func(t *testing.T) {
					path := "/" + tc.mode + "---/" + cl.name
					r := e.do(t, c, abiReq{method: "POST", path: path})
					if r.err == nil {
						t.Errorf("got a response: %d %v %q", r.resp.StatusCode, r.resp.Header, r.body)
					}
					reset(t, r.err)
					if _, saw := e.backendSaw(path); saw != tc.reachesBack {
						t.Errorf("backend saw the request: %v, want %v", saw, tc.reachesBack)
					}
					if cl.name == "h1" {
						// The connection is gone: the next request needs a new one.
						if r := e.do(t, c, abiReq{method: "GET", path: "/n---/after/" + tc.mode}); r.err != nil || r.reused {
							t.Errorf("after the reset: %v, reused connection %v", r.err, r.reused)
						}
					} else {
						good()
					}
				})
			}
			t.Run("response body", func(t *testing.T) {
				path := "/k---/" + cl.name
				r := e.do(t, c, abiReq{method: "POST", path: path})
				if r.err != nil {
					t.Fatalf("the header should have reached the client before the reset: %v", r.err)
				}
				if r.resp.StatusCode != 200 || r.resp.Header.Get("X-Backend") != "app" || r.resp.Header.Get("X-Abi-Resp") != "-" {
					t.Errorf("response header: %d %v", r.resp.StatusCode, r.resp.Header)
				}
				if strings.Contains(r.body, "part") {
					t.Errorf("the client got body the filter reset: %q", r.body)
				}
				reset(t, r.readErr)
				if cl.name == "h2c" {
					good()
				}
			})
		})
	}
}

// TestABILocalReply: proxy_send_local_response with a gRPC status and extra headers, and
// from the response-headers phase, where it replaces the backend's response.
func TestABILocalReply(t *testing.T) {
	e := startABI(t)
	for _, cl := range abiClients {
		t.Run(cl.name, func(t *testing.T) {
			c := e.client(t, cl.new)
			t.Run("grpc status", func(t *testing.T) {
				path := "/gh--/" + cl.name
				r := e.do(t, c, abiReq{method: "GET", path: path})
				r.ok(t, 403)
				h := r.resp.Header
				// Not a gRPC request: the filter's grpc_status is ignored, as Envoy ignores it.
				if h.Get("Grpc-Status") != "" || h.Get("Grpc-Message") != "" || h.Get("X-Local") != "grpc" ||
					h.Get("Content-Type") != "text/plain; charset=utf-8" || r.body != "denied by abi\n" ||
					r.resp.ContentLength != int64(len(r.body)) {
					t.Errorf("got %v %q", h, r.body)
				}
				if _, saw := e.backendSaw(path); saw {
					t.Errorf("the backend saw a request the filter answered")
				}
			})
			t.Run("grpc trailers-only", func(t *testing.T) {
				// A gRPC call that the filter refuses: what a gRPC client reads as
				// PERMISSION_DENIED, with the status in the only HEADERS frame.
				path := "/gt--/" + cl.name
				r := e.do(t, c, abiReq{method: "POST", path: path, parts: []string{string(grpcFrame("ping"))}, length: 9,
					header: []string{"content-type", "application/grpc", "te", "trailers"}})
				r.ok(t, 200)
				h := r.resp.Header
				if h.Get("Content-Type") != "application/grpc" || h.Get("Grpc-Status") != "7" || h.Get("Grpc-Message") != "abi_denied" ||
					h.Get("X-Local") != "grpc" || r.body != "" || len(r.resp.Trailer) != 0 {
					t.Errorf("got %v %q, trailers %v", h, r.body, r.resp.Trailer)
				}
				if _, saw := e.backendSaw(path); saw {
					t.Errorf("the backend saw a request the filter answered")
				}
			})
			t.Run("from the response headers", func(t *testing.T) {
				path := "/l---/" + cl.name
				r := e.do(t, c, abiReq{method: "GET", path: path})
				r.ok(t, 418)
				h := r.resp.Header
				if r.body != "replaced by abi\n" || h.Get("X-Local") != "response" || h.Get("X-Backend") != "" || h.Get("X-Abi-Resp") != "" {
					t.Errorf("got %v %q", h, r.body)
				}
				if _, saw := e.backendSaw(path); !saw {
					t.Errorf("the backend never saw the request")
				}
			})
			t.Run("from the response headers, in a chain", func(t *testing.T) {
				// abi-w answers; abi-u, before it in the chain, sees the reply in its response
				// phase and tags it. Neither sees the backend's response go out.
				path := "/l---/chain/" + cl.name
				r := e.do(t, c, abiReq{method: "GET", path: path, header: []string{"x-filter", "chain"}})
				r.ok(t, 418)
				h := r.resp.Header
				if r.body != "replaced by abi\n" || h.Get("X-Local") != "response" || h.Get("X-Backend") != "" ||
					!slices.Equal(h.Values("X-Abi-Resp"), []string{"U"}) {
					t.Errorf("got %v %q", h, r.body)
				}
			})
		})
	}
}

// TestABIBodyEdits: proxy_set_buffer_bytes replacing (start 0, size the whole), prepending
// (start 0, size 0) and appending (start the length, size 0), on request and response
// bodies, as the data streams through and after buffering the whole body (Pause until the
// end of the stream), with and without a Content-Length. The filter removes Content-Length
// from the header of a body it changes, so the body goes on chunked (HTTP/1.1) with its
// new length.
func TestABIBodyEdits(t *testing.T) {
	e := startABI(t)
	ops := []struct{ op, req, resp string }{
		{"r", "HELLO WORLD", "BACKEND BODY"},
		{"p", "<<hello world", "<<backend body"},
		{"a", "hello world>>", "backend body>>"},
	}
	for _, cl := range abiClients {
		c := e.client(t, cl.new)
		for _, op := range ops {
			for _, buf := range []string{"b", "s"} {
				for _, withLength := range []bool{true, false} {
					name := fmt.Sprintf("%s/%s/buffered=%v/content-length=%v", cl.name, op.op, buf == "b", withLength)
					t.Run("request "+name, func(t *testing.T) {
						path := fmt.Sprintf("/q%s%s-/%s/%v", op.op, buf, cl.name, withLength)
						length := int64(-1)
						if withLength {
							length = int64(len("hello world"))
						}
						r := e.do(t, c, abiReq{method: "POST", path: path, parts: []string{"hello ", "world"}, length: length})
						r.ok(t, 200)
						s, _ := e.backendSaw(path)
						if s.Body != op.req || s.BodyErr != "" {
							t.Errorf("backend got %q (%s), want %q", s.Body, s.BodyErr, op.req)
						}
						if s.ContentLength != -1 || !slices.Equal(s.TransferEncoding, []string{"chunked"}) || s.Header.Get("Content-Length") != "" {
							t.Errorf("backend got length %d, transfer-encoding %q, content-length %q; want it chunked",
								s.ContentLength, s.TransferEncoding, s.Header.Get("Content-Length"))
						}
					})
					t.Run("response "+name, func(t *testing.T) {
						shape := "l"
						if !withLength {
							shape = "c"
						}
						path := fmt.Sprintf("/s%s%s%s/%s", op.op, buf, shape, cl.name)
						r := e.do(t, c, abiReq{method: "GET", path: path})
						r.ok(t, 200)
						if r.body != op.resp {
							t.Errorf("client got %q, want %q", r.body, op.resp)
						}
						if r.resp.ContentLength != -1 && r.resp.ContentLength != int64(len(r.body)) {
							t.Errorf("content-length %d for a body of %d", r.resp.ContentLength, len(r.body))
						}
						if r.resp.Header.Get("X-Backend") != "app" || r.resp.Header.Get("X-Abi-Resp") != "-" {
							t.Errorf("response header %v", r.resp.Header)
						}
					})
				}
			}
		}
	}
}

// TestABIChainBody: two declarations of one module, each with its own configuration, on one
// route: abi-u buffers the whole body and upper-cases it, abi-w wraps the data of each of its
// body callbacks in "(w:" ")". In the request, abi-w runs second and gets abi-u's output in
// one piece, though the client sent it in two; in the response, abi-w runs first and abi-u
// upper-cases its output.
func TestABIChainBody(t *testing.T) {
	e := startABI(t)
	for _, cl := range abiClients {
		c := e.client(t, cl.new)
		for _, withLength := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/content-length=%v", cl.name, withLength), func(t *testing.T) {
				path := fmt.Sprintf("/h---/%s/%v", cl.name, withLength)
				length := int64(-1)
				if withLength {
					length = int64(len("hello world"))
				}
				r := e.do(t, c, abiReq{method: "POST", path: path, parts: []string{"hello ", "world"}, length: length,
					header: []string{"x-filter", "chain"}})
				r.ok(t, 200)
				s, _ := e.backendSaw(path)
				if s.Body != "(w:HELLO WORLD)" || s.BodyErr != "" {
					t.Errorf("backend got %q (%s), want %q", s.Body, s.BodyErr, "(w:HELLO WORLD)")
				}
				if r.body != "(W:BACKEND BODY)" {
					t.Errorf("client got %q, want %q", r.body, "(W:BACKEND BODY)")
				}
				// The response phase runs in reverse: abi-w adds its tag first.
				if got := r.resp.Header.Values("X-Abi-Resp"); !slices.Equal(got, []string{"W", "U"}) {
					t.Errorf("x-abi-resp %q, want [W U]", got)
				}
			})
		}
	}
}

// TestABILogLevels: proxy_log at every level reaches the gateway's log, tagged with the
// filter's name, from the filter's own log_level up; proxy_get_log_level reports that level.
func TestABILogLevels(t *testing.T) {
	e := startABI(t)
	c := e.client(t, h1Client)
	r := e.do(t, c, abiReq{method: "GET", path: "/v---/info"})
	r.ok(t, 200)
	if got := r.resp.Header.Get("X-Log-Level"); got != "2" {
		t.Errorf("abi (log_level info): proxy_get_log_level %q, want 2 (info)", got)
	}
	r = e.do(t, c, abiReq{method: "GET", path: "/v---/warn", header: []string{"x-filter", "warn"}})
	r.ok(t, 200)
	if got := r.resp.Header.Get("X-Log-Level"); got != "3" {
		t.Errorf("abi-warn (log_level warn): proxy_get_log_level %q, want 3 (warn)", got)
	}
	e.g.waitLog("abi: critical", 2)
	for _, tc := range []struct {
		msg, level string
		filters    []string
	}{
		{"abi: trace", "", nil},
		{"abi: debug", "", nil},
		{"abi: info", "INFO", []string{"abi"}},
		{"abi: warn", "WARN", []string{"abi", "abi-warn"}},
		{"abi: error", "ERROR", []string{"abi", "abi-warn"}},
		{"abi: critical", "CRITICAL", []string{"abi", "abi-warn"}},
	} {
		var filters []string
		for _, l := range e.g.findLogs(tc.msg) {
			f, _ := l["filter"].(string)
			filters = append(filters, f)
			if l["level"] != tc.level {
				t.Errorf("%q from %s logged at %v, want %s", tc.msg, f, l["level"], tc.level)
			}
		}
		slices.Sort(filters)
		if !slices.Equal(filters, tc.filters) {
			t.Errorf("%q logged by %q, want %q", tc.msg, filters, tc.filters)
		}
	}
}

// TestABINode: a filter reads the config's node: as Envoy's node attributes (strings raw,
// numbers as text, maps as JSON), and a reload that changes node: reaches the filter.
func TestABINode(t *testing.T) {
	e := startABI(t)
	c := e.client(t, h1Client)
	check := func(t *testing.T, path, want string) {
		t.Helper()
		r := e.do(t, c, abiReq{method: "GET", path: path})
		r.ok(t, 200)
		if got := r.resp.Header.Values("X-Node"); len(got) != 1 || got[0] != want {
			t.Errorf("%s: x-node %q, want %q", path, got, want)
		}
	}
	for _, tc := range []struct{ path, want string }{
		{"/nm", "eu-west-1"},
		{"/nd", "gold"},
		{"/ni", "gw-e2e"},
		{"/nc", "edge"},
		{"/nw", `{"labels":{"tier":"gold"},"region":"eu-west-1","replicas":3}`},
	} {
		t.Run(tc.path, func(t *testing.T) { check(t, tc.path, tc.want) })
	}

	e.g.writeConfig(strings.Replace(e.yaml, "region: eu-west-1", "region: us-east-2", 1))
	e.g.waitLog("config reloaded", 1)
	check(t, "/nm", "us-east-2")
}
