package accesslog

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Record is what the gateway knows of one finished request. The logger reads it
// during Log only and keeps no reference to it, so the caller may reuse it.
type Record struct {
	Start    time.Time     // when the request's first byte arrived
	Duration time.Duration // from Start to the last byte of the response

	Listener     string
	Route        string
	Backend      string // logged as upstream_cluster
	UpstreamHost string // the endpoint of the last attempt, "10.0.0.7:8080"

	Method    string
	Authority string
	Path      string
	Protocol  string // "HTTP/1.1", "HTTP/2", "HTTP/3"
	Scheme    string

	Status        int // 0: no response was started (the client went away)
	Flags         Flags
	BytesReceived int64 // request body bytes
	BytesSent     int64 // response body bytes

	// UpstreamTime is from sending the request upstream to the response header
	// arriving. Negative means no upstream response; set it to -1 for local replies,
	// since the zero value reads as an upstream that answered at once.
	UpstreamTime time.Duration
	Attempts     int

	RequestID     string
	TraceID       string
	SpanID        string
	ClientAddress string // the downstream peer, "203.0.113.9:51234"
	Filter        string // the filter that answered the request or failed

	Request  http.Header // may be nil
	Response http.Header // may be nil
}

// DefaultFields are the fields of a line when Options.Fields is empty. Their first
// fifteen, in this order, are those of Envoy's default text line.
var DefaultFields = []string{
	"start_time", "method", "path", "protocol", "response_code", "response_flags",
	"bytes_received", "bytes_sent", "duration", "upstream_service_time",
	"x_forwarded_for", "user_agent", "request_id", "authority", "upstream_host",
	"upstream_cluster", "route_name", "downstream_remote_address", "trace_id",
}

// envoyFields is how many of DefaultFields Envoy's default line holds.
const envoyFields = 15

type fieldID uint8

const (
	fStartTime fieldID = iota
	fDuration
	fMethod
	fAuthority
	fPath
	fProtocol
	fScheme
	fResponseCode
	fResponseFlags
	fBytesReceived
	fBytesSent
	fUpstreamServiceTime
	fUpstreamHost
	fUpstreamCluster
	fRouteName
	fListener
	fAttempts
	fRequestID
	fTraceID
	fSpanID
	fDownstreamRemoteAddress
	fUserAgent
	fReferer
	fXForwardedFor
	fFilter
	fGRPCStatus
	fReqHeader  // req.NAME
	fRespHeader // resp.NAME
)

// numNamed counts the fields known by name, those before fReqHeader.
const numNamed = fReqHeader

// fieldNames are Istio's and Envoy's JSON access log names, which their users know.
var fieldNames = [numNamed]string{
	fStartTime:               "start_time",
	fDuration:                "duration",
	fMethod:                  "method",
	fAuthority:               "authority",
	fPath:                    "path",
	fProtocol:                "protocol",
	fScheme:                  "scheme",
	fResponseCode:            "response_code",
	fResponseFlags:           "response_flags",
	fBytesReceived:           "bytes_received",
	fBytesSent:               "bytes_sent",
	fUpstreamServiceTime:     "upstream_service_time",
	fUpstreamHost:            "upstream_host",
	fUpstreamCluster:         "upstream_cluster",
	fRouteName:               "route_name",
	fListener:                "listener",
	fAttempts:                "attempts",
	fRequestID:               "request_id",
	fTraceID:                 "trace_id",
	fSpanID:                  "span_id",
	fDownstreamRemoteAddress: "downstream_remote_address",
	fUserAgent:               "user_agent",
	fReferer:                 "referer",
	fXForwardedFor:           "x_forwarded_for",
	fFilter:                  "filter",
	fGRPCStatus:              "grpc_status",
}

type field struct {
	id     fieldID
	name   string // as configured: the JSON or logfmt key
	header string // canonical header name, for fReqHeader and fRespHeader
}

func parseFields(names []string) ([]field, error) {
	fs := make([]field, 0, len(names))
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		f, err := parseField(name)
		if err != nil {
			return nil, err
		}
		// A duplicate key would make a JSON object that parsers read differently.
		if seen[name] {
			return nil, fmt.Errorf("accesslog: field %q is listed twice", name)
		}
		seen[name] = true
		fs = append(fs, f)
	}
	return fs, nil
}

