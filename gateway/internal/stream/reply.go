package stream

import (
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/plexus-mesh/plexus/gateway/internal/accesslog"
	"github.com/plexus-mesh/plexus/gateway/internal/filterchain"
	"github.com/plexus-mesh/plexus/gateway/internal/grpcwire"
	"github.com/plexus-mesh/plexus/gateway/internal/route"
	"github.com/plexus-mesh/plexus/runtime/proxywasm"
)

// LocalReply is the one way plexus answers a request by itself: status, and the cause in
// the body and in the X-Plexus-Error header.
//
// On a route with filters, whose response phase has not begun, the reply goes through it,
// as Envoy's own replies (a 503 of the router, a 504) go through the encoder filters.
//
// A gRPC call gets its answer as gRPC status: HTTP 200 and trailers-only, the status
// mapped from the HTTP one and the cause in grpc-message, as Envoy answers gRPC calls
// locally; or, when the response header is out already, the status in the trailers.
func LocalReply(x *Exchange, status int, cause string) {
	x.local = true
	if c := x.chain; c != nil && c.CanReply() {
		x.chain = nil
		lr := &proxywasm.LocalResponse{Status: status, Body: []byte(cause + "\n"), GRPCStatus: -1, Details: codeDetails(x.Flags, status), Headers: []proxywasm.Field{
			{Key: HeaderError, Value: cause}, {Key: "Content-Type", Value: "text/plain; charset=utf-8"}}}
		if x.grpc != "" {
			lr.GRPCStatus = grpcCode(x.Flags, status)
			lr.Body = []byte(cause)
		}
		c.SetInfo(func(i *proxywasm.StreamInfo) { i.ResponseFlags = x.Flags.Envoy() })
		WriteReply(x, x.Route, c, c.GatewayReply(lr))
		return
	}
	if x.grpc != "" {
		GRPCStatus(x, grpcCode(x.Flags, status), cause)
		return
	}
	hdr := x.Header()
	hdr[HeaderError] = []string{cause}
	hdr["Content-Type"] = []string{"text/plain; charset=utf-8"}
	hdr["Content-Length"] = []string{strconv.Itoa(len(cause) + 1)}
	x.WriteHeader(status)
	io.WriteString(x, cause+"\n")
}

// GRPCStatus ends a gRPC call with a status of the gateway's own: trailers-only (HTTP
// 200, the status in the header) when nothing of the response is out yet, else in the
// trailers after what was sent.
func GRPCStatus(x *Exchange, code int, msg string) {
	hdr := x.Header()
	if x.Status != 0 {
		hdr[http.TrailerPrefix+"Grpc-Status"] = []string{strconv.Itoa(code)}
		hdr[http.TrailerPrefix+"Grpc-Message"] = []string{grpcwire.EncodeMessage(msg)}
		return
	}
	hdr[HeaderError] = []string{msg}
	hdr["Content-Type"] = []string{x.grpc}
	hdr["Grpc-Status"] = []string{strconv.Itoa(code)}
	hdr["Grpc-Message"] = []string{grpcwire.EncodeMessage(msg)}
	delete(hdr, "Content-Length")
	x.WriteHeader(http.StatusOK)
}

// grpcCode is the gRPC status of a reply the gateway makes with status and flags f: a
// timeout (the route's, or the call's own grpc-timeout) is DEADLINE_EXCEEDED, the rest
// as gRPC maps HTTP statuses.
func grpcCode(f accesslog.Flags, status int) int {
	if f&accesslog.UpstreamTimeout != 0 || status == http.StatusGatewayTimeout {
		return grpcwire.DeadlineExceeded
	}
	return grpcwire.FromHTTP(status)
}

// codeDetails is Envoy's response.code_details for a reply of plexus's own, with flags f.
func codeDetails(f accesslog.Flags, status int) string {
	switch {
	case f&accesslog.FilterFailed != 0:
		return "wasm_fail_stream"
	case f&accesslog.NoRoute != 0:
		return "route_not_found"
	case f&accesslog.UpstreamOverflow != 0:
		return "upstream_reset_before_response_started{overflow}"
	case f&accesslog.NoHealthyUpstream != 0:
		return "no_healthy_upstream"
	case f&accesslog.UpstreamTimeout != 0:
		return "response_timeout"
	case f&accesslog.UpstreamConnectFailure != 0:
		return "upstream_reset_before_response_started{connection_failure}"
	case f&accesslog.UpstreamProtocolError != 0:
		return "upstream_reset_before_response_started{protocol_error}"
	case f&accesslog.UpstreamReset != 0:
		return "upstream_reset_before_response_started{connection_termination}"
	case status == http.StatusRequestEntityTooLarge:
		return "request_payload_too_large"
	case status == http.StatusRequestTimeout:
		return "request_overall_timeout"
	}
	return "local_reply"
}

// Answer finishes a response plexus makes on the route's behalf (a direct response, a
// redirect, a filter's local reply): the route's response header operations, a type and
// length for a body, and the body. An empty body gets no Content-Length, which a 204 must
// not carry.
func Answer(x *Exchange, rt *route.Route, status int, body []byte) {
	hdr := x.Header()
	rt.RespOps.Apply(hdr)
	if len(body) > 0 {
		if _, ok := hdr["Content-Type"]; !ok {
			hdr["Content-Type"] = []string{"text/plain; charset=utf-8"}
		}
		hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	x.WriteHeader(status)
	x.Write(body)
}

// WriteReply answers with a filter's local response (or the route's own answer), after
// the response phase of the filters before it.
func WriteReply(x *Exchange, rt *route.Route, c *filterchain.Chain, l *filterchain.Reply) {
	if name := c.Filter(l); name != "" {
		x.Flags |= accesslog.FilterLocalReply
		x.Filter = name
	}
	status, body := c.Render(l, x.Header())
	Answer(x, rt, status, body)
}

// FailChain answers a request the chain ended: a fail-closed filter failure is 503 with the
// cause, a full instance queue 503 at once, the route's deadline 504; a reset aborts the
// stream.
func FailChain(x *Exchange, err error) {
	var fe *filterchain.Error
	var te *filterchain.TimeoutError
	switch {
	case errors.As(err, &te):
		x.Flags |= accesslog.UpstreamTimeout
		x.Filter = te.Filter
		LocalReply(x, http.StatusGatewayTimeout, "route timeout while filter "+te.Filter+" held the request")
	case errors.As(err, &fe):
		x.Flags |= accesslog.FilterFailed
		x.Filter = fe.F.Filter
		if fe.Overflow() {
			x.Flags |= accesslog.UpstreamOverflow
			LocalReply(x, http.StatusServiceUnavailable, "filter "+fe.F.Filter+" overloaded: too many requests waiting for an instance")
			return
		}
		LocalReply(x, http.StatusServiceUnavailable, "filter "+fe.F.Filter+" failed: "+fe.F.Kind.String())
	case errors.Is(err, filterchain.ErrReset):
		panic(http.ErrAbortHandler)
	case errors.Is(err, filterchain.ErrBufferLimit):
		LocalReply(x, http.StatusRequestEntityTooLarge, "request body too large for a filter to buffer")
	case errors.Is(err, ErrBodyTimeout):
		LocalReply(x, http.StatusRequestTimeout, "request body timeout")
	default:
		// The client went away while a filter held the request.
	}
}
