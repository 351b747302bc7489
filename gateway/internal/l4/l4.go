// Package l4 is the stage of an L4 (TCP) listener's connection: from the accepted
// connection, through its network filters (Proxy-Wasm's on_new_connection,
// on_downstream_data, on_upstream_data and the close callbacks), to one endpoint of a
// backend, and back.
//
// One goroutine runs the filters of a connection, for both directions, as Envoy runs a
// connection's on one worker thread; a reader per side keeps one chunk ahead of it, and a
// writer per side sends what came through. The client's bytes go through the filters in
// order, the backend's in reverse. A filter that pauses a direction holds its bytes: the
// next ones are added to what it holds and it is called again with all of it, and when it
// resumes (proxy_continue_stream) what it holds goes on to the filters after it. A
// half-close goes through as one: the side that sent its last bytes has the other side's
// write end closed after them, and the connection ends when both sides have, or either
// fails, a filter closes it, or no byte went either way for the idle timeout; when plexus
// ends it, the filters read why as connection.termination_details.
package l4

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/plexus-mesh/plexus/gateway/internal/filterchain"
	"github.com/plexus-mesh/plexus/gateway/internal/route"
	"github.com/plexus-mesh/plexus/gateway/internal/upstream"
	"github.com/plexus-mesh/plexus/runtime/proxywasm"
)

// Target is where a listener's connections go: to the backend of the first SNI route
// whose server names match the one the client's TLS ClientHello names, else to Cluster
// (nil: the connection is closed).
type Target struct {
	Listener    string
	Cluster     *upstream.Cluster
	SNI         []SNIRoute
	Passthrough bool                        // the listener does not end TLS: the ClientHello is read, and passed on
	Direction   int                         // listener_direction: Envoy's TrafficDirection
	LocalCert   *x509.Certificate           // the listener's certificate, when it ends TLS
	Metadata    map[string]*structpb.Struct // the listener's, by namespace
	Filters     []*filterchain.Filter
	IdleTimeout time.Duration // 0: none
}

// SNIRoute sends the connections for some server names to a backend.
type SNIRoute struct {
	Names   route.Hosts
	Cluster *upstream.Cluster
}

// pick is the backend for a connection to server name sni ("" for none).
func (t *Target) pick(sni string) *upstream.Cluster {
	host := route.HostPattern(sni)
	for _, r := range t.SNI {
		if sni != "" && r.Names.Match(host) {
			return r.Cluster
		}
	}
	return t.Cluster
}

// helloTimeout bounds the wait for a passthrough connection's ClientHello, as Envoy's
// listener_filters_timeout does.
const helloTimeout = 15 * time.Second

const (
	down = 0 // the client's bytes, toward the backend
	up   = 1 // the backend's, toward the client

	chunkSize = 32 << 10
	// queued bounds the chunks waiting for one side's writer: past it the filters wait,
	// and with them the reading of both sides.
	queued = 64
)

// Serve proxies one accepted connection and closes it; id is its connection.id. ctx ends
// it early (shutdown).
func Serve(ctx context.Context, client net.Conn, id uint64, t *Target, log *slog.Logger) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	c := &conn{t: t, log: log.With("listener", t.Listener), sides: [2]net.Conn{client}, bell: make(chan struct{}, 1)}
	c.paused = [2]int{-1, -1}
	c.idleFor = t.IdleTimeout
	if c.idleFor <= 0 {
		c.idleFor = math.MaxInt64
	}
	c.idle = time.AfterFunc(c.idleFor, func() { cancel(errIdle) })
	defer func() { c.finish(context.Cause(ctx)) }()
	c.info = proxywasm.StreamInfo{
		Start:             time.Now(),
		SourceAddress:     client.RemoteAddr().String(),
		DestAddress:       client.LocalAddr().String(),
		ConnectionID:      id,
		ListenerDirection: t.Direction,
		ListenerMetadata:  t.Metadata,
		State:             &c.state,
	}
	if tc, ok := client.(*tls.Conn); ok {
		if err := tc.HandshakeContext(ctx); err != nil {
			log.Debug("tcp: TLS handshake failed", "listener", t.Listener, "client", c.info.SourceAddress, "error", err)
			return
		}
		st := tc.ConnectionState()
		c.info.TLSVersion = proxywasm.TLSVersionName(st.Version)
		c.info.ServerName = st.ServerName
		c.info.MTLS = len(st.PeerCertificates) > 0
		c.info.LocalCert = t.LocalCert
		if len(st.PeerCertificates) > 0 {
			c.info.PeerCert = st.PeerCertificates[0]
		}
	} else if t.Passthrough && len(t.SNI) > 0 {
		stop := context.AfterFunc(ctx, func() { client.SetReadDeadline(time.Now()) }) // idle, shutdown
		sni, hello, err := peekServerName(client)
		stop()
		if err != nil {
			c.log.Debug("tcp: no TLS ClientHello to route by", "client", c.info.SourceAddress, "error", err)
		}
		c.info.ServerName = sni
		c.sides[down] = &prefixed{Conn: client, prefix: hello}
	}
	if c.cluster = t.pick(c.info.ServerName); c.cluster == nil {
		c.log.Info("tcp: no backend for the server name; connection closed", "server_name", c.info.ServerName)
		return
	}
	c.info.ClusterName = c.cluster.Name
	if !c.start(ctx) {
		return
	}
	if !c.cluster.Admit() {
		c.log.Warn("tcp: circuit breaker open; connection closed", "backend", c.cluster.Name)
		c.terminate("upstream_overflow")
		return
	}
	c.admitted = true
	if !c.connect(ctx) {
		return
	}
	for d := range 2 {
		c.feeds[d] = newFeed(c.sides[d], c.bell)
		c.writers[d] = newWriter(c.sides[d])
	}
	if c.run(ctx) {
		// Both sides sent their last bytes: they are written before the sides close.
		for _, w := range c.writers {
			w.flush(ctx)
		}
	}
}

