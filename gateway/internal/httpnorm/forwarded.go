package httpnorm

import (
	"net/http"
	"net/netip"
	"strings"
)

// Conn is what the gateway saw of a request's connection.
type Conn struct {
	RemoteAddr string // the peer, "ip:port" as in http.Request.RemoteAddr (a bare ip will do)
	TLS        bool   // whether the client connected with TLS: X-Forwarded-Proto https
	Host       string // the request's Host (http.Request.Host), for X-Forwarded-Host
}

// Canonical header keys, spelled as http.CanonicalHeaderKey spells them.
const (
	hdrXFF     = "X-Forwarded-For"
	hdrXFProto = "X-Forwarded-Proto"
	hdrXFHost  = "X-Forwarded-Host"
	hdrFwd     = "Forwarded"
	hdrRealIP  = "X-Real-Ip"
)

// Shared, never-modified values: SetForwarded replaces or appends (which copies,
// as the cap is 1), it never writes into a value slice, and neither may a caller.
var (
	valHTTP  = []string{"http"}
	valHTTPS = []string{"https"}
)

// SetForwarded rewrites h, the header of a request that came on c, into the one
// the backend gets: X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and
// Forwarded are kept and appended to if the peer is in trusted, and replaced by
// what the gateway saw otherwise (the package documentation has the details). It
// returns the real client's address, as ClientAddr finds it, for filters; it is
// the zero Addr if c.RemoteAddr is not an address, in which case h gets no
// X-Forwarded-For at all.
//
// With no trusted proxies and no X-Forwarded-For from the client it allocates once.
func SetForwarded(h http.Header, c Conn, trusted []netip.Prefix) netip.Addr {
	peer, ip := peerAddr(c.RemoteAddr)
	scheme := valHTTP
	if c.TLS {
		scheme = valHTTPS
	}
	if !isTrusted(peer, trusted) {
		delete(h, hdrFwd)
		delete(h, hdrRealIP)
		h[hdrXFProto] = scheme
		switch {
		case ip != "" && c.Host != "":
			// One allocation for both values; cap 1 each, so an append copies.
			v := []string{ip, c.Host}
			h[hdrXFF], h[hdrXFHost] = v[0:1:1], v[1:2:2]
		case ip != "":
			h[hdrXFF] = []string{ip}
			delete(h, hdrXFHost)
		case c.Host != "":
			delete(h, hdrXFF)
			h[hdrXFHost] = []string{c.Host}
		default:
			delete(h, hdrXFF)
			delete(h, hdrXFHost)
		}
		return peer
	}

	client := ClientAddr(peer, h[hdrXFF], trusted)
	h[hdrXFF] = []string{appendList(h[hdrXFF], ip)}
	if !present(h[hdrXFProto]) {
		h[hdrXFProto] = scheme
	}
	if !present(h[hdrXFHost]) && c.Host != "" {
		h[hdrXFHost] = []string{c.Host}
	}
	if present(h[hdrFwd]) {
		// RFC 7239 section 6: an IPv6 node is bracketed, and then, as ':' is not a
		// token character, quoted.
		elem := "for=" + ip + ";proto=" + scheme[0]
		if peer.Is6() {
			elem = `for="[` + ip + `]";proto=` + scheme[0]
		}
		h[hdrFwd] = []string{appendList(h[hdrFwd], elem)}
	}
	return client
}

// ClientAddr returns the address of the client a request really came from: peer
// if it is not in trusted, and otherwise the first address not in trusted walking
// xff (the request's X-Forwarded-For values, as received) from the right, or the
// left-most one if all are trusted, as Envoy's xff_trusted_cidrs with recurse
// does. An entry that is not an address ends the walk at the trusted proxy that
// passed it on. Addresses are unmapped and lose their zone. It does not allocate.
func ClientAddr(peer netip.Addr, xff []string, trusted []netip.Prefix) netip.Addr {
	cur := peer.Unmap().WithZone("")
	for i := len(xff) - 1; i >= 0; i-- {
		v := xff[i]
		for v != "" {
			if !isTrusted(cur, trusted) {
				return cur
			}
			var entry string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				entry, v = v[j+1:], v[:j]
			} else {
				entry, v = v, ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			a, ok := parseXFFEntry(entry)
			if !ok {
				return cur
			}
			cur = a
		}
	}
	return cur
}

// StripProxyHeaders deletes the request headers addressed to the gateway as a
// proxy, which must not reach a backend: Proxy-Authorization holds credentials
// for this hop (RFC 9110 11.7.4), Proxy-Connection is a pre-standard
// Connection. httputil.ReverseProxy drops both too.
func StripProxyHeaders(h http.Header) {
	delete(h, "Proxy-Authorization")
	delete(h, "Proxy-Connection")
}

// peerAddr parses RemoteAddr, with or without a port, into an unmapped, zoneless
// address and its text. The text is the substring of remote that parsed as the
// address, so that the common case does not allocate; only a mapped or zoned
// address is printed afresh.
func peerAddr(remote string) (netip.Addr, string) {
	var a netip.Addr
	host := remote
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		a = ap.Addr()
		host = remote[:strings.LastIndexByte(remote, ':')]
		if host[0] == '[' {
			host = host[1 : len(host)-1]
		}
	} else if a, err = netip.ParseAddr(remote); err != nil {
		return netip.Addr{}, ""
	}
	if a.Is4In6() || a.Zone() != "" {
		a = a.Unmap().WithZone("")
		return a, a.String()
	}
	return a, host
}

// parseXFFEntry parses one X-Forwarded-For entry: an address, possibly with a
// port, possibly bracketed, as proxies write them.
func parseXFFEntry(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
				return netip.Addr{}, false
			}
			if a, err = netip.ParseAddr(s[1 : len(s)-1]); err != nil {
				return netip.Addr{}, false
			}
		} else {
			a = ap.Addr()
		}
	}
	return a.Unmap().WithZone(""), true
}

// isTrusted reports whether a is in one of the prefixes. A listener has a few, so
// a linear scan beats anything cleverer.
func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// present reports a header with a non-blank value.
func present(vv []string) bool {
	for _, v := range vv {
		if strings.TrimSpace(v) != "" {
			return true
		}
	}
	return false
}

// appendList joins a comma-separated header's values, skipping blank ones, and
// appends elem, in one allocation.
func appendList(vv []string, elem string) string {
	if !present(vv) {
		return elem
	}
	n := len(elem)
	for _, v := range vv {
		n += len(v) + 2
	}
	var b strings.Builder
	b.Grow(n)
	for _, v := range vv {
		if v = strings.TrimSpace(v); v != "" {
			b.WriteString(v)
			b.WriteString(", ")
		}
	}
	b.WriteString(elem)
	return b.String()
}