func parseField(name string) (field, error) {
	for id, n := range fieldNames {
		if n == name {
			return field{id: fieldID(id), name: name}, nil
		}
	}
	for _, p := range [...]struct {
		prefix string
		id     fieldID
	}{{"req.", fReqHeader}, {"resp.", fRespHeader}} {
		if h, ok := strings.CutPrefix(name, p.prefix); ok {
			if !isToken(h) {
				return field{}, fmt.Errorf("accesslog: field %q: %q is not a header name", name, h)
			}
			return field{id: p.id, name: name, header: http.CanonicalHeaderKey(h)}, nil
		}
	}
	return field{}, fmt.Errorf("accesslog: unknown field %q; known fields are %s, req.NAME and resp.NAME for a request or response header",
		name, strings.Join(fieldNames[:], ", "))
}

// isToken reports whether s is an RFC 9110 token, the syntax of a header name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

type kind uint8

const (
	kNull   kind = iota // missing: null in JSON, "-" in text
	kStr                // s
	kHeader             // vs, joined by ", "
	kInt                // n
	kTime               // the record's Start
	kFlags              // the record's Flags
)

// value is one field of one record, not yet encoded; returned by value so that
// reading a field allocates nothing.
type value struct {
	k  kind
	s  string
	vs []string
	n  int64
}

func str(s string) value {
	if s == "" {
		return value{}
	}
	return value{k: kStr, s: s}
}

func num(n int64) value { return value{k: kInt, n: n} }

// grpcStatus is a gRPC call's status as its client got it (Envoy's GRPC_STATUS_NUMBER): in
// the response header of a trailers-only answer, else in the trailers, which the response's
// header map holds once they are sent (under their names, or net/http's prefix for
// trailers announced late). None for a response that is not gRPC.
func grpcStatus(h http.Header) value {
	for _, k := range [...]string{"Grpc-Status", http.TrailerPrefix + "Grpc-Status"} {
		if vs := h[k]; len(vs) > 0 {
			if n, err := strconv.Atoi(vs[0]); err == nil {
				return num(int64(n))
			}
			return str(vs[0])
		}
	}
	return value{}
}

func header(h http.Header, key string) value {
	vs := h[key] // key is canonical already; Get would canonicalize it per call
	switch {
	case len(vs) == 0:
		return value{}
	case len(vs) == 1:
		return str(vs[0])
	}
	return value{k: kHeader, vs: vs}
}

func (f *field) value(r *Record) value {
	switch f.id {
	case fStartTime:
		if r.Start.IsZero() {
			return value{}
		}
		return value{k: kTime}
	case fDuration:
		return num(r.Duration.Milliseconds())
	case fMethod:
		return str(r.Method)
	case fAuthority:
		return str(r.Authority)
	case fPath:
		return str(r.Path)
	case fProtocol:
		return str(r.Protocol)
	case fScheme:
		return str(r.Scheme)
	case fResponseCode:
		return num(int64(r.Status))
	case fResponseFlags:
		return value{k: kFlags}
	case fBytesReceived:
		return num(r.BytesReceived)
	case fBytesSent:
		return num(r.BytesSent)
	case fUpstreamServiceTime:
		if r.UpstreamTime < 0 {
			return value{}
		}
		return num(r.UpstreamTime.Milliseconds())
	case fUpstreamHost:
		return str(r.UpstreamHost)
	case fUpstreamCluster:
		return str(r.Backend)
	case fRouteName:
		return str(r.Route)
	case fListener:
		return str(r.Listener)
	case fAttempts:
		return num(int64(r.Attempts))
	case fRequestID:
		return str(r.RequestID)
	case fTraceID:
		return str(r.TraceID)
	case fSpanID:
		return str(r.SpanID)
	case fDownstreamRemoteAddress:
		return str(r.ClientAddress)
	case fUserAgent:
		return header(r.Request, "User-Agent")
	case fReferer:
		return header(r.Request, "Referer")
	case fXForwardedFor:
		return header(r.Request, "X-Forwarded-For")
	case fFilter:
		return str(r.Filter)
	case fGRPCStatus:
		return grpcStatus(r.Response)
	case fReqHeader:
		return header(r.Request, f.header)
	case fRespHeader:
		return header(r.Response, f.header)
	}
	return value{}
}
