package proxywasm

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultCalloutTimeout is the timeout of an HTTP or gRPC call made with a timeout of 0.
const DefaultCalloutTimeout = 30 * time.Second

// Callouts belong to the root context of the instance that made them, whichever context
// made them (as in proxy-wasm-cpp-host); their callbacks get the root context's id and
// are delivered when the instance can run them: in the Wait or the next phase of the
// stream holding it, or in the background when it is idle.

func (i *instance) newCallID() uint32 {
	i.nextCall++
	if i.nextCall == 0 {
		i.nextCall = 1
	}
	return i.nextCall
}

func calloutTimeout(ms uint32) time.Duration {
	if ms == 0 {
		return DefaultCalloutTimeout
	}
	return time.Duration(ms) * time.Millisecond
}

func hostHTTPCall(i *instance, s []uint64) status {
	cluster, ok1 := i.readString(u32(s, 0), u32(s, 1))
	hdrs, ok2 := i.read(u32(s, 2), u32(s, 3))
	body, ok3 := i.read(u32(s, 4), u32(s, 5))
	trls, ok4 := i.read(u32(s, 6), u32(s, 7))
	retID := u32(s, 9)
	if !ok1 || !ok2 || !ok3 || !ok4 || !i.writable(retID, 4) {
		return statusInvalidMemoryAccess
	}
	headers, ok := parseMap(hdrs, nil)
	if !ok {
		return statusBadArgument
	}
	trailers, ok := parseMap(trls, nil)
	if !ok {
		return statusBadArgument
	}
	// As Envoy checks them: the three must be there; :authority may be empty (the host
	// then names the cluster), :method and :path may not.
	h := Headers{Fields: headers}
	for _, k := range []string{":method", ":path", ":authority"} {
		if v, ok := h.get(k); !ok || v == "" && k != ":authority" {
			return statusBadArgument
		}
	}
	host := i.p.host
	if host == nil {
		return statusInternalFailure
	}
	if !i.calloutRoom() {
		i.p.log.Debug("HTTP callout refused: too many in flight", "limit", i.p.cfg.MaxCallouts)
		return statusInternalFailure
	}
	// The request is held until the response comes; the response until its callback ends.
	req := fieldsBytes(headers) + int64(len(body)) + fieldsBytes(trailers)
	if !i.take(req) {
		i.p.log.Debug("HTTP callout refused", "err", i.errHostMemory("a request", req))
		return statusInternalFailure
	}
	id := i.newCallID()
	err := host.HTTPCall(i.calloutContext(), cluster, headers, slices.Clone(body), trailers, calloutTimeout(u32(s, 8)),
		func(resp *HTTPCallResponse, err error) {
			i.give(req)
			ev := event{kind: evHTTP, id: id, resp: resp, err: err}
			if resp != nil {
				n := fieldsBytes(resp.Headers) + int64(len(resp.Body)) + fieldsBytes(resp.Trailers)
				if i.take(n) {
					ev.charge = n
				} else {
					ev.resp, ev.err = nil, i.errHostMemory("the response", n)
				}
			}
			i.post(ev, true)
		})
	if err != nil {
		i.give(req)
		return statusBadArgument
	}
	i.httpOut++
	i.putU32(retID, id)
	return statusOK
}

func (i *instance) call5(c callback, a, b, d, e, f uint32) *Failure {
	if i.fns[c] == nil {
		return nil
	}
	i.stack[0], i.stack[1], i.stack[2], i.stack[3], i.stack[4] = uint64(a), uint64(b), uint64(d), uint64(e), uint64(f)
	_, fl := i.invoke(c, i.p.timeout)
	return fl
}

// deliverHTTP runs proxy_on_http_call_response. A failed call has no headers (the spec's
// sign of failure); proxy_get_status then says why.
func (i *instance) deliverHTTP(ev *event) *Failure {
	i.httpOut--
	defer i.clearCallout()
	i.cbMaps = [2]int{mapHTTPCallResponseHeaders, mapHTTPCallResponseTrailers}
	i.cbBuffer = bufferHTTPCallResponseBody
	if ev.err != nil || ev.resp == nil {
		i.status, i.statusMsg = 503, "call failed"
		if ev.err != nil {
			i.statusMsg = ev.err.Error()
		}
		return i.call5(cbHTTPCallResponse, i.rootID, ev.id, 0, 0, 0)
	}
	i.cbHeaders.Fields = slices.Clone(ev.resp.Headers)
	i.cbTrailers.Fields = slices.Clone(ev.resp.Trailers)
	i.cbBody = ev.resp.Body
	code, _ := i.cbHeaders.get(":status")
	n, _ := strconv.Atoi(code)
	i.status, i.statusMsg = uint32(n), ""
	return i.call5(cbHTTPCallResponse, i.rootID, ev.id, uint32(len(i.cbHeaders.Fields)), uint32(len(i.cbBody)), uint32(len(i.cbTrailers.Fields)))
}

