package h1

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
)

// protoError is a request the server refuses itself: the status it answers with
// (0: none, just close) and why, which goes to the log and, fixed text only, to the
// client.
type protoError struct {
	status int
	reason string
}

func (e *protoError) Error() string { return "h1: " + e.reason }

func badRequest(reason string) *protoError {
	return &protoError{status: http.StatusBadRequest, reason: reason}
}

var (
	errHeadTooLarge   = &protoError{status: http.StatusRequestHeaderFieldsTooLarge, reason: "request head larger than the server's MaxHeaderBytes"}
	errTooManyFields  = &protoError{status: http.StatusRequestHeaderFieldsTooLarge, reason: "more than 500 header fields"}
	errBadVersion     = &protoError{status: http.StatusHTTPVersionNotSupported, reason: "only HTTP/1.0 and HTTP/1.1 are served here"}
	errUnknownCoding  = &protoError{status: http.StatusNotImplemented, reason: "unsupported transfer coding"}
	errBadExpectation = &protoError{status: http.StatusExpectationFailed, reason: "only Expect: 100-continue is understood"}
)

// exchange is one request and its response: the objects a request needs, in one
// allocation.
type exchange struct {
	req    *http.Request
	cancel context.CancelCauseFunc
	url    url.URL
	w      response
	body   body
	vals   [8]string // the header's values, for a request with few fields

	// For watch.go. watch is set by the sweeper before it looks at starting a
	// background read; noBody is set before the handler runs; watched is the
	// sweeper's own; noWatch (under conn.wmu) says a background read must not start.
	// (The exchange is 512 bytes, a size class: mind the padding.)
	watch   atomic.Bool
	noBody  bool
	watched bool
	noWatch bool
}

// head is what the parser gathers from the framing fields of a request's header
// section as it goes through it.
type head struct {
	hosts     int
	host      string
	cls       int // Content-Length fields
	cl        string
	te        bool // a Transfer-Encoding field was there
	chunked   int  // chunked codings in it
	teLast    bool // the last coding is chunked
	teOther   bool // a coding other than chunked
	close     bool // Connection: close
	keepAlive bool // Connection: keep-alive
	expect    int  // 1: 100-continue, 2: something else
}

// parseRequest turns a request's head into the exchange that serves it, checking it
// as RFC 9112 asks (and more strictly where smuggling lies, see the package doc).
func (c *conn) parseRequest(raw string) (*exchange, *protoError) {
	line, rest, _ := strings.Cut(raw, "\n")
	line = strings.TrimSuffix(line, "\r")
	method, rest1, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest1, " ")
	if !ok1 || !ok2 {
		return nil, badRequest("malformed request line")
	}
	if !isToken(method) {
		return nil, badRequest("invalid method")
	}
	var minor int
	switch proto {
	case "HTTP/1.1":
		minor = 1
	case "HTTP/1.0":
	default:
		if len(proto) == len("HTTP/x.y") && strings.HasPrefix(proto, "HTTP/") &&
			isDigit(proto[5]) && proto[6] == '.' && isDigit(proto[7]) {
			return nil, errBadVersion
		}
		return nil, badRequest("malformed HTTP version")
	}

	ex := new(exchange)
	var r http.Request
	r.Method = method
	r.RequestURI = target
	r.ProtoMajor, r.ProtoMinor = 1, minor
	r.Proto = proto
	var perr *protoError
	if r.URL, perr = parseTarget(method, target, &ex.url); perr != nil {
		return nil, perr
	}
	var h head
	if r.Header, perr = c.parseFields(rest, ex, &h); perr != nil {
		return nil, perr
	}
	if perr = h.check(minor); perr != nil {
		return nil, perr
	}

	r.Host = r.URL.Host
	if r.Host == "" {
		r.Host = h.host
	}
	r.Close = h.close || minor == 0 && !h.keepAlive
	r.RemoteAddr = c.remoteAddr
	r.TLS = c.tls
	r.Body = http.NoBody
	switch {
	case h.chunked > 0:
		r.ContentLength = -1
		r.TransferEncoding = []string{"chunked"}
		if r.Trailer, perr = declaredTrailers(r.Header); perr != nil {
			return nil, perr
		}
		r.Body = &ex.body
		ex.body.chunked = true
	case h.cls > 0:
		n, ok := parseContentLength(h.cl)
		if !ok {
			return nil, badRequest("invalid Content-Length")
		}
		r.ContentLength = n
		if n > 0 {
			r.Body = &ex.body
			ex.body.remain = n
		}
	}
	if hp := r.Header["Pragma"]; len(hp) > 0 && hp[0] == "no-cache" && r.Header["Cache-Control"] == nil {
		r.Header["Cache-Control"] = []string{"no-cache"} // as net/http does, for HTTP/1.0 caches
	}

	ex.body.eof = r.Body == http.NoBody
	ex.noBody = ex.body.eof
	ctx, cancel := context.WithCancelCause(c.ctx)
	ex.req, ex.cancel = r.WithContext(ctx), cancel
	ex.body.c, ex.body.ex = c, ex
	ex.w.c, ex.w.ex = c, ex
	ex.w.header = c.header
	ex.w.contentLength = -1
	ex.w.isHEAD = method == "HEAD"
	if h.expect == 1 && minor == 1 && r.Body != http.NoBody {
		ex.body.expect.Store(true)
	}
	return ex, nil
}

