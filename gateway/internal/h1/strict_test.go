package h1

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// strictMaxHeader is the table's MaxHeaderBytes: small, so that the limit cases are
// small too.
const strictMaxHeader = 8 << 10

// rawCase is one request as bytes and what the server must answer: a status, or 0
// for a close without an answer.
type rawCase struct {
	name   string
	raw    string
	status int
}

const (
	hostA   = "Host: a\r\n"
	chunked = "Transfer-Encoding: chunked\r\n"
)

func post(fields, body string) string {
	return "POST /p HTTP/1.1\r\n" + hostA + fields + "\r\n" + body
}

// rawCases is the corpus the strictness table and the differential test share.
var rawCases = []rawCase{
	// The request line.
	{"simple", get("/"), 200},
	{"bare LF line endings", "GET / HTTP/1.1\nHost: a\n\n", 200},
	{"leading CRLF", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", 200},
	{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505},
	{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
	{"HTTP/3.0", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505},
	{"HTTP/1.10", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400},
	{"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
	{"no version", "GET /\r\nHost: a\r\n\r\n", 400},
	{"two spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400},
	{"tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"method not a token", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"NUL in target", "GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"bare CR in request line", "GET / HTTP/1.1\r\rHost: a\r\n\r\n", 400},
	{"empty request line", "\r\n\r\n\r\n", 400},
	{"asterisk OPTIONS", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 200},
	{"asterisk GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"absolute-form", "GET http://example.com/x?y HTTP/1.1\r\nHost: other\r\n\r\n", 200},
	{"absolute-form without host", "GET http:/x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"authority-form GET", "GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"CONNECT authority-form", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 200},
	{"CONNECT origin-form", "CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"CONNECT without port", "CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"CONNECT without Host", "CONNECT example.com:443 HTTP/1.1\r\n\r\n", 400},
	{"percent-encoded path", get("/a%20b/%2F"), 200},
	{"bad percent-encoding", get("/a%zz"), 400},

	// Header fields.
	{"lower-case names", "GET / HTTP/1.1\r\nhost: a\r\nuser-agent: x\r\n\r\n", 200},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n", 400},
	{"obs-fold first line", "GET / HTTP/1.1\r\n X-A: a\r\nHost: a\r\n\r\n", 400},
	{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", 400},
	{"TE with space before colon", post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"), 400},
	{"name not a token", "GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n", 400},
	{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400},
	{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n", 400},
	{"bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", 400},
	{"CR before CRLF", "GET / HTTP/1.1\r\nHost: a\r\nX-A: ab\r\r\n\r\n", 400},
	{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", 400},
	{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x7fb\r\n\r\n", 400},
	{"tab and obs-text in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\tb\xff\r\n\r\n", 200},
	{"no Host", "GET / HTTP/1.1\r\n\r\n", 400},
	{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
	{"two Hosts in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400},
	{"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 200},
	{"Host with port", "GET / HTTP/1.1\r\nHost: a.example:8080\r\n\r\n", 200},
	{"Host IPv6", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 200},
	{"Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
	{"Host with user", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400},
	{"Host with bad port", "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400},
	{"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
	{"head at the limit", "GET / HTTP/1.1\r\nHost: a\r\nX-A: " + strings.Repeat("a", strictMaxHeader-len("GET / HTTP/1.1\r\nHost: a\r\nX-A: \r\n\r\n")) + "\r\n\r\n", 200},
	{"head over the limit", "GET / HTTP/1.1\r\nHost: a\r\nX-A: " + strings.Repeat("a", strictMaxHeader) + "\r\n\r\n", 431},
	{"head far over the limit", "GET / HTTP/1.1\r\nHost: a\r\nX-A: " + strings.Repeat("a", 3*strictMaxHeader) + "\r\n\r\n", 431},
	{"501 fields", "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-A: b\r\n", 500) + "\r\n", 431},
	{"Expect 100-continue", post("Expect: 100-continue\r\nContent-Length: 1\r\n", "x"), 200},
	{"Expect other", post("Expect: 200-ok\r\nContent-Length: 1\r\n", "x"), 417},

	// Content-Length.
	{"Content-Length", post("Content-Length: 5\r\n", "hello"), 200},
	{"Content-Length with OWS", post("Content-Length:  5 \r\n", "hello"), 200},
	{"Content-Length leading zeros", post("Content-Length: 005\r\n", "hello"), 200},
	{"Content-Length twice, same", post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"), 200},
	{"Content-Length twice, differing", post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), 400},
	{"Content-Length list", post("Content-Length: 5, 5\r\n", "hello"), 400},
	{"Content-Length plus sign", post("Content-Length: +5\r\n", "hello"), 400},
	{"Content-Length minus", post("Content-Length: -1\r\n", ""), 400},
	{"Content-Length hex", post("Content-Length: 0x5\r\n", "hello"), 400},
	{"Content-Length empty", post("Content-Length:\r\n", ""), 400},
	{"Content-Length overflow", post("Content-Length: 99999999999999999999\r\n", ""), 400},
	{"Content-Length inner space", post("Content-Length: 1 2\r\n", ""), 400},

	// Transfer-Encoding.
	{"chunked", post(chunked, "5\r\nhello\r\n0\r\n\r\n"), 200},
	{"chunked upper-case", post("Transfer-Encoding: CHUNKED\r\n", "5\r\nhello\r\n0\r\n\r\n"), 200},
	{"chunked extensions", post(chunked, "5;a=b;c\r\nhello\r\n0;d=\"e\"\r\n\r\n"), 200},
	{"chunked BWS extension", post(chunked, "5 ;a=b\r\nhello\r\n0\r\n\r\n"), 400},
	{"chunked trailers", post(chunked+"Trailer: X-T\r\n", "5\r\nhello\r\n0\r\nX-T: v\r\n\r\n"), 200},
	{"chunked zero-padded size", post(chunked, "0005\r\nhello\r\n0\r\n\r\n"), 200},
	{"CL and TE", post("Content-Length: 5\r\n"+chunked, "0\r\n\r\n"), 400},
	{"TE and CL", post(chunked+"Content-Length: 5\r\n", "0\r\n\r\n"), 400},
	{"TE chunked, identity", post("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n"), 400},
	{"TE identity", post("Transfer-Encoding: identity\r\n", "0\r\n\r\n"), 400},
	{"TE xchunked", post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"), 400},
	{"TE chunked twice", post("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"), 400},
	{"TE chunked in two fields", post(chunked+chunked, "0\r\n\r\n"), 400},
	{"TE empty", post("Transfer-Encoding: \r\n", "0\r\n\r\n"), 400},
	{"TE gzip, chunked", post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), 501},
	{"TE in HTTP/1.0", "POST / HTTP/1.0\r\n" + chunked + "\r\n0\r\n\r\n", 400},
	{"Trailer declares Content-Length", post(chunked+"Trailer: Content-Length\r\n", "0\r\n\r\n"), 400},

	// Chunked framing, found by the handler's read (then its 400).
	{"chunk size -1", post(chunked, "-1\r\nhello\r\n0\r\n\r\n"), 400},
	{"chunk size 0x10", post(chunked, "0x10\r\nhello\r\n0\r\n\r\n"), 400},
	{"chunk size +5", post(chunked, "+5\r\nhello\r\n0\r\n\r\n"), 400},
	{"chunk size overflow", post(chunked, "fffffffffffffffffff\r\nhello\r\n0\r\n\r\n"), 400},
	{"chunk size 64 bits", post(chunked, "8000000000000000\r\nhello\r\n0\r\n\r\n"), 400},
	{"chunk size empty", post(chunked, "\r\nhello\r\n0\r\n\r\n"), 400},
	{"chunk size space", post(chunked, "5 \r\nhello\r\n0\r\n\r\n"), 400},
	{"chunk size bare LF", post(chunked, "5\nhello\r\n0\r\n\r\n"), 400},
	{"no CRLF after chunk data", post(chunked, "5\r\nhelloX0\r\n\r\n"), 400},
	{"LF only after chunk data", post(chunked, "5\r\nhello\n0\r\n\r\n"), 400},
	{"chunk longer than its size", post(chunked, "3\r\nhello\r\n0\r\n\r\n"), 400},
	{"chunk extension too long", post(chunked, "5;"+strings.Repeat("a", 5000)+"\r\nhello\r\n0\r\n\r\n"), 400},
	{"chunk extension CTL", post(chunked, "5;a\x00\r\nhello\r\n0\r\n\r\n"), 400},
	{"trailer obs-fold", post(chunked, "0\r\nX-T: a\r\n b\r\n\r\n"), 400},
	{"trailer bad name", post(chunked, "0\r\nX T: a\r\n\r\n"), 400},
	{"trailer NUL", post(chunked, "0\r\nX-T: a\x00\r\n\r\n"), 400},
	{"trailers over the limit", post(chunked, "0\r\n"+strings.Repeat("X-T: "+strings.Repeat("a", 1000)+"\r\n", 10)+"\r\n"), 400},
}

// smuggled is pipelined behind each request the server must refuse: the handler must
// never see it.
func smuggled(i int) (string, string) {
	path := fmt.Sprintf("/smuggled-%d", i)
	return path, get(path)
}

func TestStrict(t *testing.T) {
	h := &recorder{}
	addr, _ := serve(t, h, func(s *Server) { s.MaxHeaderBytes = strictMaxHeader })
	for i, tc := range rawCases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, addr)
			path, next := smuggled(i)
			refused := tc.status >= 400
			if refused {
				c.send(tc.raw + next)
			} else {
				c.send(tc.raw)
			}
			resp, body, err := c.read(methodOf(tc.raw))
			switch {
			case tc.status == 0 && err == nil:
				t.Fatalf("got %s, want the connection closed", resp.Status)
			case tc.status != 0 && err != nil:
				t.Fatalf("reading the response: %v", err)
			case tc.status != 0 && resp.StatusCode != tc.status:
				t.Fatalf("got %s (%q), want %d", resp.Status, body, tc.status)
			}
			if refused {
				if !c.closed() {
					t.Errorf("the connection stayed open after a %d", tc.status)
				}
				if h.saw(path) {
					t.Errorf("the request pipelined behind a refused one reached the handler")
				}
			}
		})
	}
}

func methodOf(raw string) string {
	m, _, _ := strings.Cut(strings.TrimLeft(raw, "\r\n"), " ")
	return m
}

// TestStrictErrorResponse checks what the server's own answers look like.
func TestStrictErrorResponse(t *testing.T) {
	addr, _ := serve(t, &recorder{})
	c := newClient(t, addr)
	c.send("GET / HTTP/1.1\r\n\r\n")
	resp, body := c.mustRead("GET")
	if resp.StatusCode != http.StatusBadRequest || !resp.Close ||
		resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || !strings.HasPrefix(body, "400 Bad Request") {
		t.Fatalf("got %s %v %q", resp.Status, resp.Header, body)
	}
}