// gRPC: proxy_grpc_call and proxy_grpc_stream both go over Host.GRPCStream, an HTTP/2
// request whose body streams. The runtime does the wire format (length-prefixed
// messages; grpc-status and grpc-message in the trailers, or in the headers of a
// trailers-only response), so every host behaves the same. What the filter sees follows
// Envoy, which the SDKs are written against (see RATIONALE.md, "gRPC callouts"):
//   - a call gets proxy_on_grpc_receive with its one message on success, or
//     proxy_on_grpc_close with the status on failure; never both, and no metadata;
//   - a stream gets proxy_on_grpc_receive_initial_metadata, proxy_on_grpc_receive per
//     message, proxy_on_grpc_receive_trailing_metadata, then proxy_on_grpc_close;
//   - proxy_grpc_cancel aborts either, and no callback follows;
//   - proxy_grpc_close aborts a call like cancel, and half-closes a stream, whose
//     callbacks go on.

// gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html).
const (
	grpcOK                = 0
	grpcUnknown           = 2
	grpcDeadlineExceeded  = 4
	grpcPermissionDenied  = 7
	grpcResourceExhausted = 8
	grpcUnimplemented     = 12
	grpcInternal          = 13
	grpcUnavailable       = 14
	grpcUnauthenticated   = 16
)

// maxGRPCMessage bounds a received message, as gRPC's default receive limit does.
const maxGRPCMessage = 4 << 20

// grpcCall is a call or stream the filter started and has not seen the end of.
type grpcCall struct {
	h       GRPCHandle
	stream  bool // proxy_grpc_stream; false for proxy_grpc_call
	sentEnd bool // our side is closed: send with end_of_stream, or proxy_grpc_close
}

type grpcWhat uint8

const (
	grpcInitialMetadata grpcWhat = iota + 1
	grpcMessage
	grpcTrailingMetadata
	grpcClosed
)

// grpcEvent is one callback due to the filter for a call or stream.
type grpcEvent struct {
	what   grpcWhat
	fields []Field // metadata
	msg    []byte  // grpcMessage
	code   uint32  // grpcClosed: the gRPC status
	text   string  // grpcClosed: grpc-message, or why the call failed
}

func hostGRPCCall(i *instance, s []uint64) status {
	cluster, ok1 := i.readString(u32(s, 0), u32(s, 1))
	service, ok2 := i.readString(u32(s, 2), u32(s, 3))
	method, ok3 := i.readString(u32(s, 4), u32(s, 5))
	md, ok4 := i.read(u32(s, 6), u32(s, 7))
	msg, ok5 := i.read(u32(s, 8), u32(s, 9))
	retID := u32(s, 11)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !i.writable(retID, 4) {
		return statusInvalidMemoryAccess
	}
	timeout := calloutTimeout(u32(s, 10))
	headers, ok := grpcHeaders(cluster, service, method, md, timeout)
	if !ok {
		return statusBadArgument
	}
	return i.openGRPC(cluster, headers, timeout, false, grpcFrame(msg), retID)
}

func hostGRPCStream(i *instance, s []uint64) status {
	cluster, ok1 := i.readString(u32(s, 0), u32(s, 1))
	service, ok2 := i.readString(u32(s, 2), u32(s, 3))
	method, ok3 := i.readString(u32(s, 4), u32(s, 5))
	md, ok4 := i.read(u32(s, 6), u32(s, 7))
	retID := u32(s, 8)
	if !ok1 || !ok2 || !ok3 || !ok4 || !i.writable(retID, 4) {
		return statusInvalidMemoryAccess
	}
	headers, ok := grpcHeaders(cluster, service, method, md, 0)
	if !ok {
		return statusBadArgument
	}
	return i.openGRPC(cluster, headers, 0, true, nil, retID)
}

