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
	h := Headers{Fields: headers}
	for _, k := range []string{":method", ":path", ":authority"} {
		if v, ok := h.get(k); !ok || v == "" {
			return statusBadArgument
		}
	}
	host := i.p.host
	if host == nil {
		return statusInternalFailure
	}
	id := i.newCallID()
	err := host.HTTPCall(cluster, headers, slices.Clone(body), trailers, calloutTimeout(u32(s, 8)),
		func(resp *HTTPCallResponse, err error) {
			i.post(event{kind: evHTTP, id: id, resp: resp, err: err}, true)
		})
	if err != nil {
		return statusBadArgument
	}
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

// gRPC calls: unary, over Host.HTTPCall to an HTTP/2 backend, with gRPC's
// length-prefixed framing and the status in the trailers.

const (
	grpcOK               = 0
	grpcUnknown          = 2
	grpcDeadlineExceeded = 4
	grpcInternal         = 13
	grpcUnavailable      = 14
)

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
	headers := []Field{
		{":method", "POST"},
		{":path", "/" + service + "/" + method},
		{":authority", cluster},
		{":scheme", "http"},
		{"content-type", "application/grpc"},
		{"te", "trailers"},
		{"grpc-timeout", strconv.FormatInt(timeout.Milliseconds(), 10) + "m"},
	}
	headers, ok := parseMap(md, headers)
	if !ok {
		return statusBadArgument
	}
	body := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:], uint32(len(msg)))
	copy(body[5:], msg)
	host := i.p.host
	if host == nil {
		return statusInternalFailure
	}
	id := i.newCallID()
	err := host.HTTPCall(cluster, headers, body, nil, timeout, func(resp *HTTPCallResponse, err error) {
		i.post(event{kind: evGRPC, id: id, resp: resp, err: err}, true)
	})
	if err != nil {
		return statusParseFailure // the spec's status for an unknown upstream
	}
	if i.grpcCalls == nil {
		i.grpcCalls = map[uint32]bool{}
	}
	i.grpcCalls[id] = false
	i.putU32(retID, id)
	return statusOK
}

// hostGRPCStream: streaming gRPC needs a streaming callout, which Host does not offer yet.
func hostGRPCStream(i *instance, s []uint64) status { return statusUnimplemented }

func hostGRPCSend(i *instance, s []uint64) status {
	if _, ok := i.grpcCalls[u32(s, 0)]; ok {
		return statusBadArgument // a unary call, not a stream
	}
	return statusNotFound
}

// hostGRPCCancel and hostGRPCClose end a call on the filter's side: no callback follows.
func hostGRPCCancel(i *instance, s []uint64) status {
	id := u32(s, 0)
	if canceled, ok := i.grpcCalls[id]; !ok || canceled {
		return statusNotFound
	}
	i.grpcCalls[id] = true
	return statusOK
}

func hostGRPCClose(i *instance, s []uint64) status { return hostGRPCCancel(i, s) }

func (i *instance) grpcLive(id uint32) bool {
	canceled, ok := i.grpcCalls[id]
	return ok && !canceled
}

// deliverGRPC runs, as the response allows, proxy_on_grpc_receive_initial_metadata,
// proxy_on_grpc_receive, proxy_on_grpc_receive_trailing_metadata, and always
// proxy_on_grpc_close, unless the filter canceled the call.
func (i *instance) deliverGRPC(ev *event) *Failure {
	id := ev.id
	defer delete(i.grpcCalls, id)
	defer i.clearCallout()
	if !i.grpcLive(id) {
		return nil
	}
	code, msg := grpcOK, ""
	if ev.err != nil || ev.resp == nil {
		code, msg = grpcUnavailable, "call failed"
		if ev.err != nil {
			msg = ev.err.Error()
			if errors.Is(ev.err, context.DeadlineExceeded) || errors.Is(ev.err, os.ErrDeadlineExceeded) {
				code = grpcDeadlineExceeded
			}
		}
		return i.grpcClose(id, code, msg)
	}
	resp := ev.resp
	all := &Headers{Fields: resp.Headers}
	httpStatus, _ := all.get(":status")
	trailers := &Headers{Fields: resp.Trailers}
	if len(resp.Trailers) == 0 {
		trailers = all // a trailers-only response
	}
	if v, ok := trailers.get("grpc-status"); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			n = grpcUnknown
		}
		code = n
		msg, _ = trailers.get("grpc-message")
	} else if httpStatus != "200" {
		code, msg = grpcUnavailable, "HTTP status "+httpStatus
		if httpStatus == "" {
			code = grpcUnknown
		}
	} else {
		code, msg = grpcUnknown, "no grpc-status in the response"
	}

	if md := metadata(resp.Headers); len(md) > 0 && i.has(cbGRPCInitialMetadata) {
		i.cbMaps = [2]int{mapGRPCInitialMetadata, -1}
		i.cbHeaders.Fields = md
		if f := i.call3v(cbGRPCInitialMetadata, i.rootID, id, uint32(len(md))); f != nil {
			return f
		}
		i.clearCallout()
	}
	body := resp.Body
	for len(body) >= 5 && i.grpcLive(id) {
		n := binary.BigEndian.Uint32(body[1:5])
		if body[0] != 0 {
			code, msg = grpcInternal, "compressed gRPC message: compression is not supported"
			break
		}
		if uint64(n) > uint64(len(body)-5) {
			code, msg = grpcInternal, "truncated gRPC message"
			break
		}
		i.cbBuffer = bufferGRPCReceiveBuffer
		i.cbBody = body[5 : 5+n]
		if f := i.call3v(cbGRPCReceive, i.rootID, id, n); f != nil {
			return f
		}
		i.clearCallout()
		body = body[5+n:]
	}
	if len(resp.Trailers) > 0 && i.grpcLive(id) && i.has(cbGRPCTrailingMetadata) {
		md := metadata(resp.Trailers)
		i.cbMaps = [2]int{-1, mapGRPCTrailingMetadata}
		i.cbTrailers.Fields = md
		if f := i.call3v(cbGRPCTrailingMetadata, i.rootID, id, uint32(len(md))); f != nil {
			return f
		}
		i.clearCallout()
	}
	if !i.grpcLive(id) {
		return nil
	}
	return i.grpcClose(id, code, msg)
}

func (i *instance) grpcClose(id uint32, code int, msg string) *Failure {
	i.status, i.statusMsg = uint32(code), msg
	_, f := i.call3(cbGRPCClose, i.rootID, id, uint32(code), i.p.timeout)
	return f
}

func (i *instance) call3v(c callback, a, b, d uint32) *Failure {
	_, f := i.call3(c, a, b, d, i.p.timeout)
	return f
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