// conn is one proxied connection.
type conn struct {
	t     *Target
	log   *slog.Logger
	info  proxywasm.StreamInfo
	state proxywasm.FilterState // what the filters set, shared by them: info.State
	sides [2]net.Conn           // client, backend

	streams  []*proxywasm.Stream // by filter; nil for a fail-open filter that failed
	pending  [2][][]byte         // what each filter holds, per direction
	paused   [2]int              // the position (in the direction's order) of the filter holding it, -1
	eosHeld  [2]bool             // the held bytes end the direction
	ended    [2]bool             // the side sent its last bytes, and they went through
	closer   int                 // the side that ended the connection, -1 for a filter or plexus
	admitted bool
	cluster  *upstream.Cluster // the backend chosen

	bell    chan struct{} // a reader has a chunk
	feeds   [2]*feed
	writers [2]*writer
	idle    *time.Timer
	idleFor time.Duration
}

// errClosed ends a connection a filter closed (proxy_close_stream).
var errClosed = errors.New("closed by a filter")

// start creates the connection's context in each filter and runs on_new_connection,
// waiting for a filter that pauses it. It reports false when the connection is to close.
func (c *conn) start(ctx context.Context) bool {
	c.closer = -1
	c.streams = make([]*proxywasm.Stream, len(c.t.Filters))
	for d := range 2 {
		c.pending[d] = make([][]byte, len(c.t.Filters))
	}
	for k, f := range c.t.Filters {
		s, err := f.NewStream(ctx, &c.info)
		if err != nil {
			if c.failed(k, err) {
				return false
			}
			continue
		}
		c.streams[k] = s
		act, err := s.OnNewConnection()
		for err == nil && act == proxywasm.Pause && !s.Reset() {
			var resumed bool
			resumed, err = s.WaitDirection(ctx, false, nil)
			if resumed {
				break
			}
		}
		if err != nil && c.failed(k, err) {
			return false
		}
		if s.Reset() {
			return false
		}
	}
	return true
}

// failed handles a filter's failure: a fail-open filter is left out of the connection from
// now on, what it held let through; a fail-closed one closes it (true).
func (c *conn) failed(k int, err error) bool {
	f := c.t.Filters[k]
	if !f.FailOpen {
		c.log.Warn("tcp: network filter failed; connection closed", "filter", f.Name, "error", err)
		c.terminate("filter_failed")
		return true
	}
	c.log.Warn("tcp: network filter failed; failure: open, so the connection goes on without it", "filter", f.Name, "error", err)
	if s := c.streams[k]; s != nil {
		s.Close()
		c.streams[k] = nil
	}
	return false
}

