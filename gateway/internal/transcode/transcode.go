// Package transcode is the gRPC stage's REST+JSON transcoder: it sits between the filter
// chain and the router, so that filters see the client's JSON request and response and
// the backend sees a gRPC call. It does what Envoy's grpc_json_transcoder does, but from
// .proto sources compiled as the config loads (no protoc, no descriptor set).
//
// The mapping is google.api.http's (https://github.com/googleapis/googleapis/blob/master/google/api/http.proto):
// a method's HttpRule binds an HTTP method and a path template to it; path variables,
// the body ("*" or one field) and the query parameters (every other field) make the
// request message; response_body picks what of the response message is the JSON answer.
// Non-OK gRPC statuses become HTTP statuses as grpc-gateway maps them, with a JSON body
// {"code", "message", "details"} (google.rpc.Status in JSON).
//
// Choices where the spec is silent, and why:
//   - Several bindings may match one request (/v1/{name=shelves/*} and /v1/shelves/top).
//     The most specific wins: a match with a :verb beats one without, then, path
//     segment by segment from the left, a literal beats a variable or "*", which beats
//     "**"; a tie goes to the binding declared first (files in the config's order, then
//     services, methods, a rule before its additional_bindings). So adding a binding never
//     changes which of the existing ones another request reaches, unless it is more
//     specific for it.
//   - A query parameter that names a field the path or the body binds is unknown (400,
//     or ignored with ignore_unknown_query_parameters): http.proto says those fields are
//     not query parameters, and silently letting one override the other hides bugs. A
//     non-repeated field given twice is a 400 too.
//   - A client-streaming method's body is a JSON array, one message per element, read and
//     framed as the backend takes it; the path and query bindings apply to every message.
//     An element past max_request_bytes, or one that does not parse, fails the body's
//     Read with an *Error, since the call has begun by then.
//   - A server-streaming response is a JSON array written as the messages come. An error
//     status after the first message closes the array and fails the body's Read, so the
//     client sees a broken stream rather than a 200 that looks complete (Envoy ends the
//     stream too; it has no way to change the status once it is out).
//   - google.api.HttpBody as the response (or its response_body field) is written raw,
//     with its content_type, as Envoy does; as the request body (the whole message with
//     body "*", or the body field), it takes the raw bytes and the Content-Type.
package transcode

import (
	"fmt"
	"net/http"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/plexus-mesh/plexus/gateway/internal/route"
)

// Transcoder is one compiled grpc.transcode: the bindings of its services' methods. It
// never changes once Compile returns it, so one Transcoder serves any number of
// requests at once.
type Transcoder struct {
	files    []protoreflect.FileDescriptor
	sources  map[string]string
	services []string
	bindings map[string][]*binding // by HTTP method, in declaration order
	types    *types

	maxRequest    int64
	ignoreQuery   bool
	rejectUnknown bool
	marshal       protojson.MarshalOptions
	unmarshal     protojson.UnmarshalOptions
}

// method is one gRPC method a binding reaches.
type method struct {
	path string // "/pkg.Service/Method"
	desc protoreflect.MethodDescriptor
}

// binding is one HttpRule (a method's rule, or one of its additional_bindings).
type binding struct {
	method   *method
	verb     string // the HTTP method
	pattern  string // the path template as written, for messages
	tmpl     *template
	vars     []fieldPath // the field each of tmpl.vars sets
	body     bodyKind
	bodyPath fieldPath // with bodyField: the field the body is
	respPath fieldPath // response_body's field; nil: the whole response message
}

type bodyKind uint8

const (
	bodyNone  bodyKind = iota // no body allowed
	bodyAll                   // body "*": the body is the request message
	bodyField                 // body "field": the body is that field's value
)

// Files is every file compiled, imports included, each after the files it imports (for
// gRPC server reflection).
func (t *Transcoder) Files() []protoreflect.FileDescriptor { return t.files }

// Sources is every .proto read from disk, by absolute path, with the digest
// ("sha256:<hex>") of the bytes compiled: a file whose content differs is a change to the
// config.
func (t *Transcoder) Sources() map[string]string { return t.sources }

// Services is the full names of the services transcoded.
func (t *Transcoder) Services() []string { return t.services }

// RejectUnknown says a request that matches no binding is answered 404 rather than
// forwarded as it is (reject_unknown_method).
func (t *Transcoder) RejectUnknown() bool { return t.rejectUnknown }

// Match finds the binding for r (r.Method, r.URL.EscapedPath(), r.URL.RawQuery); nil when
// none matches. The choice among several is the package doc's.
func (t *Transcoder) Match(r *http.Request) *Call {
	bs := t.bindings[r.Method]
	if len(bs) == 0 {
		return nil
	}
	segs, ok := splitPath(r.URL.EscapedPath())
	if !ok {
		return nil
	}
	var best *binding
	var bestVals []string
	var bestSpec specificity
	for _, b := range bs {
		vals, spec, ok := b.tmpl.match(segs)
		if ok && (best == nil || spec.better(bestSpec)) {
			best, bestVals, bestSpec = b, vals, spec
		}
	}
	if best == nil {
		return nil
	}
	return &Call{t: t, b: best, vars: bestVals, query: r.URL.RawQuery}
}

// Translate is Match as the route stage takes it (route.Transcoder): the router runs the
// call between the filter chain and its attempts.
func (t *Transcoder) Translate(r *http.Request) (route.Translation, bool) {
	if c := t.Match(r); c != nil {
		return c, true
	}
	return nil, false
}

var _ route.Transcoder = (*Transcoder)(nil)

// Call is one REST request matched to a gRPC method: it turns the request into the call
// (Request) and the call's response into the client's (Response). It is used by one
// request; it holds nothing the Transcoder shares.
type Call struct {
	t     *Transcoder
	b     *binding
	vars  []string // the path variables' values, decoded, as b.vars
	query string   // the request's raw query
}

// Method is the gRPC method's path, "/pkg.Service/Method".
func (c *Call) Method() string { return c.b.method.path }

// clientStreaming and serverStreaming say how the call's messages go.
func (c *Call) clientStreaming() bool { return c.b.method.desc.IsStreamingClient() }
func (c *Call) serverStreaming() bool { return c.b.method.desc.IsStreamingServer() }

// Error is a request that cannot be turned into the gRPC call: the client's fault,
// answered with Status (400, 413) and Msg. It is the route stage's translation error, so
// that the router answers it as it answers any translation's.
type Error = route.TranslationError

func badRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Msg: fmt.Sprintf(format, args...)}
}
