package gateway

import (
	"net"
	"net/http"
	"strings"
)

// Shared, never-modified values: header operations replace or append (which copies, as the
// cap is 1), they never write into a value slice.
var (
	valHTTP    = []string{"http"}
	valHTTPS   = []string{"https"}
	valUpgrade = []string{"Upgrade"}
	valTrailer = []string{"trailers"}
)

// isUpgrade reports an HTTP/1.1 request asking to switch protocols (RFC 9110 7.8).
func isUpgrade(r *http.Request) bool {
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

// removeHopByHop deletes the headers that describe one connection rather than the message
// (RFC 9110 7.6.1): Connection and every header it names, and the fixed list. keepUpgrade
// keeps what an Upgrade handshake needs. TE survives only as "trailers", which gRPC needs.
func removeHopByHop(h http.Header, keepUpgrade bool) {
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

// prepareRequestHeader turns the client's header into the one sent upstream: hop-by-hop
// headers go, X-Forwarded-For gains the client's address, X-Forwarded-Proto and
// X-Forwarded-Host say what the client asked for.
func prepareRequestHeader(r *http.Request, tls, upgrade bool) {
	h := r.Header
	removeHopByHop(h, upgrade)
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	if prior, ok := h["X-Forwarded-For"]; ok && len(prior) > 0 {
		h["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + ip}
	} else {
		h["X-Forwarded-For"] = []string{ip}
	}
	if tls {
		h["X-Forwarded-Proto"] = valHTTPS
	} else {
		h["X-Forwarded-Proto"] = valHTTP
	}
	h["X-Forwarded-Host"] = []string{r.Host}
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