// openGRPC starts a call (its whole request body in first) or a stream, and stores its id
// at retID.
func (i *instance) openGRPC(cluster string, headers []Field, timeout time.Duration, stream bool, first []byte, retID uint32) status {
	host := i.p.host
	if host == nil {
		return statusInternalFailure
	}
	if !i.calloutRoom() {
		i.p.log.Debug("gRPC callout refused: too many in flight", "limit", i.p.cfg.MaxCallouts)
		return statusInternalFailure
	}
	id := i.newCallID()
	r := &grpcReceiver{i: i, id: id, unary: !stream}
	h, err := host.GRPCStream(i.calloutContext(), cluster, headers, timeout, GRPCEvents{
		Headers: r.onHeaders, Data: r.onData, Trailers: r.onTrailers, Done: r.onDone,
	})
	if err != nil {
		if errors.Is(err, ErrUnknownCluster) {
			return statusParseFailure // the spec's status for an unknown upstream
		}
		i.p.r.log.Warn("filter's gRPC callout could not start", "filter", i.p.cfg.Name, "cluster", cluster, "err", err)
		return statusInternalFailure
	}
	c := &grpcCall{h: h, stream: stream}
	if !stream {
		c.sentEnd = true
		if err := h.Send(first, true); err != nil {
			h.Cancel()
			return statusInternalFailure
		}
	}
	if i.grpcCalls == nil {
		i.grpcCalls = map[uint32]*grpcCall{}
	}
	i.grpcCalls[id] = c
	i.putU32(retID, id)
	return statusOK
}

// grpcHeaders is the request headers of a call to /service/method: gRPC's, then the
// filter's metadata (the serialized map md). ok is false for a malformed map, or one that
// names a pseudo-header.
func grpcHeaders(cluster, service, method string, md []byte, timeout time.Duration) ([]Field, bool) {
	h := make([]Field, 0, 8)
	h = append(h,
		Field{":method", "POST"},
		Field{":path", "/" + service + "/" + method},
		Field{":authority", cluster},
		Field{":scheme", "http"},
		Field{"content-type", "application/grpc"},
		Field{"te", "trailers"},
	)
	if timeout > 0 {
		h = append(h, Field{"grpc-timeout", grpcTimeout(timeout)})
	}
	n := len(h)
	h, ok := parseMap(md, h)
	if !ok {
		return nil, false
	}
	for _, f := range h[n:] {
		if strings.HasPrefix(f.Key, ":") {
			return nil, false
		}
	}
	for _, f := range h[n:] {
		if f.Key == "content-type" { // application/grpc+proto, ...: the filter's replaces ours
			h = slices.Delete(h, 4, 5)
			break
		}
	}
	return h, true
}

// grpcTimeout is d as grpc-timeout: at most 8 digits and a unit.
func grpcTimeout(d time.Duration) string {
	if ms := d.Milliseconds(); ms < 1e8 {
		return strconv.FormatInt(max(ms, 1), 10) + "m"
	}
	return strconv.FormatInt(int64(d/time.Second), 10) + "S"
}

// grpcFrame is msg as a gRPC length-prefixed message: uncompressed flag, big-endian length.
func grpcFrame(msg []byte) []byte {
	b := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	copy(b[5:], msg)
	return b
}

func hostGRPCSend(i *instance, s []uint64) status {
	msg, ok := i.read(u32(s, 1), u32(s, 2))
	if !ok {
		return statusInvalidMemoryAccess
	}
	c := i.grpcCalls[u32(s, 0)]
	switch {
	case c == nil:
		return statusNotFound
	case !c.stream || c.sentEnd:
		return statusBadArgument // a call, or a stream whose sending side is closed
	}
	end := u32(s, 3) != 0
	if err := c.h.Send(grpcFrame(msg), end); err != nil {
		return statusBadArgument // the exchange is over; proxy_on_grpc_close is on its way
	}
	c.sentEnd = end
	return statusOK
}

// hostGRPCCancel aborts a call or stream; no callback follows.
func hostGRPCCancel(i *instance, s []uint64) status {
	id := u32(s, 0)
	c := i.grpcCalls[id]
	if c == nil {
		return statusNotFound
	}
	delete(i.grpcCalls, id)
	c.h.Cancel()
	return statusOK
}

// hostGRPCClose aborts a call, as cancel does, and half-closes a stream: its response
// still comes, to proxy_on_grpc_close.
func hostGRPCClose(i *instance, s []uint64) status {
	c := i.grpcCalls[u32(s, 0)]
	if c == nil {
		return statusNotFound
	}
	if !c.stream {
		return hostGRPCCancel(i, s)
	}
	if !c.sentEnd {
		c.sentEnd = true
		c.h.Send(nil, true) // an error means the exchange is over already
	}
	return statusOK
}

