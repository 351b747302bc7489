package upstream

import (
	"bufio"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// TestReadHeadMatchesNetHTTP: for every response head readHead takes, the response is
// the one http.ReadResponse makes of the same bytes, body and what is left in the buffer
// included; for the others it takes nothing from the buffer.
func TestReadHeadMatchesNetHTTP(t *testing.T) {
	const next = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"
	for _, tc := range []struct {
		method, raw string
		handled     bool
	}{
		{"GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello", true},
		{"GET", "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-multi: a\r\nX-Multi: b\r\nx-weird_name: v\r\n\r\nhello", true},
		{"GET", "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", true},
		{"GET", "HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok", true},
		{"GET", "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", true},
		{"GET", "HTTP/1.1 599 Whatever It Is\r\nContent-Length: 2\r\n\r\nok", true},
		{"GET", "HTTP/1.1 200 OK\r\nX-Spaces:   padded \t \r\nContent-Length: 2\r\n\r\nok", true},
		{"GET", "HTTP/1.1 200 OK\r\nX-Empty:\r\nContent-Length: 2\r\n\r\nok", true},
		{"GET", "HTTP/1.1 200 OK\r\nX-Obs: caf\xc3\xa9\r\nContent-Length: 2\r\n\r\nok", true},
		{"GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", true},
		{"GET", "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nok", true},
		{"GET", "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", true},
		{"GET", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", true},
		{"GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", true},
		{"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", true},
		{"HEAD", "HTTP/1.1 200 OK\r\nX-A: b\r\n\r\n", true},
		{"GET", "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", true},
		{"GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 20\r\n\r\n", true},
		// Left to http.ReadResponse:
		{"GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false},
		{"GET", "HTTP/1.1 200 OK\r\n\r\n", false}, // close-delimited
		{"GET", "HTTP/1.1 204 No Content\r\n\r\n", false},
		{"GET", "HTTP/1.1 100 Continue\r\n\r\n", false},
		{"GET", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", false},
		{"GET", "HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 2\r\n\r\nok", false},
		{"GET", "HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 2\r\n\r\nok", false},
		{"GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", false},
		{"GET", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", false},
		{"GET", "HTTP/1.1 200 OK\r\nBad Name: v\r\nContent-Length: 2\r\n\r\nok", false},
		{"GET", "HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\nok", false},
		{"GET", "HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok", false},
		{"GET", "HTTP/1.1  200 OK\r\nContent-Length: 2\r\n\r\nok", false},
		{"GET", "HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok", false},
		{"GET", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", false},
	} {
		req, _ := http.NewRequest(tc.method, "http://x/", nil)
		br := bufio.NewReaderSize(strings.NewReader(tc.raw+next), 4096)
		br.Peek(1)
		got, handled, err := readHead(br, req)
		if err != nil || handled != tc.handled {
			t.Errorf("%q: handled %v, %v; want %v", tc.raw, handled, err, tc.handled)
			continue
		}
		if !handled {
			if br.Buffered() != len(tc.raw+next) {
				t.Errorf("%q: left %d bytes of %d in the buffer", tc.raw, br.Buffered(), len(tc.raw+next))
			}
			continue
		}
		want, err := http.ReadResponse(bufio.NewReader(strings.NewReader(tc.raw+next)), req)
		if err != nil {
			t.Fatalf("%q: net/http: %v", tc.raw, err)
		}
		gotBody, gerr := io.ReadAll(got.Body)
		wantBody, werr := io.ReadAll(want.Body)
		if string(gotBody) != string(wantBody) || (gerr == nil) != (werr == nil) {
			t.Errorf("%q: body %q, %v; net/http %q, %v", tc.raw, gotBody, gerr, wantBody, werr)
		}
		for _, r := range []*http.Response{got, want} {
			r.Body = nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q:\n got %+v\nwant %+v", tc.raw, got, want)
		}
		if rest, _ := io.ReadAll(br); string(rest) != next {
			t.Errorf("%q: left %q after the response, want the next one", tc.raw, rest)
		}
	}
}

// TestLengthBodyCutShort: a Content-Length body the connection ends early is an
// unexpected EOF, not a short body.
func TestLengthBodyCutShort(t *testing.T) {
	req, _ := http.NewRequest("GET", "http://x/", nil)
	br := bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
	resp, handled, err := readHead(br, req)
	if !handled || err != nil {
		t.Fatal(handled, err)
	}
	b, err := io.ReadAll(resp.Body)
	if string(b) != "abc" || err != io.ErrUnexpectedEOF {
		t.Fatalf("body %q, %v; want abc and io.ErrUnexpectedEOF", b, err)
	}
}

// TestReadHeadFieldsApart: the fields' values share one array, and a value appended to
// one field (a filter adding to a header) lands in a slice of its own, not in the next
// field's value; the head costs a fixed number of allocations, not one per field.
func TestReadHeadFieldsApart(t *testing.T) {
	const raw = "HTTP/1.1 200 OK\r\nX-A: a\r\nX-B: b\r\nX-C: c\r\nX-D: d\r\nContent-Length: 0\r\n\r\n"
	req, _ := http.NewRequest("GET", "http://x/", nil)
	resp, handled, err := readHead(bufio.NewReader(strings.NewReader(raw)), req)
	if !handled || err != nil {
		t.Fatal(handled, err)
	}
	resp.Header["X-A"] = append(resp.Header["X-A"], "a2")
	for k, want := range map[string]string{"X-A": "a,a2", "X-B": "b", "X-C": "c", "X-D": "d"} {
		if got := strings.Join(resp.Header[k], ","); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	sr := strings.NewReader(raw)
	br := bufio.NewReaderSize(sr, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		sr.Reset(raw)
		br.Reset(sr)
		if _, handled, err := readHead(br, req); !handled || err != nil {
			t.Fatal(handled, err)
		}
	})
	// The head's string, the response, the map (two) and the values' array.
	if allocs > 5 {
		t.Errorf("%v allocations for a head of 5 fields, want at most 5", allocs)
	}
}