// parseTarget checks the request-target's form against the method (RFC 9112 section
// 3.2) and returns its URL as net/http would.
func parseTarget(method, target string, u *url.URL) (*url.URL, *protoError) {
	switch {
	case target == "":
		return nil, badRequest("empty request-target")
	case method == "CONNECT":
		if !validHost(target, true) {
			return nil, badRequest("CONNECT needs an authority-form request-target (host:port)")
		}
		*u = url.URL{Host: target}
		return u, nil
	case target == "*":
		if method != "OPTIONS" {
			return nil, badRequest("request-target * is for OPTIONS only")
		}
		*u = url.URL{Path: "*"}
		return u, nil
	case target[0] == '/':
		pu, err := parseOriginForm(target, u)
		if err != nil {
			return nil, badRequest("invalid request-target")
		}
		return pu, nil
	}
	pu, err := url.ParseRequestURI(target)
	if err != nil || pu.Scheme == "" || pu.Host == "" || pu.Opaque != "" {
		return nil, badRequest("invalid absolute-form request-target")
	}
	return pu, nil
}

// parseFields parses the header section (after the request line, up to and including
// the blank line) into a header map, gathering the framing fields into h. Host and
// Transfer-Encoding are not put in the map, as net/http does not.
func (c *conn) parseFields(sec string, ex *exchange, h *head) (http.Header, *protoError) {
	n := strings.Count(sec, "\n") - 1
	if n > maxFields {
		return nil, errTooManyFields
	}
	hdr := make(http.Header, n)
	vals := ex.vals[:0]
	if n > len(ex.vals) {
		vals = make([]string, 0, n)
	}
	for {
		var line string
		line, sec, _ = strings.Cut(sec, "\n")
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			return hdr, nil
		}
		var key, value string
		var perr *protoError
		if key, value, perr = c.parseField(line); perr != nil {
			return nil, perr
		}
		switch key {
		case "Host":
			h.hosts++
			h.host = value
			continue
		case "Content-Length":
			h.cls++
			if h.cls > 1 {
				if value != h.cl {
					return nil, badRequest("differing Content-Length values")
				}
				continue
			}
			h.cl = value
		case "Transfer-Encoding":
			h.addCodings(value)
			continue
		case "Connection":
			h.close = h.close || hasToken(value, "close")
			h.keepAlive = h.keepAlive || hasToken(value, "keep-alive")
		case "Expect":
			if strings.EqualFold(value, "100-continue") && h.expect != 2 {
				h.expect = 1
			} else {
				h.expect = 2
			}
		}
		if vv, ok := hdr[key]; ok {
			hdr[key] = append(vv, value)
			continue
		}
		vals = append(vals, value)
		hdr[key] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
}

// parseField splits a field line (without its line ending) into its canonical name
// and its value, checking both: a token name right before the colon, no obs-fold, a
// value without control bytes.
func (c *conn) parseField(line string) (key, value string, _ *protoError) {
	if line[0] == ' ' || line[0] == '\t' {
		return "", "", badRequest("obs-fold (line folding) is not accepted")
	}
	name, value, ok := strings.Cut(line, ":")
	if !ok {
		return "", "", badRequest("header line without a colon")
	}
	if !isToken(name) {
		return "", "", badRequest("invalid header field name")
	}
	value = trimOWS(value)
	if !validValue(value) {
		return "", "", badRequest("invalid byte in a header field value")
	}
	key, c.scratch = canonicalKey(name, c.scratch)
	return key, value, nil
}

func (h *head) addCodings(v string) {
	h.te = true
	for v != "" {
		var coding string
		coding, v, _ = strings.Cut(v, ",")
		coding = trimOWS(coding)
		switch {
		case coding == "": // RFC 9110 section 5.6.1: empty list elements are allowed
			continue
		case strings.EqualFold(coding, "chunked"):
			h.chunked++
			h.teLast = true
		default:
			h.teOther = true
			h.teLast = false
		}
	}
}

// check applies the rules that need the whole header section: Host, and the body's
// framing (RFC 9112 sections 3.2 and 6).
func (h *head) check(minor int) *protoError {
	switch {
	case minor == 1 && h.hosts == 0:
		return badRequest("missing Host header")
	case h.hosts > 1:
		return badRequest("more than one Host header")
	case h.hosts == 1 && !validHost(h.host, false):
		return badRequest("malformed Host header")
	}
	if h.te {
		switch {
		case minor == 0:
			return badRequest("Transfer-Encoding in an HTTP/1.0 request")
		case h.cls > 0:
			return badRequest("both Transfer-Encoding and Content-Length")
		case !h.teLast || h.chunked != 1:
			return badRequest("Transfer-Encoding must end with chunked, once")
		case h.teOther:
			return errUnknownCoding
		}
	}
	if h.expect == 2 {
		return errBadExpectation
	}
	return nil
}

// declaredTrailers returns the Request.Trailer of a chunked request: the names its
// Trailer fields declare, without values until the body's end. The Trailer field
// itself leaves the header, as in net/http.
func declaredTrailers(hdr http.Header) (http.Header, *protoError) {
	decl, ok := hdr["Trailer"]
	if !ok {
		return nil, nil
	}
	delete(hdr, "Trailer")
	tr := make(http.Header)
	for _, v := range decl {
		for v != "" {
			var name string
			name, v, _ = strings.Cut(v, ",")
			if name = trimOWS(name); name == "" {
				continue
			}
			if !isToken(name) {
				return nil, badRequest("invalid name in Trailer")
			}
			switch key := http.CanonicalHeaderKey(name); key {
			case "Transfer-Encoding", "Trailer", "Content-Length":
				return nil, badRequest("Trailer declares a framing field")
			default:
				tr[key] = nil
			}
		}
	}
	return tr, nil
}

// parseContentLength accepts decimal digits only (no sign, no spaces, no list) and a
// length that fits in 63 bits.
func parseContentLength(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		d := s[i]
		if !isDigit(d) {
			return 0, false
		}
		if n > (1<<63-1-int64(d-'0'))/10 {
			return 0, false
		}
		n = n*10 + int64(d-'0')
	}
	return n, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
