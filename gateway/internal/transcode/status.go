package transcode

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/plexus-mesh/plexus/gateway/internal/grpcwire"
)

// httpStatus is the HTTP status for a gRPC code, as grpc-gateway maps them
// (runtime.HTTPStatusFromCode), so that clients moving from it see the same statuses.
func httpStatus(code int) int {
	switch code {
	case grpcwire.OK:
		return http.StatusOK
	case grpcwire.Cancelled:
		return 499 // nginx's "client closed request"
	case grpcwire.InvalidArgument, grpcwire.FailedPrecondition, grpcwire.OutOfRange:
		return http.StatusBadRequest
	case grpcwire.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case grpcwire.NotFound:
		return http.StatusNotFound
	case grpcwire.AlreadyExists, grpcwire.Aborted:
		return http.StatusConflict
	case grpcwire.PermissionDenied:
		return http.StatusForbidden
	case grpcwire.ResourceExhausted:
		return http.StatusTooManyRequests
	case grpcwire.Unimplemented:
		return http.StatusNotImplemented
	case grpcwire.Unavailable:
		return http.StatusServiceUnavailable
	case grpcwire.Unauthenticated:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError // UNKNOWN, INTERNAL, DATA_LOSS, and codes gRPC does not define
}

// callStatus is how a call ended.
type callStatus struct {
	code    int
	message string
	details []byte // grpc-status-details-bin, decoded; nil without it
}

// readStatus is the call's status: from the trailers, read once the body is at EOF, or,
// for a trailers-only response, from the header. No grpc-status at all is UNKNOWN.
func readStatus(resp *http.Response) callStatus {
	h := resp.Trailer
	if h.Get("Grpc-Status") == "" {
		h = resp.Header
	}
	s := h.Get("Grpc-Status")
	if s == "" {
		return callStatus{code: grpcwire.Unknown, message: "no grpc-status from the backend"}
	}
	code, err := strconv.Atoi(s)
	if err != nil || code < 0 {
		return callStatus{code: grpcwire.Unknown, message: "a grpc-status that is not a code from the backend: " + strconv.Quote(s)}
	}
	st := callStatus{code: code, message: percentDecode(h.Get("Grpc-Message"))}
	if d := h.Get("Grpc-Status-Details-Bin"); d != "" {
		// gRPC's binary headers are base64, padded or not (PROTOCOL-HTTP2.md).
		if b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(d, "=")); err == nil {
			st.details = b
		}
	}
	return st
}

// percentDecode undoes grpc-message's percent-encoding; an escape that is not one stays
// as it is, as PROTOCOL-HTTP2.md asks of a receiver.
func percentDecode(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// errorBody is google.rpc.Status as JSON, grpc-gateway's error body.
type errorBody struct {
	Code    int               `json:"code"`
	Message string            `json:"message"`
	Details []json.RawMessage `json:"details"`
}

// errorResponse answers a call that ended with a non-OK status: the code's HTTP status,
// and the status as JSON. With grpc-status-details-bin, its google.rpc.Status gives the
// message and the details (each an Any in JSON; one whose type the transcoder does not
// know is shown as {"@type", "value": base64} rather than dropped). grpc-status's code
// wins over the details' should they differ: it is what the backend's gRPC library
// acted on.
func (c *Call) errorResponse(resp *http.Response, st callStatus) *http.Response {
	eb := errorBody{Code: st.code, Message: st.message, Details: []json.RawMessage{}}
	if st.details != nil {
		var s spb.Status
		if proto.Unmarshal(st.details, &s) == nil {
			if s.GetMessage() != "" {
				eb.Message = s.GetMessage()
			}
			opts := c.t.marshal
			opts.Multiline = false
			for _, d := range s.GetDetails() {
				b, err := opts.Marshal(d)
				if err != nil {
					b, _ = json.Marshal(struct {
						Type  string `json:"@type"`
						Value []byte `json:"value"`
					}{d.GetTypeUrl(), d.GetValue()})
				}
				eb.Details = append(eb.Details, compact(b))
			}
		}
	}
	var b []byte
	if c.t.marshal.Multiline {
		b, _ = json.MarshalIndent(eb, "", c.t.marshal.Indent)
	} else {
		b, _ = json.Marshal(eb)
	}
	return reply(resp, httpStatus(st.code), "application/json", io.NopCloser(bytes.NewReader(b)), int64(len(b)))
}

// compact is JSON without protojson's insignificant spaces (which vary on purpose).
func compact(b []byte) json.RawMessage {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return b
	}
	return out.Bytes()
}
