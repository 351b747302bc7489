package proxywasm

import "context"

// Network filters: Proxy-Wasm's L4 callbacks, for a TCP connection through a filter.
//
// A connection is a Stream too, from Plugin.NewStream to Close, with the connection's
// context in the instance it holds: OnNewConnection makes it a network stream, whose
// downstream data (the client's bytes, buffer type DownstreamData) takes the place of the
// request body, and the upstream data (the backend's, UpstreamData) that of the response
// body. Pause, Wait and Reset work as for a request: a filter that pauses a direction
// holds its bytes, and is given them again with the next ones, everything it holds, as
// Envoy's network filters are; proxy_continue_stream (DOWNSTREAM, which the SDKs use for
// both directions, since Envoy implements no other) lets what it holds through, and
// proxy_close_stream closes the connection.

// PeerType says who closed a connection (proxy_on_downstream_connection_close,
// proxy_on_upstream_connection_close).
type PeerType uint32

const (
	PeerUnknown PeerType = 0
	PeerLocal   PeerType = 1 // the gateway closed it
	PeerRemote  PeerType = 2 // the other end did
)

// IsNetworkFilter reports whether the module exports any of the L4 callbacks. (A module
// on the Go SDK exports all of them, whatever it implements.)
func (p *Plugin) IsNetworkFilter() bool { return p.network }

// OnNewConnection runs proxy_on_new_connection: the connection is accepted, and the
// backend not yet connected to. The stream is a network stream from now on.
func (s *Stream) OnNewConnection() (Action, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.network = true
	return s.phase(cbNewConnection, streamRequest, 0, false)
}

// OnDownstreamData runs proxy_on_downstream_data with b, what the filter holds of the
// client's bytes and the new ones; endOfStream when the client closed its side.
func (s *Stream) OnDownstreamData(b *Body, endOfStream bool) (Action, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqBody = b
	return s.phase(cbDownstreamData, streamRequest, uint32(len(b.Data)), endOfStream)
}

// OnUpstreamData runs proxy_on_upstream_data, as OnDownstreamData for the backend's bytes.
func (s *Stream) OnUpstreamData(b *Body, endOfStream bool) (Action, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.respBody = b
	return s.phase(cbUpstreamData, streamResponse, uint32(len(b.Data)), endOfStream)
}

// OnDownstreamClose runs proxy_on_downstream_connection_close.
func (s *Stream) OnDownstreamClose(peer PeerType) error {
	return s.onClose(cbDownstreamClose, peer)
}

// OnUpstreamClose runs proxy_on_upstream_connection_close.
func (s *Stream) OnUpstreamClose(peer PeerType) error {
	return s.onClose(cbUpstreamClose, peer)
}

func (s *Stream) onClose(c callback, peer PeerType) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	i := s.inst
	if i.fns[c] == nil {
		return nil
	}
	i.effective = s.id
	if f := i.call2(c, s.id, uint32(peer), s.p.timeout); f != nil {
		return s.fail(f)
	}
	return nil
}

// WaitDirection is Wait for one direction of a network stream (the upstream's when
// upstream is true): it returns, resumed, once that direction is no longer paused, or
// the filter closed the connection; with resumed false once ready is readable (the
// gateway has bytes for the filter meanwhile).
func (s *Stream) WaitDirection(ctx context.Context, upstream bool, ready <-chan struct{}) (resumed bool, err error) {
	dir := streamRequest
	if upstream {
		dir = streamResponse
	}
	return s.wait(ctx, func() bool { return !s.paused[dir] }, ready)
}

// networkBuffer is the connection's data of buffer type bt, for the buffer host calls.
func (s *Stream) networkBuffer(bt uint32) *Body {
	switch {
	case !s.network:
		return nil
	case bt == bufferDownstreamData:
		return s.reqBody
	case bt == bufferUpstreamData:
		return s.respBody
	}
	return nil
}
