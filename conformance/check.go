package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/runtime/proxywasm"
)

// CheckOptions configure the filter checker.
type CheckOptions struct {
	Config   []byte // the plugin configuration handed to proxy_on_configure
	Requests int    // randomized requests to drive it through; 300 by default
	Seed     uint64 // of the requests' randomness; from the clock when 0 (the report says which)
	// MaxGrowth is how much the filter's memory may grow from the warm-up to the last
	// request before the checker calls it a leak; 1 MiB by default.
	MaxGrowth int64
	// Golden, when set, is a host-call trace recorded before (CheckReport.Trace): the
	// filter's trace must be the same, or the check fails.
	Golden []string
}

// Finding is one thing the checker found.
type Finding struct {
	Severity string // error (the filter fails the check), warn, info
	What     string
}

// CheckReport is what the checker found of a filter.
type CheckReport struct {
	Findings  []Finding
	Seed      uint64
	Requests  int
	Failures  map[string]int     // the filter's failures by kind (trap, timeout, ...)
	Growth    int64              // memory bytes from the warm-up to the end, one instance
	Latencies map[string]Latency // per callback
	// Trace is the host calls the filter made for the trace requests (a GET with a
	// header, a POST with a body), in order, each as "NAME STATUS", after a line naming
	// the request: what a golden trace is compared with.
	Trace []string
}

// Failed reports whether any finding is an error.
func (r *CheckReport) Failed() bool {
	return slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.Severity == "error" })
}

func (r *CheckReport) add(sev, format string, args ...any) {
	r.Findings = append(r.Findings, Finding{sev, fmt.Sprintf(format, args...)})
}

// abiMarkers are the exports that say which ABI a module is built for.
var abiMarkers = []string{"proxy_abi_version_0_2_1", "proxy_abi_version_0_2_0", "proxy_abi_version_0_1_0"}

// callbacks are the exports the host calls (Proxy-Wasm 0.2.1, and 0.1.0's forms).
var callbacks = []string{
	"_initialize", "_start", "malloc", "proxy_on_memory_allocate",
	"proxy_on_context_create", "proxy_on_vm_start", "proxy_on_configure", "proxy_on_tick", "proxy_on_done", "proxy_on_log", "proxy_on_delete",
	"proxy_on_request_headers", "proxy_on_request_body", "proxy_on_request_trailers", "proxy_on_request_metadata",
	"proxy_on_response_headers", "proxy_on_response_body", "proxy_on_response_trailers", "proxy_on_response_metadata",
	"proxy_on_new_connection", "proxy_on_downstream_data", "proxy_on_upstream_data",
	"proxy_on_downstream_connection_close", "proxy_on_upstream_connection_close",
	"proxy_on_http_call_response", "proxy_on_grpc_receive_initial_metadata", "proxy_on_grpc_receive",
	"proxy_on_grpc_receive_trailing_metadata", "proxy_on_grpc_close", "proxy_on_grpc_create_initial_metadata",
	"proxy_on_grpc_receive_initial_metadata", "proxy_on_queue_ready", "proxy_on_foreign_function",
}