// connect dials the backend: its endpoints in turn, each at most once, until one answers.
func (c *conn) connect(ctx context.Context) bool {
	var avoid *upstream.Endpoint
	// A consistent-hash balancer hashes an L4 connection by its client's IP (a header or a
	// cookie there is none to read).
	ip, _, _ := net.SplitHostPort(c.info.SourceAddress)
	key, hashed := c.cluster.KeyOf(&http.Request{Header: http.Header{}}, ip)
	for range len(c.cluster.Endpoints()) {
		ep := c.cluster.PickFor(key, hashed, avoid)
		if ep == nil {
			break
		}
		nc, err := c.cluster.DialTCP(ctx, ep)
		if err == nil {
			c.sides[up] = nc
			c.info.UpstreamAddress, c.info.UpstreamMetadata = ep.Addr, ep.Metadata
			c.info.UpstreamFailure = ""
			c.info.UpstreamConn, c.info.UpstreamLocalCert = nc, c.cluster.ClientCert()
			return true
		}
		c.log.Debug("tcp: backend endpoint did not answer", "backend", c.cluster.Name, "endpoint", ep.Addr, "error", err)
		var ue *upstream.Error
		if errors.As(err, &ue) && ue.Err != nil {
			err = ue.Err
		}
		c.info.UpstreamFailure = err.Error()
		avoid = ep
	}
	c.log.Warn("tcp: no endpoint of the backend answered; connection closed", "backend", c.cluster.Name)
	c.terminate("upstream_connect_failure")
	return false
}

// filterAt is the filter at position pos for direction d: in order for the client's
// bytes, in reverse for the backend's.
func (c *conn) filterAt(d, pos int) int {
	if d == up {
		return len(c.streams) - 1 - pos
	}
	return pos
}

// run moves bytes until the connection ends: true when both sides ended it, false when a
// side failed, a filter closed it, or ctx ended.
func (c *conn) run(ctx context.Context) bool {
	for !(c.ended[down] && c.ended[up]) {
		d, pos := down, c.paused[down]
		if pos < 0 {
			d, pos = up, c.paused[up]
		}
		if pos >= 0 {
			// A filter holds a direction: it may resume (a callout answered, a timer),
			// or bytes come meanwhile.
			resumed, err := c.streams[c.filterAt(d, pos)].WaitDirection(ctx, d == up, c.bell)
			if err != nil {
				if ctx.Err() != nil || c.failed(c.filterAt(d, pos), err) {
					return false
				}
				resumed = true // the failed filter is out: what it held goes on
			}
			if resumed {
				k := c.filterAt(d, pos)
				if s := c.streams[k]; s != nil && s.Reset() {
					return false
				}
				held := c.pending[d][k]
				c.pending[d][k] = nil
				c.paused[d] = -1
				if !c.pass(ctx, d, pos+1, held, c.eosHeld[d]) {
					return false
				}
				continue
			}
		} else {
			select {
			case <-c.bell:
			case <-ctx.Done():
				return false
			}
		}
		for d := range 2 {
			ch := c.feeds[d].take()
			if ch == nil {
				continue
			}
			c.idle.Reset(c.idleFor)
			if ch.err != nil {
				c.log.Debug("tcp: read failed", "side", sideName(d), "error", ch.err)
				c.closer = d
				return false
			}
			c.paused[d] = -1
			if !c.pass(ctx, d, 0, ch.data, ch.eos) {
				return false
			}
		}
	}
	return true
}

// pass runs bytes of direction d through the filters from position from on, and queues
// what comes through for the other side. It reports false when the connection is to end.
func (c *conn) pass(ctx context.Context, d, from int, data []byte, eos bool) bool {
	for pos := from; pos < len(c.streams); pos++ {
		k := c.filterAt(d, pos)
		s := c.streams[k]
		if s == nil {
			continue
		}
		body := &proxywasm.Body{Data: append(c.pending[d][k], data...)}
		c.pending[d][k] = nil
		var act proxywasm.Action
		var err error
		if d == down {
			act, err = s.OnDownstreamData(body, eos)
		} else {
			act, err = s.OnUpstreamData(body, eos)
		}
		if err != nil {
			if c.failed(k, err) {
				return false
			}
			continue // data unchanged: the failed filter is out
		}
		if s.Reset() {
			return false
		}
		if act == proxywasm.Pause {
			c.pending[d][k] = body.Data
			c.paused[d] = pos
			c.eosHeld[d] = eos
			return true
		}
		data = body.Data
	}
	other := 1 - d
	if len(data) > 0 && !c.writers[other].send(ctx, data) {
		return false
	}
	if eos {
		c.ended[d] = true
		c.writers[other].send(ctx, nil) // the write end closes after the last bytes
		if c.closer < 0 {
			c.closer = d
		}
	}
	return true
}

// errIdle ends a connection on which no byte went either way for the idle timeout.
var errIdle = errors.New("idle timeout")

// terminate says why plexus ends the connection, as filters read it in
// connection.termination_details; the first reason stands.
func (c *conn) terminate(why string) {
	if c.info.Termination == "" {
		c.info.Termination = why
	}
}

