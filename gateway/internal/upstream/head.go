package upstream

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// readHead reads the response to req from br when it is the common kind, the whole head in
// what br holds after one read: HTTP/1.1 or 1.0, a final status (200 and up, not 101), a
// header section with nothing net/http would rewrite, and a body framed by one
// Content-Length (or none at all, for HEAD, 204 and 304). Then it returns the response
// as http.ReadResponse would (handled true). Anything else it leaves in br untouched
// (handled false) for http.ReadResponse to read: chunked and close-delimited bodies,
// informational responses, obs-fold, Pragma, bad bytes. http.ReadResponse parses the
// head through net/textproto, a string per field and a map rebuilt per response: in
// profiles of the gateway that was a sixth of its CPU per proxied request.
//
// A read error before any byte is returned with handled true, as http.ReadResponse
// would return it.
func readHead(br *bufio.Reader, req *http.Request) (resp *http.Response, handled bool, err error) {
	if _, err := br.Peek(1); err != nil {
		return nil, true, err
	}
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, false, nil
	}
	resp, ok := parseHead(string(buf[:end+2]), req)
	if !ok {
		return nil, false, nil
	}
	br.Discard(end + 4)
	if resp.Body == nil {
		resp.Body = &lengthBody{br: br, left: resp.ContentLength}
	}
	return resp, true, nil
}

// parseHead parses head, the status line and header lines each ending in CRLF, into a
// response as http.ReadResponse makes it; false for anything it leaves to
// http.ReadResponse.
func parseHead(head string, req *http.Request) (*http.Response, bool) {
	line, rest, _ := strings.Cut(head, "\r\n")
	var major, minor int
	switch {
	case strings.HasPrefix(line, "HTTP/1.1 "):
		major, minor = 1, 1
	case strings.HasPrefix(line, "HTTP/1.0 "):
		major, minor = 1, 0
	default:
		return nil, false
	}
	code, reason, _ := strings.Cut(line[len("HTTP/1.1 "):], " ")
	if len(code) != 3 || code[0] < '2' || code[0] > '5' || !isDigits(code) || !validReason(reason) {
		return nil, false
	}
	status, _ := strconv.Atoi(code)
	resp := &http.Response{
		Status:     line[len("HTTP/1.1 "):], // as net/http has it: all after the version
		StatusCode: status,
		Proto:      line[:len("HTTP/1.1")],
		ProtoMajor: major,
		ProtoMinor: minor,
		Request:    req,
	}
	// Count the fields first, so that the map is made once at its size, and the fields'
	// first values share one backing array (a second value of a name gets its own).
	n := strings.Count(rest, "\r\n")
	h := make(http.Header, n)
	vals := make([]string, 0, n)
	length := int64(-1)
	conn := ""
	for rest != "" {
		var field string
		field, rest, _ = strings.Cut(rest, "\r\n")
		name, value, ok := strings.Cut(field, ":")
		if !ok || !httpguts.ValidHeaderFieldName(name) {
			return nil, false // includes obs-fold: a line starting with a space
		}
		value = strings.Trim(value, " \t")
		if !httpguts.ValidHeaderFieldValue(value) {
			return nil, false
		}
		key := http.CanonicalHeaderKey(name)
		switch key {
		case "Transfer-Encoding", "Pragma", "Trailer":
			return nil, false // framing, or fields net/http rewrites
		case "Content-Length":
			if length >= 0 || value == "" || !isDigits(value) || len(value) > 18 {
				return nil, false
			}
			length, _ = strconv.ParseInt(value, 10, 64)
		case "Connection":
			if conn != "" {
				return nil, false
			}
			conn = value
		}
		if vv, ok := h[key]; ok {
			h[key] = append(vv, value)
			continue
		}
		vals = append(vals, value)
		h[key] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	resp.Header = h
	// Connection: as net/http reads it (shouldClose), the field removed when it says close.
	switch {
	case major == 1 && minor == 0:
		resp.Close = !httpguts.HeaderValuesContainsToken(h["Connection"], "keep-alive")
	case httpguts.HeaderValuesContainsToken(h["Connection"], "close"):
		resp.Close = true
	}
	if resp.Close && httpguts.HeaderValuesContainsToken(h["Connection"], "close") {
		delete(h, "Connection")
	}
	// The framing, as net/http's readTransfer does it for these cases.
	switch {
	case status == http.StatusNoContent:
		return nil, false // rare; net/http has rules of its own for a length with it
	case req != nil && req.Method == http.MethodHead:
		resp.ContentLength = length // what the GET would have had, or -1
		resp.Body = http.NoBody
	case status == http.StatusNotModified:
		resp.Body = http.NoBody
	case length < 0:
		return nil, false // close-delimited
	case length == 0:
		resp.Body = http.NoBody
	default:
		resp.ContentLength = length
	}
	return resp, true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validReason: a reason phrase of visible characters, spaces and tabs.
func validReason(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// lengthBody is a Content-Length body read from br: EOF after length bytes, and
// io.ErrUnexpectedEOF if the connection ends before.
type lengthBody struct {
	br   *bufio.Reader
	left int64
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.br.Read(p)
	b.left -= int64(n)
	switch {
	case b.left == 0:
		return n, io.EOF
	case err == io.EOF:
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *lengthBody) Close() error { return nil }