// Check checks a filter: statically, its ABI marker, memory, allocator, imports and
// exports against the spec; then through plexus, in-process, its lifecycle and randomized
// requests (header sets, bodies from none to megabytes, with a length or chunked,
// trailers, HTTP/1.1 and h2c, clients that go away mid-request), reporting traps and
// other failures, host-call misuse the host logged, memory growth on one instance, and
// the mean time per callback.
func Check(ctx context.Context, wasm []byte, o CheckOptions) (*CheckReport, error) {
	if o.Requests <= 0 {
		o.Requests = 300
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	if o.MaxGrowth <= 0 {
		o.MaxGrowth = 1 << 20
	}
	r := &CheckReport{Seed: o.Seed}
	if !checkStatic(ctx, wasm, r) {
		return r, nil // nothing to run
	}
	if err := checkDynamic(ctx, wasm, o, r); err != nil {
		return nil, err
	}
	return r, nil
}

// checkStatic checks what the module declares; false when it cannot run at all.
func checkStatic(ctx context.Context, wasm []byte, r *CheckReport) bool {
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	m, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		r.add("error", "not a valid WebAssembly module: %v", err)
		return false
	}
	exports := m.ExportedFunctions()
	var marker string
	for _, mk := range abiMarkers {
		if _, ok := exports[mk]; ok {
			marker = mk
			break
		}
	}
	if marker == "" {
		r.add("error", "no ABI marker: export one of %s", strings.Join(abiMarkers, ", "))
	} else {
		r.add("info", "ABI: %s", strings.ReplaceAll(strings.TrimPrefix(marker, "proxy_abi_version_"), "_", "."))
	}
	if _, ok := m.ExportedMemories()["memory"]; !ok {
		r.add("error", "no exported memory named \"memory\": the host cannot read or write the filter's data")
	}
	if _, ok := exports["malloc"]; !ok {
		if _, ok := exports["proxy_on_memory_allocate"]; !ok {
			r.add("error", "no allocator: export malloc or proxy_on_memory_allocate, which the host calls to hand data over")
		}
	}
	var handled []string
	for name := range exports {
		switch {
		case slices.Contains(callbacks, name):
			handled = append(handled, name)
		case strings.HasPrefix(name, "proxy_on_"):
			r.add("warn", "export %s is no Proxy-Wasm callback (a misspelling?): no host calls it", name)
		}
	}
	slices.Sort(handled)
	r.add("info", "callbacks: %s", strings.Join(handled, ", "))
	ok := marker != ""
	for _, imp := range m.ImportedFunctions() {
		mod, name, _ := imp.Import()
		switch mod {
		case "wasi_snapshot_preview1", "wasi_unstable":
			continue
		case "env":
		default:
			r.add("error", "import %s.%s: a Proxy-Wasm host provides env and WASI only", mod, name)
			ok = false
			continue
		}
		params, noResultOK, known := proxywasm.HostFunction(name)
		results := imp.ResultTypes()
		switch {
		case known && sameTypes(imp.ParamTypes(), params) && (sameTypes(results, []api.ValueType{api.ValueTypeI32}) || noResultOK && len(results) == 0):
		case known:
			r.add("error", "import env.%s has the signature %s; the spec's has %d parameters (%s) and an i32 status", name, signature(imp), len(params), typeNames(params))
			ok = false
		case strings.HasPrefix(name, "proxy_"):
			r.add("warn", "import env.%s is not in Proxy-Wasm 0.2.1 (or not in plexus): it answers UNIMPLEMENTED", name)
		case name == "abort":
		default:
			r.add("warn", "import env.%s is no Proxy-Wasm host function: it traps if called", name)
		}
	}
	return ok
}

func sameTypes(a, b []api.ValueType) bool { return slices.Equal(a, b) }

func typeNames(ts []api.ValueType) string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = api.ValueTypeName(t)
	}
	return strings.Join(names, ", ")
}

func signature(f api.FunctionDefinition) string {
	return "(" + typeNames(f.ParamTypes()) + ") -> (" + typeNames(f.ResultTypes()) + ")"
}

