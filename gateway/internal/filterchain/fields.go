package filterchain

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/plexus-mesh/plexus/runtime/proxywasm"
)

// AppendFields appends h's fields with lower-case names, in a stable order.
func AppendFields(dst []proxywasm.Field, h http.Header) []proxywasm.Field {
	var stack [32]string
	keys := stack[:0]
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		lk := LowerKey(k)
		for _, v := range h[k] {
			dst = append(dst, proxywasm.Field{Key: lk, Value: v})
		}
	}
	return dst
}

// commonLower holds the lower-case forms of the header names most requests carry, so that
// turning a header into what filters see does not allocate for them.
var commonLower = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control", "Connection",
		"Content-Length", "Content-Type", "Cookie", "Date", "Etag", "Host", "If-Modified-Since",
		"If-None-Match", "Last-Modified", "Location", "Origin", "Referer", "Server", "Set-Cookie",
		"Te", "Trailer", "Transfer-Encoding", "User-Agent", "Vary", "Via", "X-Forwarded-For",
		"X-Forwarded-Host", "X-Forwarded-Proto", "X-Request-Id", "Grpc-Status", "Grpc-Message",
	} {
		m[k] = strings.ToLower(k)
	}
	return m
}()

// commonCanonical is commonLower the other way round.
var commonCanonical = func() map[string]string {
	m := map[string]string{}
	for k, lk := range commonLower {
		m[lk] = k
	}
	return m
}()

// CanonicalKey is http.CanonicalHeaderKey without allocating for common names.
func CanonicalKey(lk string) string {
	if k, ok := commonCanonical[lk]; ok {
		return k
	}
	return http.CanonicalHeaderKey(lk)
}

// LowerKey is strings.ToLower for a header name, without allocating for common names.
func LowerKey(k string) string {
	if lk, ok := commonLower[k]; ok {
		return lk
	}
	return strings.ToLower(k)
}

// StatusText is strconv.Itoa(status) for a status code, without allocating.
func StatusText(status int) string {
	if status >= 100 && status < 100+len(statusTexts) {
		return statusTexts[status-100]
	}
	return strconv.Itoa(status)
}

var statusTexts = func() (t [900]string) {
	for i := range t {
		t[i] = strconv.Itoa(100 + i)
	}
	return t
}()