// cancelGRPC aborts every call and stream of an instance that goes away.
func (i *instance) cancelGRPC() {
	for id, c := range i.grpcCalls {
		delete(i.grpcCalls, id)
		c.h.Cancel()
	}
}

// deliverGRPC runs one gRPC callback, unless the filter canceled the call or stream.
func (i *instance) deliverGRPC(ev *event) *Failure {
	id, g := ev.id, ev.grpc
	c := i.grpcCalls[id]
	if c == nil || g == nil {
		return nil
	}
	defer i.clearCallout()
	switch g.what {
	case grpcInitialMetadata:
		i.cbMaps = [2]int{mapGRPCInitialMetadata, -1}
		i.cbHeaders.Fields = g.fields
		return i.call3v(cbGRPCInitialMetadata, i.rootID, id, uint32(len(g.fields)))
	case grpcMessage:
		if !c.stream { // a call ends with its message
			delete(i.grpcCalls, id)
			i.status, i.statusMsg = grpcOK, ""
		}
		i.cbBuffer = bufferGRPCReceiveBuffer
		i.cbBody = g.msg
		return i.call3v(cbGRPCReceive, i.rootID, id, uint32(len(g.msg)))
	case grpcTrailingMetadata:
		i.cbMaps = [2]int{-1, mapGRPCTrailingMetadata}
		i.cbTrailers.Fields = g.fields
		return i.call3v(cbGRPCTrailingMetadata, i.rootID, id, uint32(len(g.fields)))
	case grpcClosed:
		delete(i.grpcCalls, id)
		c.h.Cancel() // what is left of an exchange that broke the wire format, if anything
		i.status, i.statusMsg = g.code, g.text
		return i.call3v(cbGRPCClose, i.rootID, id, g.code)
	}
	return nil
}

func (i *instance) call3v(c callback, a, b, d uint32) *Failure {
	_, f := i.call3(c, a, b, d, i.p.timeout)
	return f
}

// grpcReceiver turns the response to a call or stream into the filter's events, on the
// host's goroutine: it takes messages out of their frames and works out the status.
type grpcReceiver struct {
	i     *instance
	id    uint32
	unary bool

	held     []Field // metadata of headers that carry grpc-status: a trailers-only response,
	heldSome bool    // unless a body or trailers follow
	trailers []Field
	gotTrail bool
	buf      []byte // received bytes not yet a whole message, from off
	off      int
	reply    []byte // a call's message, and how many came
	replies  int
	done     bool // the end was posted; anything after is ignored
}

func (r *grpcReceiver) post(g *grpcEvent) {
	r.i.post(event{kind: evGRPC, id: r.id, grpc: g}, true)
}

// finish posts proxy_on_grpc_close with code.
func (r *grpcReceiver) finish(code uint32, text string) {
	if r.done {
		return
	}
	r.done = true
	r.post(&grpcEvent{what: grpcClosed, code: code, text: text})
}

func (r *grpcReceiver) onHeaders(fields []Field) {
	if r.done {
		return
	}
	h := &Headers{Fields: fields}
	st, _ := h.get(":status")
	if st != "200" {
		// https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md:
		// grpc-status wins when there is one.
		if _, ok := h.get("grpc-status"); ok {
			r.finish(grpcStatus(fields))
		} else {
			r.finish(httpToGRPC(st), "HTTP status "+st+" from the backend")
		}
		return
	}
	if ct, ok := h.get("content-type"); ok && !strings.HasPrefix(ct, "application/grpc") {
		r.finish(grpcUnknown, "not a gRPC response: content-type "+ct)
		return
	}
	md := metadata(fields)
	if _, ok := h.get("grpc-status"); ok {
		r.held, r.heldSome = md, true
		return
	}
	r.initial(md)
}

func (r *grpcReceiver) initial(md []Field) {
	if !r.unary {
		r.post(&grpcEvent{what: grpcInitialMetadata, fields: md})
	}
}

// unhold posts held headers as initial metadata: more than a trailers-only response came.
func (r *grpcReceiver) unhold() {
	if r.heldSome {
		r.initial(r.held)
		r.held, r.heldSome = nil, false
	}
}

