package conformance

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/gateway/config"
)

// Options configure a run.
type Options struct {
	// Profiles run only the scenarios of these profiles; all when empty.
	Profiles []string
	// Only runs only the scenarios whose name contains it; all when empty.
	Only string
	// Version names the host in the report.
	Version string
	// Build builds the suite's go/NAME modules (GoBuilder); nil skips their scenarios.
	Build func(module string) ([]byte, error)
}

// Result is how one scenario went.
type Result struct {
	Scenario *Scenario
	Failures []string // empty: passed
	Skipped  string   // why it did not run, when it did not
	Duration time.Duration
}

// Passed reports a scenario that ran and met every expectation.
func (r *Result) Passed() bool { return r.Skipped == "" && len(r.Failures) == 0 }

// Run plays the suite's scenarios against plexus in-process, each on a gateway of its
// own (listener and admin on ports the OS picks) in front of an echo backend that records
// what it received.
func Run(ctx context.Context, s *Suite, o Options) (*Report, error) {
	rep := &Report{Host: "plexus", Version: o.Version, Started: time.Now()}
	dir, err := os.MkdirTemp("", "plexus-conformance-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	load := loader(o.Build)
	for _, sc := range s.Scenarios {
		if !o.selects(sc) {
			continue
		}
		start := time.Now()
		res := &Result{Scenario: sc}
		if res.Skipped = skipReason(sc, o.Build, false); res.Skipped == "" {
			res.Failures = runOne(ctx, sc, dir, load)
		}
		res.Duration = time.Since(start)
		rep.Results = append(rep.Results, res)
	}
	return rep, nil
}

// skipReason says why sc cannot run, "" when it can: a go/ module with no builder, or an
// L4 scenario in a black-box run (each needs an L4 listener of its own, with its filters:
// a gateway's config can have one, not one per scenario behind one address).
func skipReason(sc *Scenario, build func(string) ([]byte, error), blackBox bool) string {
	for _, f := range sc.Filters {
		if strings.HasPrefix(f.Module, "go/") && build == nil {
			return "needs Go and a checkout of plexus to build " + f.Module
		}
	}
	if blackBox && sc.TCP() {
		return "an L4 scenario runs in-process only: it needs a listener of its own"
	}
	return ""
}

// Target says where a black-box run goes: the gateway's listener (http://host:port, its
// config made by Config), and where the run's own app and callout backends listen (the
// addresses that config names).
type Target struct {
	URL          string
	App, Callout string
}

// RunTarget plays the suite against a gateway that is already running, over HTTP: every
// request carries ScenarioHeader, the target routes it to the scenario's chain in front of
// the run's app backend, and the run checks what that backend and the client saw. Log
// expectations cannot be checked from outside, and are not.
func RunTarget(ctx context.Context, s *Suite, t Target, o Options) (*Report, error) {
	u, err := url.Parse(t.URL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("conformance: target %q: want http://host:port", t.URL)
	}
	backend, callouts := &echo{name: "app"}, &echo{name: "callout"}
	stops := []func(){}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	for _, b := range []struct {
		addr string
		h    *echo
	}{{t.App, backend}, {t.Callout, callouts}} {
		ln, err := net.Listen("tcp", b.addr)
		if err != nil {
			return nil, fmt.Errorf("conformance: the %s backend: %w", b.h.name, err)
		}
		stops = append(stops, serveOn(ln, b.h))
	}
	rep := &Report{Host: t.URL, Version: o.Version, Started: time.Now()}
	for _, sc := range s.Scenarios {
		if !o.selects(sc) {
			continue
		}
		start := time.Now()
		res := &Result{Scenario: sc}
		deadline := time.Now().Add(10 * time.Second)
		if res.Skipped = skipReason(sc, o.Build, true); res.Skipped != "" {
			rep.Results = append(rep.Results, res)
			continue
		}
		for {
			res.Failures = check(ctx, sc, endpoints{web: u.Host}, backends{backend, callouts, nil}, nil)
			if len(res.Failures) == 0 || !sc.Expect.Eventually || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		res.Duration = time.Since(start)
		rep.Results = append(rep.Results, res)
	}
	return rep, nil
}

func (o *Options) selects(sc *Scenario) bool {
	return (len(o.Profiles) == 0 || slices.Contains(o.Profiles, sc.Profile)) && (o.Only == "" || strings.Contains(sc.Name, o.Only))
}

// seen is what the echo backend received.
type seen struct {
	reached         bool
	method, path    string
	header, trailer http.Header
	body            string
}

type echo struct {
	name string // answered as x-backend
	mu   sync.Mutex
	last seen
	with *Backend // how to answer; nil: 200 "echo\n"
}

func (e *echo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	with := e.with
	e.mu.Unlock()
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		e.grpc(w, r)
		return
	}
	b, _ := io.ReadAll(r.Body)
	e.record(seen{reached: true, method: r.Method, path: r.URL.RequestURI(), header: r.Header.Clone(), trailer: r.Trailer.Clone(), body: string(b)})
	if !with.wait(r.Context()) {
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("X-Backend", e.name)
	if with == nil {
		io.WriteString(w, "echo\n")
		return
	}
	for k, v := range with.Headers {
		w.Header().Set(k, v)
	}
	for k := range with.Trailers {
		w.Header().Add("Trailer", k)
	}
	status := with.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	io.WriteString(w, with.Body)
	for _, c := range with.Chunks {
		http.NewResponseController(w).Flush()
		io.WriteString(w, c)
	}
	for k, v := range with.Trailers {
		w.Header().Set(k, v)
	}
}

func (e *echo) record(s seen) {
	e.mu.Lock()
	e.last = s
	e.mu.Unlock()
}

// wait sleeps for b's delay, or until ctx ends (false).
func (b *Backend) wait(ctx context.Context) bool {
	if b == nil || b.Delay == "" {
		return true
	}
	d, _ := time.ParseDuration(b.Delay) // checked as the scenario was read
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// grpc answers a gRPC request (over HTTP/2) as the service conformance.Echo, with the
// initial metadata x-server-md: initial and the trailing metadata x-server-trailer:
// trailing: Say answers "echo:" and the request's message, once the request is whole;
// Stream answers the same to the first message at once, then waits for the client to
// half-close before its status; Fail refuses, in a trailers-only response (status 7,
// PERMISSION_DENIED, "denied by backend"). What it records of the request has the first
// message as its body.
func (e *echo) grpc(w http.ResponseWriter, r *http.Request) {
	msg, err := readGRPCMessage(r.Body)
	e.record(seen{reached: true, method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: string(msg)})
	w.Header().Set("Content-Type", "application/grpc")
	switch {
	case r.URL.Path == "/conformance.Echo/Fail":
		w.Header().Set("Grpc-Status", "7")
		w.Header().Set("Grpc-Message", "denied by backend")
		w.WriteHeader(http.StatusOK)
		return
	case err != nil:
		w.Header().Set("Grpc-Status", "3") // INVALID_ARGUMENT
		w.Header().Set("Grpc-Message", err.Error())
		w.WriteHeader(http.StatusOK)
		return
	case r.URL.Path != "/conformance.Echo/Say" && r.URL.Path != "/conformance.Echo/Stream":
		w.Header().Set("Grpc-Status", "12") // UNIMPLEMENTED
		w.WriteHeader(http.StatusOK)
		return
	}
	if r.URL.Path == "/conformance.Echo/Say" {
		io.Copy(io.Discard, r.Body) // the call's request ends with its message
	}
	w.Header().Set("X-Server-Md", "initial")
	w.WriteHeader(http.StatusOK)
	reply := append([]byte("echo:"), msg...)
	frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(reply)))
	w.Write(append(frame, reply...))
	if r.URL.Path == "/conformance.Echo/Stream" {
		http.NewResponseController(w).Flush()
		io.Copy(io.Discard, r.Body) // until the client half-closes
	}
	w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
	w.Header().Set(http.TrailerPrefix+"X-Server-Trailer", "trailing")
}

// readGRPCMessage reads one length-prefixed gRPC message (uncompressed, 1 MiB at most).
func readGRPCMessage(r io.Reader) ([]byte, error) {
	var prefix [5]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return nil, fmt.Errorf("reading a message's prefix: %w", err)
	}
	n := binary.BigEndian.Uint32(prefix[1:])
	switch {
	case prefix[0] != 0:
		return nil, fmt.Errorf("a compressed message (flag %d)", prefix[0])
	case n > 1<<20:
		return nil, fmt.Errorf("a message of %d bytes", n)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, fmt.Errorf("reading a message of %d bytes: %w", n, err)
	}
	return msg, nil
}