// checkDynamic runs the filter in plexus, in front of an echo backend, through the
// lifecycle and randomized requests, and reads what the admin's /filters says of it.
func checkDynamic(ctx context.Context, wasm []byte, o CheckOptions, r *CheckReport) error {
	dir, err := os.MkdirTemp("", "plexus-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "filter.wasm")
	if err := os.WriteFile(path, wasm, 0o644); err != nil {
		return err
	}
	backend := &echo{name: "app"}
	addr, stop, err := serve(backend)
	if err != nil {
		return err
	}
	defer stop()
	calloutAddr, stopCallouts, err := serve(&echo{name: "callout"})
	if err != nil {
		return err
	}
	defer stopCallouts()
	conf, _ := json.Marshal(string(o.Config))
	// One instance, so that its memory tells whether requests leave something behind.
	yaml := fmt.Sprintf(`admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1, h2c]}]
backends: [{name: app, endpoints: [%q]}, {name: callout, endpoints: [%q]}]
filters: [{name: checked, module: %q, config: %s, failure: closed, limits: {instances: 1, max_waiting: 64}}]
routes: [{name: all, match: {path_prefix: /}, filters: [checked], backend: app}]
`, addr, calloutAddr, "file:"+path, conf)
	cfg, err := config.Parse(filepath.Join(dir, "check.yaml"), []byte(yaml))
	if err != nil {
		return err
	}
	rec := &logs{}
	var traceMu sync.Mutex
	tracing := true
	hostCall := func(_, call string, st uint32) {
		traceMu.Lock()
		defer traceMu.Unlock()
		if tracing {
			r.Trace = append(r.Trace, call+" "+statusName(st))
		}
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(rec), Version: "check", HostCallTrace: hostCall})
	if err != nil {
		r.add("error", "the filter does not start: %v", err)
		return nil
	}
	if err := g.Start(); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.Shutdown(sctx)
	}()
	web, admin := g.Addrs()["web"], g.Addrs()["admin"]
	// The trace requests: what the filter does when it starts, then for each, once its
	// instance is given back (its last callback has run).
	for k, tr := range traceRequests {
		traceMu.Lock()
		r.Trace = append(r.Trace, fmt.Sprintf("# request %d: %s", k+1, tr.what))
		traceMu.Unlock()
		send(ctx, &Scenario{Request: tr.req}, web, false)
		if err := waitIdle(ctx, admin); err != nil {
			return err
		}
	}
	traceMu.Lock()
	tracing = false
	traceMu.Unlock()
	if o.Golden != nil {
		if d := traceDiff(o.Golden, r.Trace); d != "" {
			r.add("error", "the host-call trace differs from the golden one: %s", d)
		} else {
			r.add("info", "the host-call trace is the golden one (%d lines)", len(r.Trace))
		}
	}
	rnd := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	warm := min(20, o.Requests/5)
	var warmMemory int64
	for n := range o.Requests {
		if n == warm {
			st, err := filterStats(ctx, admin)
			if err != nil {
				return err
			}
			warmMemory = st.Memory
		}
		randomRequest(ctx, rnd, web)
		r.Requests++
	}
	st, err := filterStats(ctx, admin)
	if err != nil {
		return err
	}
	r.Failures, r.Latencies = st.Failures, st.Latency
	r.Growth = st.Memory - warmMemory
	for kind, n := range st.Failures {
		r.add("error", "%d of %d requests met a filter failure: %s", n, r.Requests, kind)
	}
	for _, w := range rec.warnings(5) {
		r.add("warn", "%s", w)
	}
	if r.Growth > o.MaxGrowth {
		r.add("error", "memory grew by %d bytes over %d requests after the warm-up (%.0f bytes a request): a leak?", r.Growth, r.Requests-warm, float64(r.Growth)/float64(r.Requests-warm))
	} else {
		r.add("info", "memory: %+d bytes over %d requests after the warm-up", r.Growth, r.Requests-warm)
	}
	return nil
}

// traceRequests are the requests a trace records.
var traceRequests = []struct {
	what string
	req  Request
}{
	{"GET /trace?q=1 with x-trace: 1", Request{Path: "/trace?q=1", Headers: map[string]string{"x-trace": "1"}}},
	{"POST /trace with a 10-byte body", Request{Method: "POST", Path: "/trace", Body: "trace body"}},
}

// statusNames are Proxy-Wasm's WasmResult values.
var statusNames = []string{"OK", "NOT_FOUND", "BAD_ARGUMENT", "SERIALIZATION_FAILURE", "PARSE_FAILURE", "BAD_EXPRESSION",
	"INVALID_MEMORY_ACCESS", "EMPTY", "CAS_MISMATCH", "RESULT_MISMATCH", "INTERNAL_FAILURE", "BROKEN_CONNECTION", "UNIMPLEMENTED"}

func statusName(st uint32) string {
	if int(st) < len(statusNames) {
		return statusNames[st]
	}
	return fmt.Sprintf("STATUS_%d", st)
}

// traceDiff says where got first differs from want, "" when it does not.
func traceDiff(want, got []string) string {
	for i := range max(len(want), len(got)) {
		switch {
		case i >= len(want):
			return fmt.Sprintf("line %d: %q is one more call than the golden trace's %d lines", i+1, got[i], len(want))
		case i >= len(got):
			return fmt.Sprintf("line %d: the golden trace has %q, the filter made no more calls", i+1, want[i])
		case want[i] != got[i]:
			return fmt.Sprintf("line %d: %q, the golden trace has %q", i+1, got[i], want[i])
		}
	}
	return ""
}

