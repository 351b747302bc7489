package h1

import (
	"net/http"
	"net/url"
	"strings"
)

// The byte classes of RFC 9110 section 5.6.2 (tchar) and 5.5 (field-vchar, obs-text),
// as tables: the parser looks every byte of a request's head up in one of them.
var (
	tokenTable [256]bool // tchar
	valueTable [256]bool // field-vchar, obs-text, SP, HTAB
	// pathTable holds the bytes url.ParseRequestURI keeps as they are in a path (it
	// would neither unescape them nor set URL.RawPath): a target made of these and
	// a query takes the fast path of parseTarget.
	pathTable [256]bool
)

func init() {
	for c := '0'; c <= '9'; c++ {
		tokenTable[c], pathTable[c] = true, true
	}
	for c := 'a'; c <= 'z'; c++ {
		tokenTable[c], pathTable[c] = true, true
		tokenTable[c-'a'+'A'], pathTable[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		tokenTable[c] = true
	}
	for _, c := range "-_.~$&+,/:;=@" {
		pathTable[c] = true
	}
	for c := 0x21; c < 0x100; c++ {
		valueTable[c] = c != 0x7f
	}
	valueTable[' '], valueTable['\t'] = true, true
}

// isToken reports whether s is a non-empty token (RFC 9110 section 5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenTable[s[i]] {
			return false
		}
	}
	return true
}

// validValue reports whether s holds only bytes a field value may hold: no CR, LF, NUL
// or other control byte but HTAB.
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if !valueTable[s[i]] {
			return false
		}
	}
	return true
}

// trimOWS strips the optional whitespace (SP, HTAB) around a field value.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// isCanonical reports whether the token name is already in http.CanonicalHeaderKey's
// form, so that the parser can use the request's own bytes as the map key.
func isCanonical(name string) bool {
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}

// canonicalKey returns the canonical form of the token name, using scratch to build
// it and an interned string for common names, so that a client sending lower-case
// names (as HTTP/2-minded clients do) costs no allocation for them.
func canonicalKey(name string, scratch []byte) (string, []byte) {
	if isCanonical(name) {
		return name, scratch
	}
	b := append(scratch[:0], name...)
	upper := true
	for i, c := range b {
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
		upper = c == '-'
	}
	if s, ok := commonKeys[string(b)]; ok {
		return s, b
	}
	return string(b), b
}

// commonKeys interns the header names most requests carry.
var commonKeys = func() map[string]string {
	m := make(map[string]string)
	for _, k := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges",
		"Authorization", "Cache-Control", "Connection", "Content-Encoding", "Content-Length",
		"Content-Type", "Cookie", "Date", "Dnt", "Expect", "Forwarded", "Grpc-Timeout",
		"Grpc-Encoding", "Grpc-Accept-Encoding", "Host", "If-Match", "If-Modified-Since",
		"If-None-Match", "If-Range", "If-Unmodified-Since", "Keep-Alive", "Origin", "Pragma",
		"Range", "Referer", "Sec-Ch-Ua", "Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform",
		"Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-User", "Te",
		"Trailer", "Traceparent", "Tracestate", "Transfer-Encoding", "Upgrade",
		"Upgrade-Insecure-Requests", "User-Agent", "Via", "X-Forwarded-For",
		"X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip", "X-Request-Id",
	} {
		m[k] = k
	}
	return m
}()

// hasToken reports whether the comma-separated list s holds token t, ignoring case
// (Connection: keep-alive, Upgrade).
func hasToken(s, t string) bool {
	for s != "" {
		var elem string
		elem, s, _ = strings.Cut(s, ",")
		if strings.EqualFold(trimOWS(elem), t) {
			return true
		}
	}
	return false
}

// validHost reports whether h is a valid Host field value: empty (RFC 9112 section
// 3.2 allows that for a target without authority), or uri-host [":" port] of RFC 3986
// section 3.2.2: an IP-literal in brackets, or a reg-name (which covers IPv4
// addresses) of unreserved, sub-delims and percent-encodings. With needPort, as for
// a CONNECT's authority-form (RFC 9112 section 3.2.3), the port must be there.
func validHost(h string, needPort bool) bool {
	host, port := h, ""
	hasPort := false
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return false
		}
		host, port = h[1:end], h[end+1:]
		if port != "" {
			if port[0] != ':' {
				return false
			}
			port, hasPort = port[1:], true
		}
		if !validIPLiteral(host) {
			return false
		}
	} else {
		if i := strings.LastIndexByte(h, ':'); i >= 0 {
			host, port, hasPort = h[:i], h[i+1:], true
		}
		if !validRegName(host) {
			return false
		}
	}
	if needPort && (!hasPort || port == "" || host == "") {
		return false
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return false
		}
	}
	return len(port) <= 5
}

// validRegName checks reg-name = *( unreserved / pct-encoded / sub-delims ).
func validRegName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~!$&'()*+,;=", c) >= 0:
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 2
		default:
			return false
		}
	}
	return true
}

// validIPLiteral checks the inside of [ ]: an IPv6 address (hex digits, colons and
// dots for an embedded IPv4 address) or an IPvFuture ("v" 1*HEXDIG "." ...), loosely:
// enough that no byte outside those sets can pass.
func validIPLiteral(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isHex(c) && c != ':' && c != '.' && c != 'v' && c != 'V' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// parseOriginForm returns the URL url.ParseRequestURI would return for an
// origin-form target, without its allocations when the path holds only bytes it
// keeps as they are; anything else (percent-encodings, bytes it would escape) goes to
// url.ParseRequestURI itself. TestParseOriginForm compares the two.
func parseOriginForm(target string, u *url.URL) (*url.URL, error) {
	path, query := target, ""
	q := strings.IndexByte(target, '?')
	if q >= 0 {
		path, query = target[:q], target[q+1:]
	}
	for i := 0; i < len(path); i++ {
		if !pathTable[path[i]] {
			return url.ParseRequestURI(target)
		}
	}
	for i := 0; i < len(query); i++ {
		if c := query[i]; c < ' ' || c == 0x7f {
			return url.ParseRequestURI(target)
		}
	}
	*u = url.URL{Path: path, RawQuery: query, ForceQuery: q == len(target)-1}
	return u, nil
}

// appendStatusLine appends "HTTP/1.x NNN Reason\r\n" for a status code, the reason
// from http.StatusText, or "status NNN" for a code without one.
func appendStatusLine(b []byte, http11 bool, code int) []byte {
	if http11 {
		b = append(b, "HTTP/1.1 "...)
	} else {
		b = append(b, "HTTP/1.0 "...)
	}
	b = append(b, byte('0'+code/100), byte('0'+code/10%10), byte('0'+code%10), ' ')
	if text := http.StatusText(code); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status "...)
		b = append(b, byte('0'+code/100), byte('0'+code/10%10), byte('0'+code%10))
	}
	return append(b, "\r\n"...)
}