// tcpEcho is the L4 backend: it reads a connection until the client half-closes, records
// what it got, and answers (with Backend) before it closes.
type tcpEcho struct {
	mu   sync.Mutex
	last seen
	with *Backend
}

func (t *tcpEcho) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go t.handle(c)
	}
}

func (t *tcpEcho) handle(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	b, _ := io.ReadAll(c)
	t.mu.Lock()
	t.last = seen{reached: true, body: string(b)}
	with := t.with
	t.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !with.wait(ctx) {
		return
	}
	if with != nil && with.Body != "" {
		b = []byte(with.Body)
	}
	c.Write(b)
}

func (t *tcpEcho) reset(with *Backend) {
	t.mu.Lock()
	t.last, t.with = seen{}, with
	t.mu.Unlock()
}

// logs records what the gateway logged.
type logs struct {
	mu    sync.Mutex
	lines []logLine
}

type logLine struct {
	level  slog.Level
	msg    string
	filter string
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	line := logLine{level: r.Level, msg: r.Message}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "filter" {
			line.filter = a.Value.String()
		}
		return true
	})
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	return nil
}
func (l *logs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &withAttrs{l, attrs}
}
func (l *logs) WithGroup(string) slog.Handler { return l }

// withAttrs is logs with attributes set by Logger.With (the filter's name, say).
type withAttrs struct {
	*logs
	attrs []slog.Attr
}

