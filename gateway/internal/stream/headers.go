package stream

import (
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/gateway/internal/httpnorm"
)

// Shared, never-modified values: header operations replace or append (which copies, as the
// cap is 1), they never write into a value slice.
var (
	valUpgrade = []string{"Upgrade"}
	valTrailer = []string{"trailers"}
)

// IsUpgrade reports an HTTP/1.1 request asking to switch protocols (RFC 9110 7.8).
func IsUpgrade(r *http.Request) bool {
	return r.ProtoMajor == 1 && len(r.Header["Upgrade"]) > 0 && hasToken(r.Header["Connection"], "upgrade")
}

// hasToken reports whether a comma-separated header lists token, case-insensitively.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// RemoveHopByHop deletes the headers that describe one connection rather than the message
// (RFC 9110 7.6.1): Connection and every header it names, and the fixed list. keepUpgrade
// keeps what an Upgrade handshake needs. TE survives only as "trailers", which gRPC needs.
func RemoveHopByHop(h http.Header, keepUpgrade bool) {
	if conn, ok := h["Connection"]; ok {
		for _, v := range conn {
			for v != "" {
				var t string
				t, v, _ = strings.Cut(v, ",")
				if t = strings.TrimSpace(t); t != "" && !(keepUpgrade && strings.EqualFold(t, "upgrade")) {
					delete(h, http.CanonicalHeaderKey(t))
				}
			}
		}
		delete(h, "Connection")
	}
	delete(h, "Keep-Alive")
	delete(h, "Proxy-Connection")
	delete(h, "Transfer-Encoding")
	delete(h, "Trailer")
	if te, ok := h["Te"]; ok {
		if hasToken(te, "trailers") {
			h["Te"] = valTrailer
		} else {
			delete(h, "Te")
		}
	}
	if keepUpgrade {
		h["Connection"] = valUpgrade
	} else {
		delete(h, "Upgrade")
	}
}

// forwarded turns the client's forwarded headers into the ones sent upstream: kept and
// appended to from a trusted proxy, replaced by what the gateway saw from anyone else; and
// drops the headers addressed to the gateway as a proxy.
func forwarded(r *http.Request, l *Listener) {
	httpnorm.StripProxyHeaders(r.Header)
	httpnorm.SetForwarded(r.Header, httpnorm.Conn{RemoteAddr: r.RemoteAddr, TLS: l.TLS, Host: r.Host}, l.Trusted)
}

// PathPolicy is a listener's path normalization.
type PathPolicy = httpnorm.Policy

func normalizePath(path string, p *PathPolicy) (string, error) {
	return httpnorm.NormalizePath(path, *p)
}

// setEscapedPath sets r's path from its escaped form, and the request URI to match, which
// is what filters see as :path.
func setEscapedPath(r *http.Request, escaped string) {
	SetEscapedPath(r.URL, escaped)
	r.RequestURI = r.URL.RequestURI()
}

// SetEscapedPath sets the path of u from its escaped form.
func SetEscapedPath(u *url.URL, escaped string) {
	if p, err := url.PathUnescape(escaped); err == nil {
		u.Path, u.RawPath = p, escaped
	} else {
		u.Path, u.RawPath = escaped, ""
	}
}

// headerSize is the size of r's header block as HTTP/1.1 writes it: request line, Host, the
// fields and the blank line. net/http enforces MaxHeaderBytes loosely (an HTTP/1.1 server
// reads 4 KiB past it, HTTP/2 adds room per field), so the listener's limit is checked again
// here, the same way for every protocol.
func headerSize(r *http.Request) int64 {
	n := len(r.Method) + len(r.RequestURI) + len(" HTTP/1.1\r\n") + 1
	n += len("Host: \r\n") + len(r.Host)
	for k, vv := range r.Header {
		for _, v := range vv {
			n += len(k) + len(": \r\n") + len(v)
		}
	}
	return int64(n + len("\r\n"))
}

// newRequestID makes a random (version 4) UUID.
func newRequestID() string {
	const hex = "0123456789abcdef"
	var b [36]byte
	hi, lo := rand.Uint64(), rand.Uint64()
	hi = hi&^(0xf<<12) | 0x4<<12 // version 4
	lo = lo&^(0x3<<62) | 0x2<<62 // variant 10
	j := 0
	for i := 0; i < 32; i++ {
		if i == 8 || i == 12 || i == 16 || i == 20 {
			b[j] = '-'
			j++
		}
		var nib uint64
		if i < 16 {
			nib = hi >> (60 - 4*i) & 0xf
		} else {
			nib = lo >> (60 - 4*(i-16)) & 0xf
		}
		b[j] = hex[nib]
		j++
	}
	return string(b[:])
}

func protoName(r *http.Request) string {
	switch r.ProtoMajor {
	case 2:
		return "HTTP/2"
	case 3:
		return "HTTP/3"
	}
	return r.Proto
}

// defaultBufferLimit is what a filter may buffer on a listener without a body limit.
const defaultBufferLimit = config.DefaultMaxRequestBodyBytes