// waitIdle waits until the checked filter holds no instance: the last callbacks of a
// request (proxy_on_log, proxy_on_done) run after its response.
func waitIdle(ctx context.Context, admin string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := filterStats(ctx, admin)
		if err != nil {
			return err
		}
		if st.InUse == 0 || time.Now().After(deadline) {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type stats struct {
	InUse    int
	Memory   int64
	Failures map[string]int
	Latency  map[string]Latency
}

// Latency is how long one callback took, over the checker's requests, in microseconds:
// the mean, the median and 99th percentile (upper bounds: the gateway's histogram keeps
// buckets, 1µs to 100ms), and the longest.
type Latency struct {
	Calls               int
	Mean, P50, P99, Max float64
}

// filterStats reads the checked filter's line of /filters.
func filterStats(ctx context.Context, admin string) (*stats, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/filters", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var doc struct {
		Filters []struct {
			InUse     int                        `json:"in_use"`
			Memory    int64                      `json:"memory_bytes"`
			Failures  map[string]int             `json:"failures"`
			Callbacks map[string]json.RawMessage `json:"callbacks"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || len(doc.Filters) != 1 {
		return nil, fmt.Errorf("conformance: reading /filters: %v", err)
	}
	f := doc.Filters[0]
	st := &stats{InUse: f.InUse, Memory: f.Memory, Failures: f.Failures, Latency: map[string]Latency{}}
	for name, raw := range f.Callbacks {
		var c struct {
			Calls int     `json:"calls"`
			Mean  float64 `json:"mean_us"`
			P50   float64 `json:"p50_us"`
			P99   float64 `json:"p99_us"`
			Max   float64 `json:"max_us"`
		}
		if json.Unmarshal(raw, &c) == nil {
			st.Latency[name] = Latency{Calls: c.Calls, Mean: c.Mean, P50: c.P50, P99: c.P99, Max: c.Max}
		}
	}
	return st, nil
}

// bodySizes are the request bodies the checker sends, from none to megabytes.
var bodySizes = []int{0, 0, 1, 100, 4 << 10, 64 << 10, 1 << 20, 3 << 20}

// randomRequest sends one randomized request to the gateway at addr; what comes back
// does not matter (the filter may answer anything), how the filter fared does.
func randomRequest(ctx context.Context, rnd *rand.Rand, addr string) {
	p := new(http.Protocols)
	if rnd.IntN(3) == 0 {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	tr := &http.Transport{Protocols: p, Proxy: nil}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	methods := []string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"}
	method := methods[rnd.IntN(len(methods))]
	size := 0
	if method != "GET" && method != "HEAD" {
		size = bodySizes[rnd.IntN(len(bodySizes))]
	}
	body := make([]byte, size)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	early := rnd.IntN(10) == 0 // a client that goes away mid-request
	var rd io.Reader = strings.NewReader(string(body))
	if early {
		rd = &cutOff{r: rd, after: size / 2, cancel: cancel}
	}
	req, err := http.NewRequestWithContext(rctx, method, fmt.Sprintf("http://%s/check/%d?q=%d", addr, rnd.IntN(1000), rnd.IntN(1000)), rd)
	if err != nil {
		return
	}
	if size == 0 {
		req.Body = nil
	}
	if rnd.IntN(2) == 0 && size > 0 {
		req.ContentLength = -1 // chunked
		if rnd.IntN(2) == 0 {
			req.Trailer = http.Header{"X-Check-Trailer": {"t"}}
		}
	} else {
		req.ContentLength = int64(size)
	}
	for range rnd.IntN(20) {
		req.Header.Add(fmt.Sprintf("x-check-%d", rnd.IntN(50)), strings.Repeat("v", rnd.IntN(200)))
	}
	resp, err := c.Do(req)
	if err != nil {
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// cutOff is a request body that ends the request after some bytes, as a client that
// goes away does.
type cutOff struct {
	r      io.Reader
	after  int
	read   int
	cancel context.CancelFunc
}

func (c *cutOff) Read(b []byte) (int, error) {
	if c.read >= c.after {
		c.cancel()
		return 0, context.Canceled
	}
	if len(b) > c.after-c.read {
		b = b[:c.after-c.read]
	}
	n, err := c.r.Read(b)
	c.read += n
	return n, err
}

// WriteText writes the report for people.
func (r *CheckReport) WriteText(w io.Writer) {
	for _, f := range r.Findings {
		fmt.Fprintf(w, "%-5s %s\n", strings.ToUpper(f.Severity), f.What)
	}
	if len(r.Latencies) > 0 {
		fmt.Fprintln(w, "time per callback, µs (p50 and p99 are bucket bounds: at most):")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  callback\tcalls\tmean\tp50\tp99\tmax\t")
		for _, name := range slices.Sorted(maps.Keys(r.Latencies)) {
			l := r.Latencies[name]
			fmt.Fprintf(tw, "  %s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t\n", name, l.Calls, l.Mean, l.P50, l.P99, l.Max)
		}
		tw.Flush()
	}
	verdict := "PASS"
	if r.Failed() {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "%s (%d requests, seed %d)\n", verdict, r.Requests, r.Seed)
}