func (w *withAttrs) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(w.attrs...)
	return w.logs.Handle(ctx, r)
}
func (w *withAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &withAttrs{w.logs, append(slices.Clip(w.attrs), attrs...)}
}

// serve starts h on a loopback port the OS picks (HTTP/1.1 and h2c); stop stops it.
func serve(h http.Handler) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	return ln.Addr().String(), serveOn(ln, h), nil
}

func serveOn(ln net.Listener, h http.Handler) (stop func()) {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	s := &http.Server{Handler: h, Protocols: p}
	go s.Serve(ln)
	return func() { s.Close() }
}

// runOne runs a scenario and returns what did not hold.
func runOne(ctx context.Context, sc *Scenario, dir string, load func(string) ([]byte, error)) []string {
	b := backends{app: &echo{name: "app"}, callouts: &echo{name: "callout"}, tcp: &tcpEcho{}}
	addr, stop, err := serve(b.app)
	if err != nil {
		return []string{"backend: " + err.Error()}
	}
	defer stop()
	calloutAddr, stopCallouts, err := serve(b.callouts)
	if err != nil {
		return []string{"callout backend: " + err.Error()}
	}
	defer stopCallouts()
	o := ConfigOptions{App: addr, Callout: calloutAddr}
	if sc.TCP() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return []string{"L4 backend: " + err.Error()}
		}
		defer ln.Close()
		go b.tcp.serve(ln)
		o.TCP = ln.Addr().String()
	}

	cfgText, err := writeConfig([]*Scenario{sc}, dir, o, false, load)
	if err != nil {
		return []string{err.Error()}
	}
	cfg, err := config.Parse(filepath.Join(dir, "conformance.yaml"), cfgText)
	if err != nil {
		return []string{"config: " + err.Error()}
	}
	rec := &logs{}
	g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(rec), Version: "conformance"})
	if err != nil {
		return []string{"the gateway refused the scenario's config: " + err.Error()}
	}
	if err := g.Start(); err != nil {
		return []string{"start: " + err.Error()}
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.Shutdown(sctx)
	}()

	at := endpoints{web: g.Addrs()["web"], tcp: g.Addrs()["tcp"]}
	deadline := time.Now().Add(10 * time.Second)
	for {
		fails := check(ctx, sc, at, b, rec)
		if len(fails) == 0 {
			fails = checkMetrics(ctx, sc, g.Addrs()["admin"])
		}
		if len(fails) == 0 || !sc.Expect.Eventually || time.Now().After(deadline) || ctx.Err() != nil {
			if len(fails) > 0 {
				// What the gateway said of it helps to tell why.
				fails = append(fails, rec.warnings(5)...)
			}
			return fails
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// endpoints are where the gateway listens: its HTTP listener, and its L4 one (in-process
// runs of L4 scenarios).
type endpoints struct{ web, tcp string }

// backends are a run's: app gets the scenarios' requests, callouts the filters' callouts,
// tcp (nil in black-box runs) the L4 scenarios' connections.
type backends struct {
	app, callouts *echo
	tcp           *tcpEcho
}

// check sends the scenario's request and returns which expectations did not hold. rec is
// what the gateway logged, nil in a black-box run.
func check(ctx context.Context, sc *Scenario, at endpoints, b backends, rec *logs) []string {
	if sc.TCP() {
		return checkTCP(ctx, sc, at.tcp, b.tcp, rec)
	}
	backend, callouts := b.app, b.callouts
	backend.reset(sc.Backend)
	callouts.reset(sc.CalloutBackend)
	resp, body, err := send(ctx, sc, at.web, rec == nil)
	switch {
	case sc.Expect.Reset && err == nil:
		return []string{fmt.Sprintf("got a response (%d %q); want the request reset", resp.StatusCode, body)}
	case sc.Expect.Reset:
		resp = &http.Response{Header: http.Header{}, Trailer: http.Header{}}
	case err != nil:
		return []string{"request: " + err.Error()}
	}
	var fails []string
	fail := func(format string, args ...any) { fails = append(fails, fmt.Sprintf(format, args...)) }
	if e := sc.Expect.Response; e != nil {
		if e.Status != 0 && resp.StatusCode != e.Status {
			fail("response status %d, want %d", resp.StatusCode, e.Status)
		}
		checkHeaders(fail, "response", resp.Header, e.Headers, e.Absent)
		if e.Body != nil && body != *e.Body {
			fail("response body %q, want %q", body, *e.Body)
		}
		checkHeaders(fail, "response trailer", resp.Trailer, e.Trailers, nil)
	}
	backend.mu.Lock()
	got := backend.last
	backend.mu.Unlock()
	if e := sc.Expect.Upstream; e != nil {
		switch {
		case !e.Reached && got.reached:
			fail("the backend received the request; want it never reached")
		case e.Reached && !got.reached:
			fail("the backend never received the request")
		case e.Reached:
			checkHeaders(fail, "upstream", got.header, e.Headers, e.Absent)
			if e.Body != nil && got.body != *e.Body {
				fail("upstream body %q, want %q", got.body, *e.Body)
			}
			checkHeaders(fail, "upstream trailer", got.trailer, e.Trailers, nil)
		}
	}
	checkLogs(ctx, fail, sc, rec)
	if e := sc.Expect.Callout; e != nil {
		callouts.mu.Lock()
		c := callouts.last
		callouts.mu.Unlock()
		switch {
		case !c.reached:
			fail("the callout backend received no callout")
		default:
			if e.Method != "" && c.method != e.Method {
				fail("callout method %s, want %s", c.method, e.Method)
			}
			if e.Path != "" && c.path != e.Path {
				fail("callout path %s, want %s", c.path, e.Path)
			}
			checkHeaders(fail, "callout", c.header, e.Headers, nil)
		}
	}
	return fails
}

// checkTCP plays an L4 scenario: its body on a connection to the gateway's L4 listener at
// addr, the write side closed after it, and what comes back until the gateway closes.
func checkTCP(ctx context.Context, sc *Scenario, addr string, backend *tcpEcho, rec *logs) []string {
	backend.reset(sc.Backend)
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return []string{"connecting to the L4 listener: " + err.Error()}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, sc.Request.Body); err != nil {
		return []string{"sending: " + err.Error()}
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		return []string{"reading: " + err.Error()}
	}
	var fails []string
	fail := func(format string, args ...any) { fails = append(fails, fmt.Sprintf(format, args...)) }
	if e := sc.Expect.Response; e != nil && e.Body != nil && string(got) != *e.Body {
		fail("the client read %q, want %q", got, *e.Body)
	}
	backend.mu.Lock()
	seen := backend.last
	backend.mu.Unlock()
	if e := sc.Expect.Upstream; e != nil {
		switch {
		case !e.Reached && seen.reached:
			fail("the backend got a connection; want none")
		case e.Reached && !seen.reached:
			fail("the backend got no connection")
		case e.Body != nil && seen.body != *e.Body:
			fail("the backend read %q, want %q", seen.body, *e.Body)
		}
	}
	checkLogs(ctx, fail, sc, rec)
	return fails
}

// checkLogs fails for each log line the scenario expects that the gateway did not write
// (waiting a little for those a stream's end writes, after the client has its answer). A
// black-box run (rec nil) cannot see the target's logs, and checks none.
func checkLogs(ctx context.Context, fail func(string, ...any), sc *Scenario, rec *logs) {
	if rec == nil {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, want := range sc.Expect.Logs {
		for !rec.has(want) && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		if !rec.has(want) {
			fail("no log line %q at %s from filter %q", want.Message, want.Level, want.Filter)
		}
	}
}

// checkMetrics reads the gateway's /metrics on its admin listener at admin and checks
// the scenario's metrics there: a filter's metric NAME is the series NAME (a gauge) or
// NAME_total (a counter) with plexus_filter="FILTER"; a histogram's are NAME_count,
// NAME_sum and NAME_bucket.
func checkMetrics(ctx context.Context, sc *Scenario, admin string) []string {
	if len(sc.Expect.Metrics) == 0 {
		return nil
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return []string{"reading /metrics: " + err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var fails []string
	for _, m := range sc.Expect.Metrics {
		got, ok := seriesValue(string(b), m)
		switch {
		case !ok:
			fails = append(fails, fmt.Sprintf("no metric %s of filter %q in /metrics", m.Name, m.Filter))
		case got != m.Value:
			fails = append(fails, fmt.Sprintf("metric %s of filter %q: %v, want %v", m.Name, m.Filter, got, m.Value))
		}
	}
	return fails
}

func seriesValue(metrics string, m Metric) (float64, bool) {
	label := fmt.Sprintf("plexus_filter=%q", m.Filter)
	for _, line := range strings.Split(metrics, "\n") {
		name, rest, ok := strings.Cut(line, "{")
		if !ok || name != m.Name && name != m.Name+"_total" {
			continue
		}
		labels, value, _ := strings.Cut(rest, "} ")
		if !strings.Contains(labels, label) {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(value, &v); err == nil {
			return v, true
		}
	}
	return 0, false
}

func (e *echo) reset(with *Backend) {
	e.mu.Lock()
	e.last, e.with = seen{}, with
	e.mu.Unlock()
}

// warnings are the first n lines logged at warn or above, as failures show them.
func (l *logs) warnings(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		if line.level >= slog.LevelWarn && len(out) < n {
			out = append(out, fmt.Sprintf("the gateway logged (%s): %s", levelName(line.level), line.msg))
		}
	}
	return out
}

func (l *logs) has(want Log) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if line.msg == want.Message && (want.Filter == "" || line.filter == want.Filter) && (want.Level == "" || levelName(line.level) == want.Level) {
			return true
		}
	}
	return false
}

// levelName is a log level as Proxy-Wasm names it.
func levelName(l slog.Level) string {
	switch {
	case l < slog.LevelDebug:
		return "trace"
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	case l <= slog.LevelError:
		return "error"
	}
	return "critical"
}

func checkHeaders(fail func(string, ...any), what string, h http.Header, want map[string]string, absent []string) {
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got := h.Values(k); len(got) != 1 || got[0] != want[k] {
			fail("%s header %s: %q, want %q", what, k, got, want[k])
		}
	}
	for _, k := range absent {
		if v := h.Values(k); len(v) > 0 {
			fail("%s header %s: %q, want none", what, k, v)
		}
	}
}

// ScenarioHeader names the scenario a request belongs to, in black-box runs: the target's
// config (Config) routes by it.
const ScenarioHeader = "x-conformance-scenario"

// ConfigOptions say where Config's gateway listens and where the run's backends are.
type ConfigOptions struct {
	Listen, Admin string // host:port; 127.0.0.1:0 when empty
	App, Callout  string // host:port of the run's app and callout backends
	// TCP is the host:port of the L4 backend, for a config with an L4 scenario (in-process
	// runs only).
	TCP string
	// Build builds go/NAME modules; without it, their scenarios are left out, as a
	// RunTarget without one skips them.
	Build func(module string) ([]byte, error)
}

// Config writes to dir a plexus config (plexus.yaml) and the modules that play every
// scenario of s on one gateway, each on a route matched by ScenarioHeader, with the app and
// callout backends at the addresses given: what a black-box run (RunTarget) expects the
// target to serve. For another Proxy-Wasm host, it says what to configure.
func Config(s *Suite, dir string, o ConfigOptions) error {
	var scs []*Scenario
	for _, sc := range s.Scenarios {
		if skipReason(sc, o.Build, true) == "" { // as RunTarget skips them
			scs = append(scs, sc)
		}
	}
	b, err := writeConfig(scs, dir, o, true, loader(o.Build))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "plexus.yaml"), b, 0o644)
}

