//go:build wasip1

// Command grpc_auth asks an authorization service over gRPC about every request and holds
// the request until the answer comes: plexus.examples.auth.v1.Authorizer (auth.proto),
// with a unary call to Check (mode "call", proxy_grpc_call) or a bidirectional stream to
// Session (mode "stream", proxy_grpc_stream, one per request). Allowed: the request goes
// on with x-auth-user; denied: a local 403 with the service's reason; no answer (a gRPC
// error, a timeout, an unreachable service): a local 503, failing closed.
//
// The upstream Go SDK has no gRPC API, so the filter imports the ABI's gRPC functions and
// exports their callbacks itself (the end of this file), and encodes the messages by hand
// with protowire: no generated code, nothing that needs more than GOOS=wasip1.
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
	"google.golang.org/protobuf/encoding/protowire"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

const service = "plexus.examples.auth.v1.Authorizer"

// config is the plugin configuration; only "cluster" is required.
type config struct {
	Cluster   string `json:"cluster"`    // the backend that is the auth service (protocol: h2c or h2)
	Mode      string `json:"mode"`       // "call" (Check) or "stream" (Session): "call"
	TimeoutMS uint32 `json:"timeout_ms"` // how long to wait for the answer: 1000
}

type plugin struct {
	types.DefaultPluginContext
	cfg     config
	ticking bool // the tick that times out streams is on
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	if size > 0 {
		raw, err := proxywasm.GetPluginConfiguration()
		if err == nil {
			err = json.Unmarshal(raw, &p.cfg)
		}
		if err != nil {
			proxywasm.LogCriticalf("grpc_auth: plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	if p.cfg.Cluster == "" {
		proxywasm.LogCritical(`grpc_auth: plugin configuration: "cluster" is required`)
		return types.OnPluginStartStatusFailed
	}
	switch p.cfg.Mode {
	case "":
		p.cfg.Mode = "call"
	case "call", "stream":
	default:
		proxywasm.LogCriticalf(`grpc_auth: plugin configuration: "mode" is %q; want "call" or "stream"`, p.cfg.Mode)
		return types.OnPluginStartStatusFailed
	}
	if p.cfg.TimeoutMS == 0 {
		p.cfg.TimeoutMS = 1000
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(id uint32) types.HttpContext { return &stream{p: p, id: id} }

// pending is every call or stream in flight, by its token. The host calls the gRPC
// callbacks on the root context, with the token; this is how they find their request.
var pending = map[uint32]*stream{}

// OnTick times out streams: the host bounds a call by the timeout proxy_grpc_call is
// given, but a stream has no timeout in the ABI. The tick runs only while streams wait.
func (p *plugin) OnTick() {
	now := time.Now()
	waiting := false
	for token, s := range pending {
		if !s.streaming {
			continue
		}
		if now.Before(s.deadline) {
			waiting = true
			continue
		}
		delete(pending, token)
		proxyGrpcCancel(token) // no callback follows
		s.unavailable(grpcDeadlineExceeded, "no answer within "+strconv.Itoa(int(p.cfg.TimeoutMS))+"ms")
	}
	if !waiting {
		p.tick(false)
	}
}

func (p *plugin) tick(on bool) {
	if on == p.ticking {
		return
	}
	p.ticking = on
	period := uint32(0)
	if on {
		// A tenth of the timeout: a request is held at most that much past it.
		period = max(p.cfg.TimeoutMS/10, 10)
	}
	if err := proxywasm.SetTickPeriodMilliSeconds(period); err != nil {
		proxywasm.LogErrorf("grpc_auth: setting the tick: %v", err)
	}
}

// stream is one request, and its question to the auth service while it waits.
type stream struct {
	types.DefaultHttpContext
	p  *plugin
	id uint32 // the HTTP context's id, made effective before the request is resumed or answered

	token     uint32 // the call or stream, while one is in flight
	waiting   bool
	streaming bool      // mode stream
	deadline  time.Time // when to give up
	answer    []byte    // mode stream: the CheckResponse received
	answered  bool
	seen      []string // mode stream: the callbacks that came, in order
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	// Only this filter may say who the caller is.
	proxywasm.RemoveHttpRequestHeader("x-auth-user")
	proxywasm.RemoveHttpRequestHeader("x-auth-callbacks")
	path, _ := proxywasm.GetHttpRequestHeader(":path")
	method, _ := proxywasm.GetHttpRequestHeader(":method")
	token, _ := proxywasm.GetHttpRequestHeader("authorization")
	req := checkRequest(path, token, method)

	cfg := &s.p.cfg
	// Our deadline starts before the host's and the service's can: see onClose.
	s.deadline = time.Now().Add(time.Duration(cfg.TimeoutMS) * time.Millisecond)
	var st uint32
	if cfg.Mode == "call" {
		st = proxyGrpcCall(strPtr(cfg.Cluster), int32(len(cfg.Cluster)), strPtr(service), int32(len(service)),
			strPtr("Check"), int32(len("Check")), nil, 0, bytesPtr(req), int32(len(req)), cfg.TimeoutMS, &s.token)
	} else {
		// The service learns the deadline from grpc-timeout, as a call's service does.
		s.streaming = true
		md := serializeMap([][2]string{{"grpc-timeout", strconv.Itoa(int(cfg.TimeoutMS)) + "m"}})
		st = proxyGrpcStream(strPtr(cfg.Cluster), int32(len(cfg.Cluster)), strPtr(service), int32(len(service)),
			strPtr("Session"), int32(len("Session")), bytesPtr(md), int32(len(md)), &s.token)
		if st == 0 {
			if st = proxyGrpcSend(s.token, bytesPtr(req), int32(len(req)), 0); st != 0 {
				proxyGrpcCancel(s.token)
			}
		}
	}
	if st != 0 {
		// The ABI has no reason to give: PARSE_FAILURE (4) is an unknown cluster, and the
		// host logs why it could not open a stream to a known one.
		s.unavailable(grpcUnavailable, "could not reach "+cfg.Cluster+": host status "+strconv.Itoa(int(st)))
		return types.ActionPause
	}
	s.waiting = true
	pending[s.token] = s
	if s.streaming {
		s.p.tick(true)
	}
	// Hold the request until the answer resumes it or answers it.
	return types.ActionPause
}

// OnHttpStreamDone: a request that ends while it waits (the client went away) has its
// call or stream canceled.
func (s *stream) OnHttpStreamDone() {
	if s.waiting {
		delete(pending, s.token)
		proxyGrpcCancel(s.token)
		s.waiting = false
	}
}

func (s *stream) onMessage(msg []byte) {
	if !s.streaming { // a call ends with its message
		s.finish()
		s.decide(msg)
		return
	}
	s.seen = append(s.seen, "message")
	if !s.answered {
		s.answer, s.answered = msg, true
		// One answer is all this stream is for: half-close it, and decide once the
		// service has ended its side too (trailing metadata, then close).
		proxyGrpcClose(s.token)
	}
}

func (s *stream) onClose(code uint32) {
	s.finish()
	s.seen = append(s.seen, "close")
	switch {
	case code != grpcOK && !time.Now().Before(s.deadline):
		// A service gives up at the grpc-timeout it was sent as it pleases, and at the
		// same moment as our host: grpc-go resets the stream (CANCEL, which the host
		// reports as UNAVAILABLE) or ends it with CANCELLED. Past our deadline, any
		// failure is the timeout, as gRPC's own clients report it.
		s.unavailable(grpcDeadlineExceeded, "no answer within "+strconv.Itoa(int(s.p.cfg.TimeoutMS))+
			"ms (the RPC ended with status "+strconv.Itoa(int(code))+": "+grpcStatusMessage()+")")
	case code != grpcOK:
		s.unavailable(code, grpcStatusMessage())
	case !s.answered:
		s.unavailable(grpcInternal, "the service ended the stream without an answer")
	default:
		s.decide(s.answer)
	}
}

func (s *stream) finish() {
	delete(pending, s.token)
	s.waiting = false
}

// decide lets the request through or answers 403, by the CheckResponse in msg.
func (s *stream) decide(msg []byte) {
	if err := proxywasm.SetEffectiveContext(s.id); err != nil {
		return // the request is gone
	}
	allowed, user, reason, err := checkResponse(msg)
	if err != nil {
		s.unavailable(grpcInternal, "malformed CheckResponse: "+err.Error())
		return
	}
	if !allowed {
		if reason == "" {
			reason = "denied by the auth service"
		}
		s.reply(403, "denied", "forbidden: "+reason)
		return
	}
	if user != "" {
		proxywasm.ReplaceHttpRequestHeader("x-auth-user", user)
	}
	if s.streaming {
		proxywasm.ReplaceHttpRequestHeader("x-auth-callbacks", strings.Join(s.seen, ","))
	}
	if err := proxywasm.ResumeHttpRequest(); err != nil {
		proxywasm.LogErrorf("grpc_auth: resuming: %v", err)
	}
}

// unavailable answers 503: without an answer from the service, no request goes through.
func (s *stream) unavailable(code uint32, msg string) {
	if err := proxywasm.SetEffectiveContext(s.id); err != nil {
		return
	}
	text := "auth service unavailable: gRPC status " + strconv.Itoa(int(code)) + " (" + grpcCodeName(code) + ")"
	if msg != "" {
		text += ": " + msg
	}
	s.reply(503, "unavailable", text, [2]string{"x-auth-grpc-status", strconv.Itoa(int(code))})
}

func (s *stream) reply(status uint32, auth, text string, extra ...[2]string) {
	hs := append([][2]string{{"content-type", "text/plain; charset=utf-8"}, {"x-auth", auth}}, extra...)
	if s.streaming {
		hs = append(hs, [2]string{"x-auth-callbacks", strings.Join(s.seen, ",")})
	}
	if err := proxywasm.SendHttpResponse(status, hs, []byte(text+"\n"), -1); err != nil {
		proxywasm.LogErrorf("grpc_auth: sending %d: %v", status, err)
	}
}

// The messages, by hand (auth.proto).

// checkRequest is a CheckRequest: path = 1, token = 2, method = 3. Empty strings are
// left out, as proto3 leaves out default values.
func checkRequest(path, token, method string) []byte {
	var b []byte
	for _, f := range []struct {
		num protowire.Number
		v   string
	}{{1, path}, {2, token}, {3, method}} {
		if f.v != "" {
			b = protowire.AppendTag(b, f.num, protowire.BytesType)
			b = protowire.AppendString(b, f.v)
		}
	}
	return b
}

// checkResponse decodes a CheckResponse: allowed = 1, user = 2, reason = 3. Unknown
// fields are skipped, as protobuf says; the last of a repeated scalar wins.
func checkResponse(b []byte) (allowed bool, user, reason string, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false, "", "", protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			allowed = v != 0
		case num == 2 && typ == protowire.BytesType:
			user, n = protowire.ConsumeString(b)
		case num == 3 && typ == protowire.BytesType:
			reason, n = protowire.ConsumeString(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return false, "", "", protowire.ParseError(n)
		}
		b = b[n:]
	}
	return allowed, user, reason, nil
}

// gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html).
const (
	grpcOK               = 0
	grpcDeadlineExceeded = 4
	grpcInternal         = 13
	grpcUnavailable      = 14
)

var grpcCodeNames = [...]string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

func grpcCodeName(code uint32) string {
	if int(code) < len(grpcCodeNames) {
		return grpcCodeNames[code]
	}
	return "code " + strconv.Itoa(int(code))
}

// The ABI's gRPC functions and callbacks, which the SDK does not have
// (https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1#grpc-calls).

//go:wasmimport env proxy_grpc_call
func proxyGrpcCall(upstream *byte, upstreamSize int32, service *byte, serviceSize int32, method *byte, methodSize int32,
	metadata *byte, metadataSize int32, message *byte, messageSize int32, timeoutMS uint32, token *uint32) uint32

//go:wasmimport env proxy_grpc_stream
func proxyGrpcStream(upstream *byte, upstreamSize int32, service *byte, serviceSize int32, method *byte, methodSize int32,
	metadata *byte, metadataSize int32, token *uint32) uint32

//go:wasmimport env proxy_grpc_send
func proxyGrpcSend(token uint32, message *byte, messageSize int32, endOfStream uint32) uint32

//go:wasmimport env proxy_grpc_cancel
func proxyGrpcCancel(token uint32) uint32

//go:wasmimport env proxy_grpc_close
func proxyGrpcClose(token uint32) uint32

//go:wasmimport env proxy_get_status
func proxyGetStatus(code *uint32, message unsafe.Pointer, messageSize *int32) uint32

// The SDK imports this one too, but keeps it internal; a second import of the same
// function is valid Wasm.
//
//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(bufferType uint32, start, maxSize int32, data unsafe.Pointer, size *int32) uint32

const bufferGrpcReceive = 5 // proxy_buffer_type_t GRPC_RECEIVE_BUFFER

//go:wasmexport proxy_on_grpc_receive_initial_metadata
func onGrpcReceiveInitialMetadata(_, token, _ uint32) {
	if s := pending[token]; s != nil {
		s.seen = append(s.seen, "initial")
	}
}

//go:wasmexport proxy_on_grpc_receive
func onGrpcReceive(_, token, size uint32) {
	s := pending[token]
	if s == nil {
		return
	}
	msg, err := hostBytes(func(data unsafe.Pointer, n *int32) uint32 {
		return proxyGetBufferBytes(bufferGrpcReceive, 0, int32(size), data, n)
	})
	if err != nil {
		s.finish()
		if s.streaming {
			proxyGrpcCancel(token)
		}
		s.unavailable(grpcInternal, "reading the answer: "+err.Error())
		return
	}
	s.onMessage(msg)
}

//go:wasmexport proxy_on_grpc_receive_trailing_metadata
func onGrpcReceiveTrailingMetadata(_, token, _ uint32) {
	if s := pending[token]; s != nil {
		s.seen = append(s.seen, "trailing")
	}
}

//go:wasmexport proxy_on_grpc_close
func onGrpcClose(_, token, code uint32) {
	if s := pending[token]; s != nil {
		s.onClose(code)
	}
}

// grpcStatusMessage is the message of the status proxy_on_grpc_close reports.
func grpcStatusMessage() string {
	var code uint32
	msg, err := hostBytes(func(data unsafe.Pointer, n *int32) uint32 { return proxyGetStatus(&code, data, n) })
	if err != nil {
		return ""
	}
	return string(msg)
}

// hostBytes calls get, which has the host allocate a result (in proxy_on_memory_allocate,
// the SDK's) and store its address and size, and returns a copy of it.
func hostBytes(get func(data unsafe.Pointer, size *int32) uint32) ([]byte, error) {
	var data *byte
	var size int32
	if st := get(unsafe.Pointer(&data), &size); st != 0 {
		return nil, errors.New("host status " + strconv.Itoa(int(st)))
	}
	if data == nil || size == 0 {
		return nil, nil // an empty message: every field at its default
	}
	return append([]byte(nil), unsafe.Slice(data, size)...), nil
}

// serializeMap is pairs in the ABI's map format: the count, each key's and value's
// length, then each key and value followed by a NUL (all little-endian u32s).
func serializeMap(pairs [][2]string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(pairs)))
	for _, p := range pairs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p[0])))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p[1])))
	}
	for _, p := range pairs {
		b = append(append(b, p[0]...), 0)
		b = append(append(b, p[1]...), 0)
	}
	return b
}

func strPtr(s string) *byte   { return unsafe.StringData(s) }
func bytesPtr(b []byte) *byte { return unsafe.SliceData(b) }
