package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/gateway/internal/filterchain"
	"github.com/plexus-mesh/plexus/gateway/internal/stream"
	"github.com/plexus-mesh/plexus/gateway/internal/telemetry"
	"github.com/plexus-mesh/plexus/gateway/internal/upstream"
	"github.com/plexus-mesh/plexus/internal/filterschema"
	"github.com/plexus-mesh/plexus/runtime/proxywasm"
)

// loadFilter reads, compiles and starts the module of fc. Loading runs proxy_on_vm_start
// and proxy_on_configure once, so a filter that refuses its configuration is refused here,
// at load, naming the filter and where it is declared.
func (g *Gateway) loadFilter(ctx context.Context, cfg *config.Config, i int, prev *snapshot) (*filterchain.Filter, error) {
	fc := &cfg.Filters[i]
	where := cfg.Where(fmt.Sprintf("filters[%d].module", i))
	mod, err := g.sourceFor(fc).fetch(ctx, cfg, fc)
	if err != nil {
		if _, isFile := g.sourceFor(fc).(fileSource); isFile || g.validating {
			return nil, fmt.Errorf("%s: filter %q: %w", where, fc.Name, err)
		}
		// A registry out of reach does not stop the gateway: the filter meets its failure
		// policy until a pull succeeds (the refresher tries again).
		g.log.Error("filter unavailable: its module could not be pulled; its routes apply its failure policy until a pull succeeds",
			"filter", fc.Name, "module", fc.Module, "failure", fc.Failure, "where", where, "error", err)
		return &filterchain.Filter{Name: fc.Name, Key: "unavailable|" + fc.Module, FailOpen: fc.Failure == "open", Source: fc.Module, Unavailable: err}, nil
	}
	wasm := mod.wasm
	pluginConf, _ := fc.ConfigBytes() // validated by config.Load
	vmConf, _ := fc.VMConfigBytes()
	var node proxywasm.Node // node.id is the host's (Options.NodeID, the host name) unless node: names one
	if cfg.Node != nil {
		node = proxywasm.Node{ID: cfg.Node.ID, Cluster: cfg.Node.Cluster, Metadata: cfg.Node.Metadata}
	}
	// The node is part of every filter's key: a reload that changes node: reloads them all,
	// so that every filter sees one node, not the old or the new one by chance.
	nodeKey, _ := json.Marshal(node) // validated by config.Load
	sum := sha256.Sum256(wasm)
	key := fmt.Sprintf("%x|%s|%s|%s|%q|%q|%s|%s|%+v|%s|%s|%s", sum, fc.Name, fc.RootID, fc.VMID, pluginConf, vmConf, fc.Failure, fc.LogLevel, fc.Limits, nodeKey, fc.SharedData, fc.RedisFailure)
	if prev != nil {
		if old := prev.filters[fc.Name]; old != nil && old.Key == key {
			return old, nil
		}
	}
	if err := checkConfigSchema(cfg, i, wasm); err != nil {
		return nil, err
	}
	pc := proxywasm.Config{
		Name:             fc.Name,
		VMID:             fc.VMID,
		RootID:           fc.RootID,
		VMConfig:         vmConf,
		Plugin:           pluginConf,
		FailOpen:         fc.Failure == "open",
		Sum:              sum,
		MaxInstances:     fc.Limits.Instances,
		MemoryLimitPages: uint32(fc.Limits.Memory / (64 << 10)),
		CallbackTimeout:  fc.Limits.CallbackTimeout,
		MaxWaiting:       fc.Limits.MaxWaiting,
		HostMemory:       int64(fc.Limits.HostMemory),
		MaxCallouts:      fc.Limits.MaxCallouts,
		SharedDataBytes:  int64(fc.Limits.SharedDataBytes),
		QueueDepth:       fc.Limits.QueueDepth,
		LogLevel:         proxyLogLevel(fc.LogLevel),
		Logger:           g.log,
		Node:             node,
	}
	if fc.SharedData == config.SharedRedis {
		if g.svc.shared != nil {
			pc.SharedData = sharedData{g.svc}
		} else {
			g.log.Warn("filter declared shared_data: redis, with no redis: in the config: its shared data stays in this process",
				"filter", fc.Name, "where", cfg.Where(fmt.Sprintf("filters[%d].shared_data", i)))
		}
	}
	if fc.Limits.NoDeadline {
		pc.CallbackTimeout = -1
	}
	if tr := g.opts.HostCallTrace; tr != nil {
		name := fc.Name
		pc.Trace = func(call string, st uint32) { tr(name, call, st) }
	}
	p, err := g.wasm.Load(ctx, wasm, pc, newFilterHost(g.host, fc, g.inst))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err) // the error names the filter and its digest
	}
	return &filterchain.Filter{Name: fc.Name, Key: key, Plugin: p, FailOpen: pc.FailOpen, Source: mod.source, Digest: mod.digest}, nil
}