func writeConfig(scs []*Scenario, dir string, o ConfigOptions, byHeader bool, load func(string) ([]byte, error)) ([]byte, error) {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.Admin == "" {
		o.Admin = "127.0.0.1:0"
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "admin: {address: %q}\nlisteners:\n  - {name: web, address: %q, protocols: [http1, h2c]}\n", o.Admin, o.Listen)
	for _, sc := range scs {
		if sc.TCP() {
			names := make([]string, 0, len(sc.Filters))
			for _, f := range sc.Filters {
				names = append(names, fmt.Sprintf("%q", f.Name))
			}
			fmt.Fprintf(&b, "  - {name: tcp, address: 127.0.0.1:0, protocols: [tcp], tcp: {backend: tcpecho, filters: [%s]}}\n", strings.Join(names, ", "))
		}
	}
	// The callout backend speaks h2c, for the filters' gRPC calls.
	fmt.Fprintf(&b, "backends:\n  - {name: app, endpoints: [%q]}\n  - {name: callout, protocol: h2c, endpoints: [%q]}\n", o.App, o.Callout)
	if o.TCP != "" {
		fmt.Fprintf(&b, "  - {name: tcpecho, endpoints: [%q]}\n", o.TCP)
	}
	b.WriteString("filters:\n")
	declared := map[string]Filter{}
	var routes bytes.Buffer
	for _, sc := range scs {
		names := make([]string, 0, len(sc.Filters))
		for _, f := range sc.Filters {
			names = append(names, fmt.Sprintf("%q", f.Name))
			if prev, ok := declared[f.Name]; ok {
				if prev != f {
					return nil, fmt.Errorf("conformance: filter %q is declared differently by two scenarios (one of them %q): give one another name", f.Name, sc.Name)
				}
				continue
			}
			declared[f.Name] = f
			wasm, err := load(f.Module)
			if err != nil {
				return nil, fmt.Errorf("filter %q: %w", f.Name, err)
			}
			path := filepath.Join(dir, strings.ReplaceAll(f.Module, "/", "-")+".wasm")
			if err := os.WriteFile(path, wasm, 0o644); err != nil {
				return nil, err
			}
			conf, _ := json.Marshal(f.Config)
			failure := f.Failure
			if failure == "" {
				failure = "closed"
			}
			fmt.Fprintf(&b, "  - {name: %q, module: %q, config: %s, failure: %s}\n", f.Name, "file:"+path, conf, failure)
		}
		if sc.TCP() {
			continue // on the L4 listener
		}
		match := "{path_prefix: /}"
		if byHeader {
			match = fmt.Sprintf("{headers: [{name: %s, exact: %q}]}", ScenarioHeader, sc.Name)
		}
		fmt.Fprintf(&routes, "  - {name: %q, match: %s, filters: [%s], backend: app}\n", sc.Name, match, strings.Join(names, ", "))
	}
	if routes.Len() == 0 {
		routes.WriteString("  - {name: default, match: {path_prefix: /}, backend: app}\n")
	}
	fmt.Fprintf(&b, "routes:\n%s", routes.String())
	return b.Bytes(), nil
}

// send makes the scenario's request to the gateway at addr.
func send(ctx context.Context, sc *Scenario, addr string, blackBox bool) (*http.Response, string, error) {
	r := sc.Request
	p := new(http.Protocols)
	if r.Protocol == "h2c" {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	c := &http.Client{Transport: &http.Transport{Protocols: p, Proxy: nil}, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer c.CloseIdleConnections()
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if r.Body != "" {
		body = strings.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+r.Path, body)
	if err != nil {
		return nil, "", err
	}
	if len(r.Trailers) > 0 {
		// Trailers follow a body of no declared length.
		req.Body = io.NopCloser(strings.NewReader(r.Body))
		req.ContentLength = -1
		req.Trailer = http.Header{}
		for k, v := range r.Trailers {
			req.Trailer.Set(k, v)
		}
	}
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	if blackBox {
		req.Header.Set(ScenarioHeader, sc.Name)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}
