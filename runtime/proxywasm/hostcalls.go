package proxywasm

import (
	"context"
	"log/slog"
	"slices"
	"time"
)

// Logs.

func slogLevel(l uint32) slog.Level {
	switch l {
	case logTrace:
		return slog.LevelDebug - 4
	case logDebug:
		return slog.LevelDebug
	case logInfo:
		return slog.LevelInfo
	case logWarn:
		return slog.LevelWarn
	case logError:
		return slog.LevelError
	}
	return slog.LevelError + 4 // critical
}

func proxyLevel(l slog.Level) uint32 {
	switch {
	case l < slog.LevelDebug:
		return logTrace
	case l < slog.LevelInfo:
		return logDebug
	case l < slog.LevelWarn:
		return logInfo
	case l < slog.LevelError:
		return logWarn
	case l < slog.LevelError+4:
		return logError
	}
	return logCritical
}

func hostLog(i *instance, s []uint64) status {
	level := u32(s, 0)
	if level > logCritical {
		return statusBadArgument
	}
	msg, ok := i.read(u32(s, 1), u32(s, 2))
	if !ok {
		return statusInvalidMemoryAccess
	}
	if i.configKind != 0 && level >= logWarn {
		i.startLog = string(msg)
	}
	lv := slogLevel(level)
	if lv < i.p.cfg.LogLevel || !i.p.log.Enabled(context.Background(), lv) {
		return statusOK
	}
	i.p.log.Log(context.Background(), lv, string(msg))
	return statusOK
}