// checkConfigSchema checks filters[i]'s config against the JSON Schema its module wasm
// carries, if any: an error names the file, line and column of the value the schema
// refuses, the filter, and the field.
func checkConfigSchema(cfg *config.Config, i int, wasm []byte) error {
	fc := &cfg.Filters[i]
	schema, err := filterschema.FromModule(wasm)
	if err != nil {
		return fmt.Errorf("%s: filter %q: %w", cfg.Where(fmt.Sprintf("filters[%d].module", i)), fc.Name, err)
	}
	if schema == nil {
		return nil
	}
	err = schema.Check(fc.Config)
	var e *filterschema.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e) && e.Line > 0:
		return fmt.Errorf("%s:%d:%d: filter %q: %w", cfg.File(), e.Line, e.Col, fc.Name, err)
	}
	return fmt.Errorf("%s: filter %q: %w", cfg.Where(fmt.Sprintf("filters[%d]", i)), fc.Name, err) // no config: at all
}

// proxyLogLevel maps a filter's log_level to slog, with trace below debug and critical
// above error, as Proxy-Wasm's six levels need.
func proxyLogLevel(s string) slog.Level {
	switch s {
	case "trace":
		return slog.LevelDebug - 4
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	case "critical":
		return slog.LevelError + 4
	}
	return slog.LevelInfo
}

// wasmHost is the gateway as filters see it: callouts go to the current snapshot's backends.
type wasmHost struct {
	g      *Gateway
	nodeID string
}

// maxCalloutBody bounds the response body of a filter's HTTP callout, which is handed to
// the filter whole, and what a gRPC callout has queued for the backend to read.
const maxCalloutBody = 4 << 20

func (h *wasmHost) NodeID() string { return h.nodeID }

// backend is the cluster a filter's callout goes to, and the tracing its span belongs to:
// the backend of that name in the config being loaded, whose filters may call out as they
// start (proxy_on_plugin_start), else in the one in force.
func (h *wasmHost) backend(name string) (*upstream.Cluster, *telemetry.Tracing) {
	cur := h.g.snap.Load()
	var tr *telemetry.Tracing
	if cur != nil {
		tr = cur.Tracing
	}
	if s := h.g.building.Load(); s != nil {
		if be := s.backends[name]; be != nil {
			return be, tr
		}
	}
	if cur == nil {
		return nil, nil
	}
	return cur.backends[name], tr
}

