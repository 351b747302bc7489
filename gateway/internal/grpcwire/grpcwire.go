// Package grpcwire is what the request path's stages share of gRPC over HTTP/2
// (PROTOCOL-HTTP2.md in grpc/grpc): status codes and their mapping from HTTP statuses,
// grpc-message's percent-encoding and grpc-timeout's format. It knows nothing of the
// stages; each reads and writes headers with it.
package grpcwire

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html).
const (
	OK = iota
	Cancelled
	Unknown
	InvalidArgument
	DeadlineExceeded
	NotFound
	AlreadyExists
	PermissionDenied
	ResourceExhausted
	FailedPrecondition
	Aborted
	OutOfRange
	Unimplemented
	Internal
	Unavailable
	DataLoss
	Unauthenticated
)

var names = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

// Name is a status code's name (UNAVAILABLE), or "code N" for one gRPC does not define.
func Name(code int) string {
	if code >= 0 && code < len(names) {
		return names[code]
	}
	return "code " + strconv.Itoa(code)
}

// FromHTTP maps an HTTP status to a gRPC status code as gRPC's own mapping does
// (doc/http-grpc-status-mapping.md), for answers the gateway makes to gRPC calls.
func FromHTTP(status int) int {
	switch status {
	case http.StatusOK:
		return OK
	case http.StatusBadRequest:
		return Internal
	case http.StatusUnauthorized:
		return Unauthenticated
	case http.StatusForbidden:
		return PermissionDenied
	case http.StatusNotFound:
		return Unimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return Unavailable
	}
	return Unknown
}

// EncodeMessage encodes a grpc-message value: bytes outside printable ASCII, and '%', as
// %XX ("Status-Message").
func EncodeMessage(s string) string {
	const hex = "0123456789ABCDEF"
	clean := true
	for i := 0; i < len(s) && clean; i++ {
		clean = s[i] >= 0x20 && s[i] <= 0x7e && s[i] != '%'
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// IsGRPC reports whether a request or response header is gRPC's (application/grpc,
// application/grpc+proto, ...), gRPC-Web's included.
func IsGRPC(h http.Header) bool {
	ct := h["Content-Type"]
	return len(ct) > 0 && strings.HasPrefix(ct[0], "application/grpc")
}

// IsWeb reports whether a request header is gRPC-Web's.
func IsWeb(h http.Header) bool {
	ct := h["Content-Type"]
	return len(ct) > 0 && strings.HasPrefix(ct[0], "application/grpc-web")
}

// Status is the status of a call from a header (a trailers-only response) or trailers:
// its code, and ok false when there is no valid grpc-status.
func Status(h http.Header) (code int, ok bool) {
	v := h["Grpc-Status"]
	if len(v) == 0 {
		return 0, false
	}
	n, err := strconv.Atoi(v[0])
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// ParseTimeout reads a grpc-timeout value: at most 8 digits and a unit (H, M, S, m, u, n).
func ParseTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 || v[0] == '+' || v[0] == '-' {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	if n > int64(1<<63-1)/int64(unit) {
		return 1<<63 - 1, true
	}
	return time.Duration(n) * unit, true
}

// FormatTimeout is d as grpc-timeout: at most 8 digits, in the finest unit that fits,
// rounded up so that the receiver never sees less time than there is.
func FormatTimeout(d time.Duration) string {
	if d <= 0 {
		return "1n" // already out of time; 0 would read as no time at all to some servers too
	}
	for _, u := range []struct {
		d time.Duration
		c byte
	}{{time.Nanosecond, 'n'}, {time.Microsecond, 'u'}, {time.Millisecond, 'm'}, {time.Second, 'S'}, {time.Minute, 'M'}, {time.Hour, 'H'}} {
		n := d / u.d
		if d%u.d != 0 {
			n++
		}
		if n <= 99999999 {
			return strconv.FormatInt(int64(n), 10) + string(u.c)
		}
	}
	return "99999999H"
}