func (r *grpcReceiver) onData(chunk []byte) {
	if r.done || len(chunk) == 0 {
		return
	}
	r.unhold()
	r.buf = append(r.buf, chunk...)
	for {
		rest := r.buf[r.off:]
		if len(rest) < 5 {
			break
		}
		if rest[0] != 0 {
			r.finish(grpcInternal, "compressed gRPC message, though none was asked for")
			return
		}
		n := binary.BigEndian.Uint32(rest[1:5])
		if n > maxGRPCMessage {
			r.finish(grpcResourceExhausted, "gRPC message of "+strconv.FormatUint(uint64(n), 10)+" bytes, over the limit of "+strconv.Itoa(maxGRPCMessage))
			return
		}
		if uint64(len(rest)-5) < uint64(n) {
			break
		}
		r.message(slices.Clone(rest[5 : 5+n]))
		r.off += 5 + int(n)
	}
	if r.off == len(r.buf) {
		r.buf, r.off = r.buf[:0], 0
	} else if r.off > len(r.buf)/2 {
		r.buf = r.buf[:copy(r.buf, r.buf[r.off:])]
		r.off = 0
	}
}

func (r *grpcReceiver) message(m []byte) {
	if r.unary {
		if r.replies++; r.replies == 1 {
			r.reply = m
		}
		return
	}
	// A message waits for its callback in the host: it counts against the budget until then.
	n := int64(len(m)) + HostEntryBytes
	if !r.i.take(n) {
		r.finish(grpcResourceExhausted, r.i.errHostMemory("a gRPC message", n).Error())
		return
	}
	r.i.post(event{kind: evGRPC, id: r.id, grpc: &grpcEvent{what: grpcMessage, msg: m}, charge: n}, true)
}

func (r *grpcReceiver) onTrailers(fields []Field) {
	if r.done {
		return
	}
	r.unhold()
	r.trailers, r.gotTrail = metadata(fields), true
	if !r.unary {
		r.post(&grpcEvent{what: grpcTrailingMetadata, fields: r.trailers})
	}
}

func (r *grpcReceiver) onDone(err error) {
	if r.done {
		return
	}
	if err != nil {
		code := uint32(grpcUnavailable)
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
			code = grpcDeadlineExceeded
		}
		r.finish(code, err.Error())
		return
	}
	if r.off < len(r.buf) {
		r.finish(grpcInternal, "the response ended inside a gRPC message")
		return
	}
	var code uint32
	var text string
	switch {
	case r.gotTrail:
		code, text = grpcStatus(r.trailers)
	case r.heldSome: // trailers-only: Envoy shows empty initial metadata, then the headers as trailers
		if !r.unary {
			r.post(&grpcEvent{what: grpcInitialMetadata})
			r.post(&grpcEvent{what: grpcTrailingMetadata, fields: r.held})
		}
		code, text = grpcStatus(r.held)
	default:
		r.finish(grpcUnknown, "the response ended without a grpc-status")
		return
	}
	if r.unary && code == grpcOK {
		switch r.replies {
		case 1:
			r.done = true
			r.post(&grpcEvent{what: grpcMessage, msg: r.reply})
			return
		case 0:
			code, text = grpcInternal, "the call ended with status OK but no message"
		default:
			code, text = grpcInternal, "more than one message in answer to a unary call"
		}
	}
	r.finish(code, text)
}

// grpcStatus reads grpc-status and grpc-message (percent-encoded) from fields.
func grpcStatus(fields []Field) (uint32, string) {
	h := &Headers{Fields: fields}
	v, ok := h.get("grpc-status")
	if !ok {
		return grpcUnknown, "the response ended without a grpc-status"
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return grpcUnknown, "malformed grpc-status " + strconv.Quote(v)
	}
	msg, _ := h.get("grpc-message")
	return uint32(n), percentDecode(msg)
}

// percentDecode undoes grpc-message's percent-encoding; a malformed escape stays as is.
func percentDecode(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	b := make([]byte, 0, len(s))
	for k := 0; k < len(s); k++ {
		if s[k] == '%' && k+2 < len(s) {
			if v, err := strconv.ParseUint(s[k+1:k+3], 16, 8); err == nil {
				b = append(b, byte(v))
				k += 2
				continue
			}
		}
		b = append(b, s[k])
	}
	return string(b)
}

// httpToGRPC maps the HTTP status of a response without grpc-status, as gRPC does.
func httpToGRPC(st string) uint32 {
	switch st {
	case "400":
		return grpcInternal
	case "401":
		return grpcUnauthenticated
	case "403":
		return grpcPermissionDenied
	case "404":
		return grpcUnimplemented
	case "429", "502", "503", "504":
		return grpcUnavailable
	}
	return grpcUnknown
}

// metadata is the fields that are not pseudo-headers.
func metadata(fields []Field) []Field {
	var md []Field
	for _, f := range fields {
		if !strings.HasPrefix(f.Key, ":") {
			md = append(md, f)
		}
	}
	return md
}