func (h *wasmHost) HTTPCall(sctx context.Context, cluster string, headers []proxywasm.Field, body []byte, trailers []proxywasm.Field, timeout time.Duration, done func(*proxywasm.HTTPCallResponse, error)) error {
	be, tracing := h.backend(cluster)
	if be == nil {
		return fmt.Errorf("no backend named %q", cluster)
	}
	req, err := calloutRequest(cluster, headers)
	if err != nil {
		return err
	}
	if len(body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
	if len(trailers) > 0 {
		req.Trailer = http.Header{}
		for _, f := range trailers {
			req.Trailer.Add(f.Key, f.Value)
		}
		req.ContentLength = -1
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	span := stream.CalloutSpan(tracing, sctx, req, cluster)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		// A callout is a request to the backend like any other: its circuit breaker counts it.
		if !be.Admit() {
			err := errOverflow(cluster)
			stream.EndCallout(span, 0, err)
			done(nil, err)
			return
		}
		defer be.Release()
		ep := be.Pick(nil)
		if ep == nil {
			err := fmt.Errorf("backend %q: no healthy upstream", cluster)
			stream.EndCallout(span, 0, err)
			done(nil, err)
			return
		}
		resp, err := be.RoundTrip(ep, req.WithContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("backend %q: no response within %s", cluster, timeout)
			}
			stream.EndCallout(span, 0, err)
			done(nil, err)
			return
		}
		stream.EndCallout(span, resp.StatusCode, nil)
		defer resp.Body.Close()
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxCalloutBody+1))
		if err == nil && len(data) > maxCalloutBody {
			err = fmt.Errorf("response body over %d bytes", maxCalloutBody)
		}
		if err != nil {
			done(nil, err)
			return
		}
		out := &proxywasm.HTTPCallResponse{Body: data}
		out.Headers = append(out.Headers, proxywasm.Field{Key: ":status", Value: strconv.Itoa(resp.StatusCode)})
		out.Headers = filterchain.AppendFields(out.Headers, resp.Header)
		out.Trailers = filterchain.AppendFields(nil, resp.Trailer)
		done(out, nil)
	}()
	return nil
}

// errOverflow is a callout's error when the backend's circuit breaker turned it away.
func errOverflow(cluster string) error {
	return fmt.Errorf("backend %q: circuit breaker open: max_requests in flight already", cluster)
}

// calloutRequest builds the request of a filter's callout from its headers, pseudo-headers
// included (:scheme is the backend's to choose).
func calloutRequest(cluster string, headers []proxywasm.Field) (*http.Request, error) {
	req := &http.Request{Method: http.MethodGet, Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Host: cluster}
	path := "/"
	for _, f := range headers {
		switch f.Key {
		case ":method":
			req.Method = f.Value
		case ":path":
			path = f.Value
		case ":authority":
			if f.Value != "" { // empty: the cluster's name, as without one
				req.Host = f.Value
			}
		case ":scheme":
		default:
			req.Header.Add(f.Key, f.Value)
		}
	}
	u, err := url.ParseRequestURI(path)
	if err != nil {
		return nil, fmt.Errorf("bad :path %q: %w", path, err)
	}
	req.URL = u
	return req, nil
}

// GRPCStream starts a filter's gRPC call or stream: a POST over the backend's HTTP/2
// transport whose body is what the filter sends, as it sends it, and whose response is
// reported as it arrives, from one goroutine.
func (h *wasmHost) GRPCStream(sctx context.Context, cluster string, headers []proxywasm.Field, timeout time.Duration, ev proxywasm.GRPCEvents) (proxywasm.GRPCHandle, error) {
	be, tracing := h.backend(cluster)
	if be == nil {
		return nil, fmt.Errorf("no backend named %q: %w", cluster, proxywasm.ErrUnknownCluster)
	}
	if !be.HTTP2() {
		return nil, fmt.Errorf("backend %q speaks HTTP/1.1, and gRPC needs HTTP/2: declare it with protocol: h2c (or h2)", cluster)
	}
	req, err := calloutRequest(cluster, headers)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(context.Background(), timeout)
	}
	c := &grpcCallout{cancel: cancel, span: stream.CalloutSpan(tracing, sctx, req, cluster)}
	c.body.ready = make(chan struct{}, 1)
	req.Body = &c.body
	req.ContentLength = -1
	go c.run(ctx, be, req.WithContext(ctx), cluster, timeout, ev)
	return c, nil
}

// grpcCallout is a filter's gRPC call or stream in flight: proxywasm.GRPCHandle.
type grpcCallout struct {
	body   grpcBody
	cancel context.CancelFunc
	span   trace.Span // nil when not traced
}