// finish closes both sides, tells the filters who closed (the side that ended first
// closed, plexus closed the other) and, when plexus closed it, why
// (connection.termination_details), and ends their contexts. cause is why the
// connection's context ended, nil while it had not.
func (c *conn) finish(cause error) {
	if c.closer < 0 && !(c.ended[down] && c.ended[up]) {
		switch {
		case errors.Is(cause, errIdle):
			c.terminate("idle_timeout")
		case cause != nil:
			c.terminate("shutdown")
		case slices.ContainsFunc(c.streams, func(s *proxywasm.Stream) bool { return s != nil && s.Reset() }):
			c.terminate("wasm_close_stream") // a filter's proxy_close_stream
		}
	}
	if c.idle != nil {
		c.idle.Stop()
	}
	for d := range 2 {
		if w := c.writers[d]; w != nil {
			w.stop()
		}
		if c.sides[d] != nil {
			c.sides[d].Close()
		}
		if f := c.feeds[d]; f != nil {
			f.stop()
		}
	}
	peer := func(d int) proxywasm.PeerType {
		if c.closer == d || c.ended[d] {
			return proxywasm.PeerRemote
		}
		return proxywasm.PeerLocal
	}
	for k, s := range c.streams {
		if s == nil {
			continue
		}
		err := s.OnDownstreamClose(peer(down))
		if err == nil && c.sides[up] != nil {
			err = s.OnUpstreamClose(peer(up))
		}
		if err != nil {
			c.log.Debug("tcp: network filter failed as the connection closed", "filter", c.t.Filters[k].Name, "error", err)
		}
		s.Close()
	}
	if c.admitted {
		c.cluster.Release()
	}
}

func sideName(d int) string {
	if d == down {
		return "client"
	}
	return "backend"
}

// chunk is one read: its bytes, and whether the side sent its last (eos) or failed.
type chunk struct {
	data []byte
	eos  bool
	err  error
}

// feed reads one side a chunk ahead of the filters, and rings the bell when one is in.
type feed struct {
	mu    sync.Mutex
	next  *chunk
	taken chan struct{}
	done  chan struct{}
	once  sync.Once
}

func newFeed(r net.Conn, bell chan struct{}) *feed {
	f := &feed{taken: make(chan struct{}, 1), done: make(chan struct{})}
	go f.read(r, bell)
	return f
}

func (f *feed) read(r net.Conn, bell chan struct{}) {
	buf := make([]byte, chunkSize)
	for {
		n, err := r.Read(buf)
		if n == 0 && err == nil {
			continue
		}
		ch := &chunk{data: append([]byte(nil), buf[:n]...)}
		switch {
		case errors.Is(err, io.EOF):
			ch.eos = true
		case err != nil:
			ch.err = err
		}
		f.mu.Lock()
		f.next = ch
		f.mu.Unlock()
		select {
		case bell <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
		select {
		case <-f.taken:
		case <-f.done:
			return
		}
	}
}

// take returns the chunk read, if one is in, and lets the reader read the next.
func (f *feed) take() *chunk {
	f.mu.Lock()
	ch := f.next
	f.next = nil
	f.mu.Unlock()
	if ch != nil {
		f.taken <- struct{}{}
	}
	return ch
}

func (f *feed) stop() { f.once.Do(func() { close(f.done) }) }

// writer sends one side what came through the filters, in order; nil half-closes it.
type writer struct {
	q        chan []byte
	done     chan struct{} // stop: give up
	finished chan struct{} // the writer returned
	once     sync.Once
}

func newWriter(w net.Conn) *writer {
	wr := &writer{q: make(chan []byte, queued), done: make(chan struct{}), finished: make(chan struct{})}
	go wr.write(w)
	return wr
}

func (wr *writer) write(w net.Conn) {
	defer close(wr.finished)
	for {
		select {
		case b, ok := <-wr.q:
			switch {
			case !ok:
				return // flushed
			case b == nil:
				if cw, ok := w.(interface{ CloseWrite() error }); ok {
					cw.CloseWrite()
				}
			default:
				if _, err := w.Write(b); err != nil {
					w.Close() // the other side's reader sees it, and the connection ends
					return
				}
			}
		case <-wr.done:
			return
		}
	}
}

// send queues b, waiting while the queue is full; false once ctx ended.
func (wr *writer) send(ctx context.Context, b []byte) bool {
	select {
	case wr.q <- b:
		return true
	case <-ctx.Done():
		return false
	}
}

// flush waits until what is queued is written (or ctx ends); nothing is sent after it.
func (wr *writer) flush(ctx context.Context) {
	close(wr.q)
	select {
	case <-wr.finished:
	case <-ctx.Done():
	}
}

// stop ends the writer. What is still queued is dropped: the connection is closing.
func (wr *writer) stop() { wr.once.Do(func() { close(wr.done) }) }