func hostGetLogLevel(i *instance, s []uint64) status {
	if !i.putU32(u32(s, 0), proxyLevel(i.p.cfg.LogLevel)) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

// Clocks and timers.

func hostGetCurrentTime(i *instance, s []uint64) status {
	if !i.mem.WriteUint64Le(u32(s, 0), uint64(time.Now().UnixNano())) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

func hostSetTickPeriod(i *instance, s []uint64) status {
	// The timer belongs to the root context whichever context sets it, as in Envoy.
	i.setTick(u32(s, 0))
	return statusOK
}

// Contexts.

// hostDone is proxy_done: the root context of a closing instance, which answered
// proxy_on_done with false, is finished, and is deleted once the callback returns
// (Plugin.finishRoot). A stream's context is never pending (see Stream.Close): NOT_FOUND.
func hostDone(i *instance, _ []uint64) status {
	if i.rootPending && !i.rootDone && i.effective == i.rootID {
		i.rootDone = true
		return statusOK
	}
	return statusNotFound
}

func hostSetEffectiveContext(i *instance, s []uint64) status {
	id := u32(s, 0)
	if id == i.rootID || (i.cur != nil && id == i.cur.id) {
		i.effective = id
		return statusOK
	}
	return statusBadArgument
}

// hostGetConfiguration is ABI 0.1.0's proxy_get_configuration: the VM configuration in
// proxy_on_vm_start, the plugin's in proxy_on_configure.
func hostGetConfiguration(i *instance, s []uint64) status {
	var b []byte
	switch i.configKind {
	case 1:
		b = i.p.cfg.VMConfig
	case 2:
		b = i.p.cfg.Plugin
	default:
		return statusNotFound
	}
	return i.returnBytes(b, u32(s, 0), u32(s, 1))
}

// Buffers.

// buffer returns the buffer of type bt, and whether the filter may change it.
func (i *instance) buffer(bt uint32) (buf *[]byte, writable bool, st status) {
	switch bt {
	case bufferHTTPRequestBody, bufferHTTPResponseBody:
		s := i.stream()
		if s == nil || s.network {
			return nil, false, statusNotFound
		}
		b := s.reqBody
		if bt == bufferHTTPResponseBody {
			b = s.respBody
		}
		if b == nil {
			return nil, false, statusNotFound
		}
		return &b.Data, true, statusOK
	case bufferHTTPCallResponseBody, bufferGRPCReceiveBuffer, bufferCallData:
		if i.cbBuffer != int(bt) {
			return nil, false, statusNotFound
		}
		return &i.cbBody, false, statusOK
	case bufferVMConfiguration:
		return &i.p.cfg.VMConfig, false, statusOK
	case bufferPluginConfiguration:
		return &i.p.cfg.Plugin, false, statusOK
	case bufferDownstreamData, bufferUpstreamData:
		s := i.stream()
		if s == nil {
			return nil, false, statusNotFound
		}
		b := s.networkBuffer(bt)
		if b == nil {
			return nil, false, statusNotFound
		}
		return &b.Data, true, statusOK
	}
	return nil, false, statusBadArgument
}

func hostGetBufferBytes(i *instance, s []uint64) status {
	buf, _, st := i.buffer(u32(s, 0))
	if st != statusOK {
		return st
	}
	b := *buf
	start, max := uint64(u32(s, 1)), uint64(u32(s, 2))
	if start > uint64(len(b)) {
		return statusBadArgument
	}
	end := start + max
	if end > uint64(len(b)) {
		end = uint64(len(b))
	}
	return i.returnBytes(b[start:end], u32(s, 3), u32(s, 4))
}

// hostSetBufferBytes replaces size bytes at start with the value: start 0 and size 0
// prepend, start at or past the end appends, start 0 and size at least the length
// replaces everything, anything else splices (the spec's inject and replace).
func hostSetBufferBytes(i *instance, s []uint64) status {
	buf, writable, st := i.buffer(u32(s, 0))
	if st != statusOK {
		return st
	}
	v, ok := i.read(u32(s, 3), u32(s, 4))
	if !ok {
		return statusInvalidMemoryAccess
	}
	if !writable {
		return statusBadArgument
	}
	b := *buf
	n := uint64(len(b))
	start := uint64(u32(s, 1))
	if start > n {
		start = n
	}
	end := start + uint64(u32(s, 2))
	if end > n {
		end = n
	}
	dir := streamRequest
	if bt := u32(s, 0); bt == bufferHTTPResponseBody || bt == bufferUpstreamData {
		dir = streamResponse
	}
	if !i.adjust(&i.sBody[dir], int64(len(v))-int64(end-start)) {
		return statusBadArgument
	}
	*buf = slices.Replace(b, int(start), int(end), v...)
	return statusOK
}

func hostGetBufferStatus(i *instance, s []uint64) status {
	buf, _, st := i.buffer(u32(s, 0))
	if st != statusOK {
		return st
	}
	if !i.writable(u32(s, 2), 4) || !i.putU32(u32(s, 1), uint32(len(*buf))) {
		return statusInvalidMemoryAccess
	}
	i.putU32(u32(s, 2), 0)
	return statusOK
}

// Streams.

// continueStream is proxy_continue_stream. On a TCP connection, DOWNSTREAM resumes
// whatever is paused (the SDKs continue either direction with it: Envoy implements only
// that one), UPSTREAM the upstream direction.
func continueStream(i *instance, t uint32) status {
	if t > streamUpstream {
		return statusBadArgument
	}
	st := i.stream()
	if st == nil {
		if t >= streamDownstream {
			return statusUnimplemented // an HTTP stream's, or the root context's
		}
		return statusNotFound
	}
	switch {
	case st.network && t == streamDownstream:
		st.resume(streamRequest)
		st.resume(streamResponse)
	case st.network && t == streamUpstream:
		st.resume(streamResponse)
	case st.network, t >= streamDownstream:
		return statusUnimplemented
	default:
		st.resume(int(t))
	}
	return statusOK
}

func hostContinueStream(i *instance, s []uint64) status { return continueStream(i, u32(s, 0)) }

// hostCloseStream is proxy_close_stream: an HTTP stream is reset, a TCP connection closed
// (either type closes both sides, as Envoy's tcp_proxy ends the other with one).
func hostCloseStream(i *instance, s []uint64) status {
	t := u32(s, 0)
	if t > streamUpstream {
		return statusBadArgument
	}
	st := i.stream()
	switch {
	case t >= streamDownstream && (st == nil || !st.network):
		return statusUnimplemented // an HTTP stream's, or the root context's
	case st == nil, st.network && t < streamDownstream:
		return statusNotFound
	}
	st.reset = true
	i.wake()
	return statusOK
}

func hostSendLocalResponse(i *instance, s []uint64) status {
	details, ok1 := i.read(u32(s, 1), u32(s, 2))
	body, ok2 := i.read(u32(s, 3), u32(s, 4))
	hdrs, ok3 := i.read(u32(s, 5), u32(s, 6))
	if !ok1 || !ok2 || !ok3 {
		return statusInvalidMemoryAccess
	}
	fields, ok := parseMap(hdrs, nil)
	if !ok {
		return statusBadArgument
	}
	st := i.stream()
	if st == nil {
		return statusNotFound
	}
	st.sendLocal(&LocalResponse{
		Status:     int(u32(s, 0)),
		Details:    string(details),
		Body:       slices.Clone(body),
		Headers:    fields,
		GRPCStatus: int(int32(u32(s, 7))),
	})
	return statusOK
}

// sendLocal is proxy_send_local_response on the stream, from its instance's goroutine.
func (s *Stream) sendLocal(lr *LocalResponse) {
	if lr.GRPCStatus < -1 {
		lr.GRPCStatus = -1
	}
	s.local = lr
	s.locals++
	s.inst.wake()
}

func hostGetStatus(i *instance, s []uint64) status {
	if !i.writable(u32(s, 0), 4) {
		return statusInvalidMemoryAccess
	}
	if st := i.returnString(i.statusMsg, u32(s, 1), u32(s, 2)); st != statusOK {
		return st
	}
	i.putU32(u32(s, 0), i.status)
	return statusOK
}