var (
	errCalloutBodyEnded  = errors.New("gRPC request body already ended")
	errCalloutCanceled   = errors.New("gRPC request canceled")
	errCalloutBodyClosed = errors.New("gRPC request body closed")
)

func (c *grpcCallout) Send(data []byte, end bool) error { return c.body.add(data, end) }

// Cancel ends the request's context: http.Transport resets the HTTP/2 stream (RST_STREAM
// CANCEL) if it is still open.
func (c *grpcCallout) Cancel() {
	c.cancel()
	c.body.close(errCalloutCanceled)
}

func (c *grpcCallout) run(ctx context.Context, be *upstream.Cluster, req *http.Request, cluster string, timeout time.Duration, ev proxywasm.GRPCEvents) {
	defer c.cancel()
	done := func(err error) {
		if err != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				err = fmt.Errorf("backend %q: gRPC call ran past its timeout of %s: %w", cluster, timeout, context.DeadlineExceeded)
			} else {
				err = fmt.Errorf("backend %q: %w", cluster, err)
			}
		}
		stream.EndCallout(c.span, 0, err)
		ev.Done(err)
	}
	if !be.Admit() {
		c.body.close(errCalloutBodyClosed)
		stream.EndCallout(c.span, 0, errOverflow(cluster))
		ev.Done(errOverflow(cluster))
		return
	}
	defer be.Release()
	ep := be.Pick(nil)
	if ep == nil {
		c.body.close(errCalloutBodyClosed)
		done(errors.New("no healthy upstream"))
		return
	}
	resp, err := be.RoundTrip(ep, req)
	if err != nil {
		done(err)
		return
	}
	defer resp.Body.Close()
	hdr := make([]proxywasm.Field, 1, 1+len(resp.Header))
	hdr[0] = proxywasm.Field{Key: ":status", Value: strconv.Itoa(resp.StatusCode)}
	ev.Headers(filterchain.AppendFields(hdr, resp.Header))
	buf := make([]byte, 16<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			ev.Data(buf[:n])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			done(err)
			return
		}
	}
	if tr := filterchain.AppendFields(nil, resp.Trailer); len(tr) > 0 {
		ev.Trailers(tr)
	}
	done(nil)
}

// grpcBody is the request body of a gRPC callout: what Send queued, read by the
// transport as it comes. Not an io.Pipe: its Write blocks until the transport reads, and
// Send runs inside a filter callback, under the callback's deadline.
type grpcBody struct {
	mu    sync.Mutex
	buf   []byte
	end   bool
	err   error         // once closed
	ready chan struct{} // a token when buf, end or err changed
}

func (b *grpcBody) add(data []byte, end bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.err != nil:
		return b.err
	case b.end:
		return errCalloutBodyEnded
	case len(b.buf)+len(data) > maxCalloutBody:
		return fmt.Errorf("gRPC request: over %d bytes waiting for the backend to read them", maxCalloutBody)
	}
	b.buf = append(b.buf, data...)
	b.end = end
	b.signal()
	return nil
}

func (b *grpcBody) Read(p []byte) (int, error) {
	for {
		b.mu.Lock()
		switch {
		case b.err != nil:
			err := b.err
			b.mu.Unlock()
			return 0, err
		case len(b.buf) > 0:
			n := copy(p, b.buf)
			b.buf = b.buf[:copy(b.buf, b.buf[n:])]
			b.mu.Unlock()
			return n, nil
		case b.end:
			b.mu.Unlock()
			return 0, io.EOF
		}
		b.mu.Unlock()
		<-b.ready
	}
}

// Close is the transport's: it is done with the body.
func (b *grpcBody) Close() error {
	b.close(errCalloutBodyClosed)
	return nil
}

func (b *grpcBody) close(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
		b.buf = nil
	}
	b.signal()
	b.mu.Unlock()
}

func (b *grpcBody) signal() {
	select {
	case b.ready <- struct{}{}:
	default:
	}
}
