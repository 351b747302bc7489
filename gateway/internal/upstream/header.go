package upstream

import (
	"bufio"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// tchar is the token alphabet of RFC 9110 §5.6.2, for methods and field names.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tchar[s[i]] {
			return false
		}
	}
	return true
}

// validValue rejects control characters other than HTAB (RFC 9110 §5.5). CR and LF
// matter most: written as is they would end the field and let the value inject
// headers or a whole second request.
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validNoSpace is for the request-target and Host, where a space would also split
// the request line or the value.
func validNoSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// target is the request-target in pieces, so that it can be validated and written
// without first concatenating it as url.URL.RequestURI does.
type target struct {
	a, b, c  string // joined: the origin-form path, or the opaque form
	query    string
	hasQuery bool
}

func makeTarget(u *url.URL) target {
	var t target
	if u.Opaque != "" {
		t.c = u.Opaque
		if strings.HasPrefix(u.Opaque, "//") {
			t.a, t.b = u.Scheme, ":"
		}
	} else {
		// EscapedPath returns Path itself when it needs no escaping, so this does
		// not allocate for ordinary paths.
		t.c = u.EscapedPath()
		if t.c == "" {
			t.c = "/"
		}
	}
	t.query = u.RawQuery
	t.hasQuery = u.ForceQuery || u.RawQuery != ""
	return t
}

func (t *target) valid() bool {
	return validNoSpace(t.a) && validNoSpace(t.b) && validNoSpace(t.c) && validNoSpace(t.query)
}

// skipField reports whether a request header field is one this package writes itself:
// Host from req.Host, and the framing fields, which must match how the body is sent.
// Trailer is ours only when we announce req.Trailer.
func skipField(k string, ownTrailer bool) bool {
	switch len(k) {
	case 4:
		return strings.EqualFold(k, "Host")
	case 7:
		return ownTrailer && strings.EqualFold(k, "Trailer")
	case 14:
		return strings.EqualFold(k, "Content-Length")
	case 17:
		return strings.EqualFold(k, "Transfer-Encoding")
	}
	return false
}

// hasCloseToken reports whether Connection field values vv contain "close".
func hasCloseToken(vv []string) bool {
	for _, v := range vv {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(tok), "close") {
				return true
			}
		}
	}
	return false
}

// Body framing of an outgoing request.
const (
	frameNone    = iota // no body
	frameLength         // Content-Length
	frameChunked        // Transfer-Encoding: chunked
)

// plan is what RoundTrip decides about a request before it touches a connection.
type plan struct {
	method  string
	host    string
	target  target
	framing int
	length  int64
	close   bool // the request asks for the connection to be closed after it
	// emptyLength: a bodyless POST, PUT or PATCH still gets "Content-Length: 0";
	// some servers answer 411 Length Required without it.
	emptyLength bool
}

var (
	errNoURL       = errors.New("request has no URL")
	errNoHost      = errors.New("request has no Host")
	errBadMethod   = errors.New("invalid method")
	errBadHost     = errors.New("invalid Host")
	errBadTarget   = errors.New("invalid request target")
	errNilBody     = errors.New("ContentLength > 0 with nil Body")
	errBadName     = errors.New("invalid header field name")
	errBadValue    = errors.New("invalid header field value")
	errBadTrailer  = errors.New("invalid trailer field name")
	errBadTrailerV = errors.New("invalid trailer field value")
)

// makePlan validates req completely, so that an invalid request is refused before any
// of it reaches a connection; a half-written request would poison the connection.
func makePlan(req *http.Request) (plan, error) {
	var p plan
	p.method = req.Method
	if p.method == "" {
		p.method = http.MethodGet
	}
	if !validToken(p.method) {
		return p, errBadMethod
	}
	if req.URL == nil {
		return p, errNoURL
	}
	p.host = req.Host
	if p.host == "" {
		p.host = req.URL.Host
	}
	if p.host == "" {
		return p, errNoHost
	}
	if !validNoSpace(p.host) {
		return p, errBadHost
	}
	p.target = makeTarget(req.URL)
	if !p.target.valid() {
		return p, errBadTarget
	}

	switch {
	case req.Body == nil || req.Body == http.NoBody:
		if req.ContentLength > 0 {
			return p, errNilBody
		}
		p.framing = frameNone
		switch p.method {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			p.emptyLength = true
		}
	case req.ContentLength > 0:
		p.framing = frameLength
		p.length = req.ContentLength
	default:
		// A body with ContentLength 0 is of unknown length, as net/http's client
		// treats it: such a request comes from code that did not count its body.
		p.framing = frameChunked
	}

	p.close = req.Close
	ownTrailer := p.framing == frameChunked && len(req.Trailer) > 0
	for k, vv := range req.Header {
		if !validToken(k) {
			return p, errBadName
		}
		if skipField(k, ownTrailer) {
			continue
		}
		for _, v := range vv {
			if !validValue(v) {
				return p, errBadValue
			}
		}
		if len(k) == 10 && strings.EqualFold(k, "Connection") && hasCloseToken(vv) {
			p.close = true
		}
	}
	if ownTrailer {
		for k := range req.Trailer {
			if !validToken(k) || skipField(k, false) {
				return p, errBadTrailer
			}
		}
	}
	return p, nil
}

// writeHead writes the request line and header block into w, unflushed.
// Writing to a bufio.Writer only fails once its underlying writer has, so the error
// is left for the Flush that follows.
func writeHead(w *bufio.Writer, req *http.Request, p *plan) {
	w.WriteString(p.method)
	w.WriteByte(' ')
	w.WriteString(p.target.a)
	w.WriteString(p.target.b)
	w.WriteString(p.target.c)
	if p.target.hasQuery {
		w.WriteByte('?')
		w.WriteString(p.target.query)
	}
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(p.host)
	w.WriteString("\r\n")

	ownTrailer := p.framing == frameChunked && len(req.Trailer) > 0
	for k, vv := range req.Header {
		if skipField(k, ownTrailer) {
			continue
		}
		for _, v := range vv {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}

	switch p.framing {
	case frameLength:
		w.WriteString("Content-Length: ")
		writeInt(w, p.length, 10)
		w.WriteString("\r\n")
	case frameChunked:
		w.WriteString("Transfer-Encoding: chunked\r\n")
		if ownTrailer {
			w.WriteString("Trailer: ")
			first := true
			for k := range req.Trailer {
				if !first {
					w.WriteString(", ")
				}
				first = false
				w.WriteString(k)
			}
			w.WriteString("\r\n")
		}
	default:
		if p.emptyLength {
			w.WriteString("Content-Length: 0\r\n")
		}
	}
	if req.Close && !hasCloseToken(req.Header["Connection"]) {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
}

// writeInt formats n straight into w's free buffer space instead of a temporary.
func writeInt(w *bufio.Writer, n int64, base int) {
	if w.Available() < 20 {
		w.Flush()
	}
	w.Write(strconv.AppendInt(w.AvailableBuffer(), n, base))
}
