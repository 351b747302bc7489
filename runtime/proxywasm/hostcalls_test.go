package proxywasm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// hc drives hostcalls.wat: it calls the host functions it re-exports directly, in the
// context of a stream the test holds.
type hc struct {
	t    *testing.T
	p    *Plugin
	i    *instance
	s    *Stream
	next uint32 // where put writes next, in the guest's first page
}

const (
	outPtr  = 0x10 // where the host stores a returned pointer
	outSize = 0x14 // and size
	outU32  = 0x18 // a returned 32-bit value (id, cas, size)
	outU64  = 0x20 // a returned 64-bit value
	oob     = 0xfffffff0
)

func (h *hc) call(name string, args ...uint64) uint32 {
	h.t.Helper()
	fn := h.i.mod.ExportedFunction("t_" + name)
	if fn == nil {
		h.t.Fatalf("no t_%s", name)
	}
	res, err := fn.Call(h.i.ctx, args...)
	if err != nil {
		h.t.Fatalf("%s: %v", name, err)
	}
	return uint32(res[0])
}

// put writes b to guest memory and returns its pointer and size.
func (h *hc) put(b string) (uint64, uint64) {
	if h.next == 0 {
		h.next = 0x1000
	}
	p := h.next
	h.i.mem.WriteString(p, b)
	h.next += uint32(len(b)+7) &^ 7
	return uint64(p), uint64(len(b))
}

func (h *hc) putMap(fields ...Field) (uint64, uint64) {
	return h.put(string(serializeMap(nil, fields)))
}

func (h *hc) result() string { return string(h.i.bytesAt(outPtr)) }

func (h *hc) expect(what string, got, want uint32) {
	h.t.Helper()
	if got != want {
		h.t.Errorf("%s: status %d, want %d", what, got, want)
	}
}

func newHC(t *testing.T, p *Plugin, info *StreamInfo) *hc {
	t.Helper()
	s, err := p.NewStream(context.Background(), info)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return &hc{t: t, p: p, i: s.inst, s: s}
}

func TestHostFunctions(t *testing.T) {
	r := newRuntime(t)
	sink := &logSink{}
	host := &fakeHost{}
	p := loadWAT(t, r, hostcallsWAT, Config{
		Name: "hc", VMID: "vm-hc", RootID: "root-hc",
		VMConfig: []byte("vmconf"), Plugin: []byte("plugconf"),
		LogLevel: slog.LevelInfo, Logger: slog.New(sink),
	}, host)
	r.RegisterForeignFunction("reverse", func(_ Caller, b []byte) ([]byte, error) { slices.Reverse(b); return b, nil })
	r.RegisterForeignFunction("fails", func(Caller, []byte) ([]byte, error) { return nil, errors.New("no") })
	start := time.Unix(1700000000, 5)
	info := &StreamInfo{
		ID: "req-1", Start: start, Protocol: "HTTP/2", Scheme: "https",
		SourceAddress: "10.0.0.1:5555", DestAddress: "10.0.0.2:443", MTLS: true, TLSVersion: "TLSv1.3",
		RouteName: "r1", ClusterName: "c1", UpstreamAddress: "10.0.0.3:80", ResponseCode: 201, ResponseSize: 1234,
	}
	reqHeaders := func() *Headers {
		return &Headers{Fields: []Field{{":method", "GET"}, {":path", "/a/b?x=1"}, {":authority", "example.com"},
			{":scheme", "https"}, {"x-dup", "1"}, {"user-agent", "ua"}, {"x-dup", "2"}}}
	}

	tests := []struct {
		name string
		run  func(h *hc)
	}{
		{"headers", func(h *hc) {
			hd := reqHeaders()
			h.s.OnRequestHeaders(hd, true)
			k, kn := h.put(":PATH")
			h.expect("get", h.call("proxy_get_header_map_value", mapHTTPRequestHeaders, k, kn, outPtr, outSize), statusOK)
			if h.result() != "/a/b?x=1" {
				h.t.Errorf("get :PATH = %q", h.result())
			}
			k, kn = h.put("x-missing")
			h.expect("get missing", h.call("proxy_get_header_map_value", mapHTTPRequestHeaders, k, kn, outPtr, outSize), statusNotFound)
			k, kn = h.put("X-Added")
			v, vn := h.put("yes")
			h.expect("add", h.call("proxy_add_header_map_value", mapHTTPRequestHeaders, k, kn, v, vn), statusOK)
			k, kn = h.put("x-dup")
			v, vn = h.put("3")
			h.expect("replace", h.call("proxy_replace_header_map_value", mapHTTPRequestHeaders, k, kn, v, vn), statusOK)
			k, kn = h.put("user-agent")
			h.expect("remove", h.call("proxy_remove_header_map_value", mapHTTPRequestHeaders, k, kn), statusOK)
			h.expect("remove absent", h.call("proxy_remove_header_map_value", mapHTTPRequestHeaders, k, kn), statusOK)
			want := []Field{{":method", "GET"}, {":path", "/a/b?x=1"}, {":authority", "example.com"}, {":scheme", "https"}, {"x-dup", "3"}, {"x-added", "yes"}}
			if !slices.Equal(hd.Fields, want) {
				h.t.Errorf("headers edited in place: %v\nwant %v", hd.Fields, want)
			}
			h.expect("pairs", h.call("proxy_get_header_map_pairs", mapHTTPRequestHeaders, outPtr, outSize), statusOK)
			if got, _ := parseMap([]byte(h.result()), nil); !slices.Equal(got, want) {
				h.t.Errorf("pairs %v", got)
			}
			h.expect("size", h.call("proxy_get_header_map_size", mapHTTPRequestHeaders, outU32), statusOK)
			if got := h.i.u32At(outU32); got != uint32(serializedSize(want)) {
				h.t.Errorf("size %d", got)
			}
			m, mn := h.putMap(Field{"A", "1"}, Field{"b", ""})
			h.expect("set pairs", h.call("proxy_set_header_map_pairs", mapHTTPRequestHeaders, m, mn), statusOK)
			if want := []Field{{"a", "1"}, {"b", ""}}; !slices.Equal(hd.Fields, want) {
				h.t.Errorf("after set pairs: %v", hd.Fields)
			}
			m, mn = h.put("\x05\x00\x00\x00")
			h.expect("set malformed pairs", h.call("proxy_set_header_map_pairs", mapHTTPRequestHeaders, m, mn), statusBadArgument)
			h.expect("unknown map", h.call("proxy_get_header_map_pairs", 8, outPtr, outSize), statusBadArgument)
			h.expect("no trailers yet", h.call("proxy_get_header_map_pairs", mapHTTPRequestTrailers, outPtr, outSize), statusNotFound)
			h.expect("no call response", h.call("proxy_get_header_map_pairs", mapHTTPCallResponseHeaders, outPtr, outSize), statusNotFound)
			h.expect("no grpc metadata", h.call("proxy_get_header_map_size", mapGRPCInitialMetadata, outU32), statusNotFound)

			// Each map type sees the latest map passed for it.
			rh := &Headers{Fields: []Field{{":status", "200"}}}
			h.s.OnResponseHeaders(rh, false)
			k, kn = h.put(":status")
			h.call("proxy_get_header_map_value", mapHTTPResponseHeaders, k, kn, outPtr, outSize)
			if h.result() != "200" {
				h.t.Errorf(":status %q", h.result())
			}
			tr := &Headers{}
			h.s.OnResponseTrailers(tr)
			k, kn = h.put("grpc-status")
			v, vn = h.put("0")
			h.expect("add trailer", h.call("proxy_add_header_map_value", mapHTTPResponseTrailers, k, kn, v, vn), statusOK)
			if !slices.Equal(tr.Fields, []Field{{"grpc-status", "0"}}) {
				h.t.Errorf("trailers %v", tr.Fields)
			}
		}},
		{"bodies and buffers", func(h *hc) {
			b := &Body{Data: []byte("hello")}
			h.s.OnRequestBody(b, true)
			get := func(bt, start, max uint64) (uint32, string) {
				st := h.call("proxy_get_buffer_bytes", bt, start, max, outPtr, outSize)
				return st, h.result()
			}
			if st, v := get(bufferHTTPRequestBody, 0, 100); st != statusOK || v != "hello" {
				h.t.Errorf("whole body: %d %q", st, v)
			}
			if st, v := get(bufferHTTPRequestBody, 1, 3); st != statusOK || v != "ell" {
				h.t.Errorf("part: %d %q", st, v)
			}
			if st, _ := get(bufferHTTPRequestBody, 6, 1); st != statusBadArgument {
				h.t.Errorf("start past the end: %d", st)
			}
			set := func(start, size uint64, v string) {
				h.t.Helper()
				p, n := h.put(v)
				h.expect("set "+v, h.call("proxy_set_buffer_bytes", bufferHTTPRequestBody, start, size, p, n), statusOK)
			}
			steps := []struct {
				start, size uint64
				v, want     string
			}{
				{0, 0, ">>", ">>hello"},               // prepend
				{math.MaxInt32, 0, "<<", ">>hello<<"}, // append
				{2, 5, "HELLO", ">>HELLO<<"},          // replace in the middle
				{2, 0, "+", ">>+HELLO<<"},             // inject
				{0, math.MaxInt32, "new", "new"},      // replace everything
				{0, 3, "", ""},                        // empty it
				{0, 0, "from empty", "from empty"},    // prepend to empty
				{100, 1, "!", "from empty!"},          // append past the end
			}
			for _, st := range steps {
				set(st.start, st.size, st.v)
				if string(b.Data) != st.want {
					h.t.Errorf("set(%d, %d, %q): %q, want %q", st.start, st.size, st.v, b.Data, st.want)
				}
			}
			h.expect("status", h.call("proxy_get_buffer_status", bufferHTTPRequestBody, outU32, outU32+4), statusOK)
			if h.i.u32At(outU32) != uint32(len(b.Data)) {
				h.t.Errorf("buffer status size %d", h.i.u32At(outU32))
			}
			if st, v := get(bufferVMConfiguration, 0, 100); st != statusOK || v != "vmconf" {
				h.t.Errorf("vm configuration %d %q", st, v)
			}
			if st, v := get(bufferPluginConfiguration, 0, 100); st != statusOK || v != "plugconf" {
				h.t.Errorf("plugin configuration %d %q", st, v)
			}
			p, n := h.put("x")
			h.expect("set configuration", h.call("proxy_set_buffer_bytes", bufferPluginConfiguration, 0, 0, p, n), statusBadArgument)
			h.expect("no response body yet", h.call("proxy_get_buffer_bytes", bufferHTTPResponseBody, 0, 1, outPtr, outSize), statusNotFound)
			h.expect("no call response", h.call("proxy_get_buffer_bytes", bufferHTTPCallResponseBody, 0, 1, outPtr, outSize), statusNotFound)
			h.expect("tcp", h.call("proxy_get_buffer_bytes", bufferDownstreamData, 0, 1, outPtr, outSize), statusNotFound)
			h.expect("unknown buffer", h.call("proxy_get_buffer_bytes", 9, 0, 1, outPtr, outSize), statusBadArgument)
		}},
		{"stream control", func(h *hc) {
			h.s.OnRequestHeaders(reqHeaders(), true)
			h.expect("continue tcp", h.call("proxy_continue_stream", streamDownstream), statusUnimplemented)
			h.expect("continue unknown", h.call("proxy_continue_stream", 7), statusBadArgument)
			h.expect("close unknown", h.call("proxy_close_stream", 7), statusBadArgument)
			h.expect("continue", h.call("proxy_continue_stream", streamRequest), statusOK)
			det, dn := h.put("denied-by-test")
			body, bn := h.put("nope")
			hm, hn := h.putMap(Field{"X-Why", "test"})
			h.expect("local response", h.call("proxy_send_local_response", 429, det, dn, body, bn, hm, hn, 14), statusOK)
			lr := h.s.local
			if lr == nil || lr.Status != 429 || lr.Details != "denied-by-test" || string(lr.Body) != "nope" || lr.GRPCStatus != 14 ||
				!slices.Equal(lr.Headers, []Field{{"x-why", "test"}}) {
				h.t.Errorf("local response %+v", lr)
			}
			h.expect("close", h.call("proxy_close_stream", streamResponse), statusOK)
			if !h.s.reset {
				h.t.Error("not reset")
			}
			h.expect("effective root", h.call("proxy_set_effective_context", rootContextID), statusOK)
			h.expect("root has no stream", h.call("proxy_continue_stream", streamRequest), statusNotFound)
			h.expect("effective unknown", h.call("proxy_set_effective_context", 999), statusBadArgument)
			h.expect("effective stream", h.call("proxy_set_effective_context", uint64(h.s.id)), statusOK)
			h.expect("done", h.call("proxy_done"), statusNotFound)
			h.expect("status", h.call("proxy_get_status", outU32, outPtr, outSize), statusOK)
		}},
		{"logs and clocks", func(h *hc) {
			m, n := h.put("hello from wasm")
			h.expect("log", h.call("proxy_log", logWarn, m, n), statusOK)
			m2, n2 := h.put("dropped debug")
			h.expect("log below the level", h.call("proxy_log", logDebug, m2, n2), statusOK)
			h.expect("log bad level", h.call("proxy_log", 9, m, n), statusBadArgument)
			if !sink.has("WARN hello from wasm") || sink.has("dropped debug") {
				h.t.Errorf("logs: %v", sink.messages())
			}
			h.expect("log level", h.call("proxy_get_log_level", outU32), statusOK)
			if got := h.i.u32At(outU32); got != logInfo {
				h.t.Errorf("log level %d", got)
			}
			h.expect("time", h.call("proxy_get_current_time_nanoseconds", outU64), statusOK)
			ns, _ := h.i.mem.ReadUint64Le(outU64)
			if d := time.Since(time.Unix(0, int64(ns))); d < 0 || d > time.Minute {
				h.t.Errorf("time off by %v", d)
			}
			h.expect("tick", h.call("proxy_set_tick_period_milliseconds", 0), statusOK)
			h.expect("future host function", h.call("future", 1), statusUnimplemented)
		}},
		{"shared data", func(h *hc) {
			resetShared("vm-hc")
			k, kn := h.put("k")
			v1, v1n := h.put("v1")
			v2, v2n := h.put("v2")
			h.expect("get absent", h.call("proxy_get_shared_data", k, kn, outPtr, outSize, outU32), statusNotFound)
			h.expect("set with a cas on an absent key", h.call("proxy_set_shared_data", k, kn, v1, v1n, 12345), statusOK)
			h.expect("get", h.call("proxy_get_shared_data", k, kn, outPtr, outSize, outU32), statusOK)
			cas1 := h.i.u32At(outU32)
			if h.result() != "v1" || cas1 == 0 {
				h.t.Errorf("get: %q cas %d", h.result(), cas1)
			}
			h.expect("set with the cas", h.call("proxy_set_shared_data", k, kn, v2, v2n, uint64(cas1)), statusOK)
			h.expect("set with a stale cas", h.call("proxy_set_shared_data", k, kn, v1, v1n, uint64(cas1)), statusCasMismatch)
			h.call("proxy_get_shared_data", k, kn, outPtr, outSize, outU32)
			if cas2 := h.i.u32At(outU32); h.result() != "v2" || cas2 == cas1 {
				h.t.Errorf("after CAS: %q cas %d", h.result(), cas2)
			}
			h.expect("set unconditionally", h.call("proxy_set_shared_data", k, kn, v1, v1n, 0), statusOK)
			// Another vm_id is another namespace; the same vm_id, in another plugin, is not.
			other := loadWAT(h.t, r, hostcallsWAT, Config{Name: "other", VMID: "vm-other"}, nil)
			o := newHC(h.t, other, nil)
			k, kn = o.put("k")
			o.expect("another vm_id", o.call("proxy_get_shared_data", k, kn, outPtr, outSize, outU32), statusNotFound)
			same := loadWAT(h.t, r, hostcallsWAT, Config{Name: "same", VMID: "vm-hc"}, nil)
			sm := newHC(h.t, same, nil)
			k, kn = sm.put("k")
			sm.expect("the same vm_id", sm.call("proxy_get_shared_data", k, kn, outPtr, outSize, outU32), statusOK)
			if sm.result() != "v1" {
				h.t.Errorf("shared value %q", sm.result())
			}
		}},
		{"queues", func(h *hc) {
			q, qn := h.put("jobs")
			h.expect("register", h.call("proxy_register_shared_queue", q, qn, outU32), statusOK)
			id := h.i.u32At(outU32)
			vm, vn := h.put("vm-hc")
			h.expect("resolve", h.call("proxy_resolve_shared_queue", vm, vn, q, qn, outU32), statusOK)
			if h.i.u32At(outU32) != id {
				h.t.Errorf("resolved %d, registered %d", h.i.u32At(outU32), id)
			}
			vm, vn = h.put("vm-nope")
			h.expect("resolve elsewhere", h.call("proxy_resolve_shared_queue", vm, vn, q, qn, outU32), statusNotFound)
			h.expect("dequeue empty", h.call("proxy_dequeue_shared_queue", uint64(id), outPtr, outSize), statusEmpty)
			a, an := h.put("item-a")
			b, bn := h.put("item-b")
			h.expect("enqueue", h.call("proxy_enqueue_shared_queue", uint64(id), a, an), statusOK)
			h.expect("enqueue", h.call("proxy_enqueue_shared_queue", uint64(id), b, bn), statusOK)
			h.expect("dequeue", h.call("proxy_dequeue_shared_queue", uint64(id), outPtr, outSize), statusOK)
			if h.result() != "item-a" {
				h.t.Errorf("first out %q", h.result())
			}
			h.call("proxy_dequeue_shared_queue", uint64(id), outPtr, outSize)
			if h.result() != "item-b" {
				h.t.Errorf("second out %q", h.result())
			}
			h.expect("enqueue unknown", h.call("proxy_enqueue_shared_queue", 999, a, an), statusNotFound)
			h.expect("dequeue unknown", h.call("proxy_dequeue_shared_queue", 999, outPtr, outSize), statusNotFound)
		}},
		{"metrics", func(h *hc) {
			define := func(kind uint64, name string) uint32 {
				h.t.Helper()
				n, nn := h.put(name)
				h.expect("define "+name, h.call("proxy_define_metric", kind, n, nn, outU32), statusOK)
				return h.i.u32At(outU32)
			}
			value := func(id uint32) int64 {
				h.t.Helper()
				h.expect("get", h.call("proxy_get_metric", uint64(id), outU64), statusOK)
				v, _ := h.i.mem.ReadUint64Le(outU64)
				return int64(v)
			}
			c := define(metricCounter, "hc_requests")
			if again := define(metricCounter, "hc_requests"); again != c {
				h.t.Errorf("redefined counter: id %d, then %d", c, again)
			}
			h.expect("increment", h.call("proxy_increment_metric", uint64(c), 5), statusOK)
			h.expect("decrement a counter", h.call("proxy_increment_metric", uint64(c), uint64(math.MaxUint64)), statusBadArgument)
			if v := value(c); v != 5 {
				h.t.Errorf("counter %d", v)
			}
			g := define(metricGauge, "hc_requests") // same name, another kind: another metric
			if g == c {
				h.t.Error("a gauge shares a counter's id")
			}
			h.call("proxy_increment_metric", uint64(g), uint64(math.MaxUint64)) // -1
			h.call("proxy_increment_metric", uint64(g), uint64(math.MaxUint64))
			if v := value(g); v != -2 {
				h.t.Errorf("gauge %d", v)
			}
			h.expect("record gauge", h.call("proxy_record_metric", uint64(g), 7), statusOK)
			if v := value(g); v != 7 {
				h.t.Errorf("gauge %d", v)
			}
			hist := define(metricHistogram, "hc_latency")
			for _, v := range []uint64{3, 30, 1 << 40} {
				h.expect("record", h.call("proxy_record_metric", uint64(hist), v), statusOK)
			}
			n, nn := h.put("x")
			h.expect("unknown kind", h.call("proxy_define_metric", 3, n, nn, outU32), statusBadArgument)
			h.expect("unknown id", h.call("proxy_increment_metric", 9999, 1), statusNotFound)
			h.expect("unknown id", h.call("proxy_get_metric", 9999, outU64), statusNotFound)
			ms := map[string]Metric{}
			for _, m := range r.Metrics() {
				ms[m.Filter+" "+m.Kind+" "+m.Name] = m
			}
			if len(ms) != 3 {
				h.t.Errorf("Metrics %v, want the three of filter hc", ms)
			}
			if m := ms["hc counter hc_requests"]; m.Value != 5 {
				h.t.Errorf("Metrics counter %+v", m)
			}
			m := ms["hc histogram hc_latency"]
			wantHist := make([]uint64, len(HistogramBounds)+1)
			wantHist[2]++                    // 3: (2, 5]
			wantHist[5]++                    // 30: (25, 50]
			wantHist[len(HistogramBounds)]++ // 2^40: past the last bound
			if m.Count != 3 || m.Value != 33+1<<40 || !slices.Equal(m.Histogram, wantHist) {
				h.t.Errorf("Metrics histogram %+v, want buckets %v", m, wantHist)
			}
		}},
		{"properties", func(h *hc) {
			h.s.OnRequestHeaders(reqHeaders(), true)
			h.s.OnResponseHeaders(&Headers{Fields: []Field{{":status", "201"}, {"x-r", "1"}}}, true)
			i64 := func(v int64) string { return string(binary.LittleEndian.AppendUint64(nil, uint64(v))) }
			props := []struct{ path, want string }{
				{"request.path", "/a/b?x=1"},
				{"request.url_path", "/a/b"},
				{"request.query", "x=1"},
				{"request.host", "example.com"},
				{"request.scheme", "https"},
				{"request.method", "GET"},
				{"request.id", "req-1"},
				{"request.time", i64(start.UnixNano())},
				{"request.protocol", "HTTP/2"},
				{"request.useragent", "ua"},
				{"request.headers.x-dup", "1"},
				{"source.address", "10.0.0.1:5555"},
				{"source.port", i64(5555)},
				{"destination.address", "10.0.0.2:443"},
				{"destination.port", i64(443)},
				{"connection.mtls", "\x01"},
				{"connection.tls_version", "TLSv1.3"},
				{"upstream.address", "10.0.0.3:80"},
				{"response.code", i64(201)},
				{"response.size", i64(1234)},
				{"response.headers.x-r", "1"},
				{"plugin_name", "hc"},
				{"plugin_root_id", "root-hc"},
				{"plugin_vm_id", "vm-hc"},
				{"node.id", "node-1"},
				{"route_name", "r1"},
				{"cluster_name", "c1"},
				{"request.headers", string(serializeMap(nil, reqHeaders().Fields))},
				{"response.headers", string(serializeMap(nil, []Field{{":status", "201"}, {"x-r", "1"}}))},
			}
			for _, pr := range props {
				pp, pn := h.put(strings.ReplaceAll(pr.path, ".", "\x00"))
				h.expect(pr.path, h.call("proxy_get_property", pp, pn, outPtr, outSize), statusOK)
				if h.result() != pr.want {
					h.t.Errorf("%s = %q, want %q", pr.path, h.result(), pr.want)
				}
			}
			// request.duration: the request's age so far, in nanoseconds.
			pp, pn := h.put("request\x00duration")
			h.expect("request.duration", h.call("proxy_get_property", pp, pn, outPtr, outSize), statusOK)
			if d := time.Duration(binary.LittleEndian.Uint64([]byte(h.result()))); d <= 0 || d > time.Since(start) {
				h.t.Errorf("request.duration = %v (start %v ago)", d, time.Since(start))
			}
			for _, path := range []string{"request\x00nope", "nope", "request.path" /* dots do not separate */} {
				pp, pn := h.put(path)
				h.expect(path, h.call("proxy_get_property", pp, pn, outPtr, outSize), statusNotFound)
			}
			pp, pn = h.put("my_filter\x00state")
			v, vn := h.put("42")
			h.expect("set", h.call("proxy_set_property", pp, pn, v, vn), statusOK)
			h.expect("get what was set", h.call("proxy_get_property", pp, pn, outPtr, outSize), statusOK)
			if h.result() != "42" {
				h.t.Errorf("set then get: %q", h.result())
			}
		}},
		{"foreign functions", func(h *hc) {
			n, nn := h.put("reverse")
			a, an := h.put("abc")
			h.expect("call", h.call("proxy_call_foreign_function", n, nn, a, an, outPtr, outSize), statusOK)
			if h.result() != "cba" {
				h.t.Errorf("reverse: %q", h.result())
			}
			n, nn = h.put("fails")
			h.expect("fails", h.call("proxy_call_foreign_function", n, nn, a, an, outPtr, outSize), statusInternalFailure)
			n, nn = h.put("nope")
			h.expect("unknown", h.call("proxy_call_foreign_function", n, nn, a, an, outPtr, outSize), statusNotFound)
		}},
		{"http and grpc calls", func(h *hc) {
			c, cn := h.put("backend")
			hm, hn := h.putMap(Field{":method", "POST"}, Field{":path", "/x"}, Field{":authority", "backend"}, Field{"x-h", "1"})
			body, bn := h.put("payload")
			tm, tn := h.putMap(Field{"x-t", "2"})
			h.expect("http call", h.call("proxy_http_call", c, cn, hm, hn, body, bn, tm, tn, 250, outU32), statusOK)
			if h.i.u32At(outU32) == 0 {
				h.t.Error("call id 0")
			}
			calls := host.Calls()
			last := calls[len(calls)-1]
			if last.Cluster != "backend" || string(last.Body) != "payload" || last.Timeout != 250*time.Millisecond ||
				!slices.Equal(last.Trailers, []Field{{"x-t", "2"}}) || len(last.Headers) != 4 {
				h.t.Errorf("call %+v", last)
			}
			nm, nn := h.put("nowhere")
			h.expect("unknown cluster", h.call("proxy_http_call", nm, nn, hm, hn, body, bn, tm, tn, 250, outU32), statusBadArgument)
			bad, badn := h.putMap(Field{":method", "GET"}, Field{":authority", "backend"})
			h.expect("no :path", h.call("proxy_http_call", c, cn, bad, badn, 0, 0, 0, 0, 250, outU32), statusBadArgument)

			svc, sn := h.put("pkg.Svc")
			m, mn := h.put("Do")
			h.expect("grpc call", h.call("proxy_grpc_call", c, cn, svc, sn, m, mn, 0, 0, body, bn, 100, outU32), statusOK)
			id := uint64(h.i.u32At(outU32))
			h.expect("grpc call to nowhere", h.call("proxy_grpc_call", nm, nn, svc, sn, m, mn, 0, 0, body, bn, 100, outU32), statusParseFailure)
			h.expect("grpc send on a call", h.call("proxy_grpc_send", id, body, bn, 0), statusBadArgument)
			h.expect("grpc send unknown", h.call("proxy_grpc_send", 999, body, bn, 0), statusNotFound)
			h.expect("grpc cancel", h.call("proxy_grpc_cancel", id), statusOK)
			h.expect("grpc cancel again", h.call("proxy_grpc_cancel", id), statusNotFound)
			h.expect("grpc close unknown", h.call("proxy_grpc_close", 999), statusNotFound)
			h.expect("grpc stream", h.call("proxy_grpc_stream", c, cn, svc, sn, m, mn, 0, 0, outU32), statusOK)
			h.expect("grpc stream to nowhere", h.call("proxy_grpc_stream", nm, nn, svc, sn, m, mn, 0, 0, outU32), statusParseFailure)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(newHC(t, p, info))
		})
	}
}

// TestHostFunctionsOutOfBounds calls every host function that takes a pointer with one
// past the end of memory: each must answer INVALID_MEMORY_ACCESS, and the host must not
// panic nor the instance fail.
func TestHostFunctionsOutOfBounds(t *testing.T) {
	r := newRuntime(t)
	p := loadWAT(t, r, hostcallsWAT, Config{}, nil)
	h := newHC(t, p, nil)
	h.s.OnRequestHeaders(&Headers{Fields: []Field{{":path", "/"}}}, true)
	h.s.OnRequestBody(&Body{Data: []byte("b")}, true)
	k, kn := h.put(":path")
	calls := []struct {
		name string
		args []uint64
	}{
		{"proxy_log", []uint64{logInfo, oob, 64}},
		{"proxy_log", []uint64{logInfo, 0, oob}},
		{"proxy_get_log_level", []uint64{oob}},
		{"proxy_get_current_time_nanoseconds", []uint64{oob}},
		{"proxy_get_buffer_bytes", []uint64{bufferHTTPRequestBody, 0, 1, oob, outSize}},
		{"proxy_get_buffer_bytes", []uint64{bufferHTTPRequestBody, 0, 1, outPtr, oob}},
		{"proxy_set_buffer_bytes", []uint64{bufferHTTPRequestBody, 0, 0, oob, 10}},
		{"proxy_get_buffer_status", []uint64{bufferHTTPRequestBody, oob, outU32}},
		{"proxy_get_header_map_size", []uint64{mapHTTPRequestHeaders, oob}},
		{"proxy_get_header_map_pairs", []uint64{mapHTTPRequestHeaders, oob, outSize}},
		{"proxy_set_header_map_pairs", []uint64{mapHTTPRequestHeaders, oob, 100}},
		{"proxy_get_header_map_value", []uint64{mapHTTPRequestHeaders, oob, 5, outPtr, outSize}},
		{"proxy_get_header_map_value", []uint64{mapHTTPRequestHeaders, k, kn, oob, outSize}},
		{"proxy_add_header_map_value", []uint64{mapHTTPRequestHeaders, k, kn, oob, 3}},
		{"proxy_replace_header_map_value", []uint64{mapHTTPRequestHeaders, oob, 3, k, kn}},
		{"proxy_remove_header_map_value", []uint64{mapHTTPRequestHeaders, 0, math.MaxUint32}},
		{"proxy_get_status", []uint64{oob, outPtr, outSize}},
		{"proxy_send_local_response", []uint64{200, oob, 4, 0, 0, 0, 0, 0}},
		{"proxy_http_call", []uint64{k, kn, oob, 20, 0, 0, 0, 0, 100, outU32}},
		{"proxy_grpc_call", []uint64{k, kn, k, kn, k, kn, 0, 0, oob, 9, 100, outU32}},
		{"proxy_set_shared_data", []uint64{k, kn, oob, 8, 0}},
		{"proxy_get_shared_data", []uint64{k, kn, outPtr, outSize, oob}},
		{"proxy_register_shared_queue", []uint64{oob, 4, outU32}},
		{"proxy_resolve_shared_queue", []uint64{k, kn, k, kn, oob}},
		{"proxy_enqueue_shared_queue", []uint64{1, oob, 4}},
		{"proxy_dequeue_shared_queue", []uint64{1, oob, outSize}},
		{"proxy_define_metric", []uint64{metricCounter, oob, 4, outU32}},
		{"proxy_get_metric", []uint64{1, oob}},
		{"proxy_get_property", []uint64{oob, 4, outPtr, outSize}},
		{"proxy_set_property", []uint64{k, kn, oob, 4}},
		{"proxy_call_foreign_function", []uint64{oob, 4, 0, 0, outPtr, outSize}},
	}
	h.call("proxy_define_metric", metricCounter, k, kn, outU32) // so that metric 1 exists
	for _, c := range calls {
		h.expect(c.name, h.call(c.name, c.args...), statusInvalidMemoryAccess)
	}
	if st := p.Stats(); len(st.Failures) != 0 || st.Instances != 1 {
		t.Errorf("stats %+v", st)
	}
}

// mapShared is a SharedData in a map, with the ABI's CAS semantics, failing on demand.
type mapShared struct {
	m    map[string]sharedValue
	next uint32
	fail error
	ns   []string // the Caller.VMID of each call
}

func (s *mapShared) Get(c Caller, key []byte) ([]byte, uint32, error) {
	s.ns = append(s.ns, c.VMID())
	if s.fail != nil {
		return nil, 0, s.fail
	}
	v, ok := s.m[string(key)]
	if !ok {
		return nil, 0, ErrNotFound
	}
	return v.v, v.cas, nil
}

func (s *mapShared) Set(c Caller, key, value []byte, cas uint32) error {
	s.ns = append(s.ns, c.VMID())
	if s.fail != nil {
		return s.fail
	}
	if cur, ok := s.m[string(key)]; ok && cas != 0 && cas != cur.cas {
		return fmt.Errorf("key %q: %w", key, ErrCasMismatch)
	}
	s.next++
	s.m[string(key)] = sharedValue{v: slices.Clone(value), cas: s.next}
	return nil
}

// TestHostServices: foreign functions see who calls them and answer with statuses, and a
// Config.SharedData takes the place of the process's shared data.
func TestHostServices(t *testing.T) {
	r := newRuntime(t)
	sd := &mapShared{m: map[string]sharedValue{}}
	host := &fakeHost{}
	p := loadWAT(t, r, hostcallsWAT, Config{Name: "svc", VMID: "vm-svc", SharedData: sd}, host)
	var seen []string
	r.RegisterForeignFunction("whoami", func(c Caller, args []byte) ([]byte, error) {
		left, armed := c.TimeLeft()
		seen = append(seen, fmt.Sprintf("%s %s %v %v %v %v", c.Filter(), c.VMID(), c.Host() == host, c.InStream(), armed, left > 50*time.Millisecond))
		if string(args) == "deny" && !c.SendLocalResponse(LocalResponse{Status: 503, Body: []byte("down"), Headers: []Field{{"x-why", "store"}}, GRPCStatus: -1}) {
			return nil, errors.New("no stream to answer")
		}
		return []byte(c.Filter()), nil
	})
	r.RegisterForeignFunction("missing", func(Caller, []byte) ([]byte, error) { return nil, fmt.Errorf("key: %w", ErrNotFound) })
	r.RegisterForeignFunction("bad", func(Caller, []byte) ([]byte, error) { return nil, fmt.Errorf("args: %w", ErrBadArgument) })

	h := newHC(t, p, &StreamInfo{})
	fn, fnn := h.put("whoami")
	a, an := h.put("hi")
	// Outside any callback: no deadline, and the root context is effective.
	h.i.effective = h.i.rootID
	h.expect("whoami from the root", h.call("proxy_call_foreign_function", fn, fnn, a, an, outPtr, outSize), statusOK)
	if h.result() != "svc" {
		t.Errorf("result %q", h.result())
	}
	// As a stream's callback: armed, in the stream.
	h.i.effective = h.s.id
	h.i.dog.Arm(100 * time.Millisecond)
	d, dn := h.put("deny")
	h.expect("whoami from the stream", h.call("proxy_call_foreign_function", fn, fnn, d, dn, outPtr, outSize), statusOK)
	h.i.dog.Disarm()
	want := []string{"svc vm-svc true false false false", "svc vm-svc true true true true"}
	if !slices.Equal(seen, want) {
		t.Errorf("callers\n%q\nwant\n%q", seen, want)
	}
	if lr := h.s.LocalResponse(); lr == nil || lr.Status != 503 || string(lr.Body) != "down" || !slices.Equal(lr.Headers, []Field{{"x-why", "store"}}) {
		t.Errorf("local response %+v", lr)
	}
	for name, want := range map[string]status{"missing": statusNotFound, "bad": statusBadArgument} {
		n, nn := h.put(name)
		h.expect(name, h.call("proxy_call_foreign_function", n, nn, a, an, outPtr, outSize), want)
	}

	k, kn := h.put("k")
	v1, v1n := h.put("v1")
	h.expect("get absent", h.call("proxy_get_shared_data", k, kn, outPtr, outSize, outU32), statusNotFound)
	h.expect("set", h.call("proxy_set_shared_data", k, kn, v1, v1n, 0), statusOK)
	h.expect("get", h.call("proxy_get_shared_data", k, kn, outPtr, outSize, outU32), statusOK)
	if cas := h.i.u32At(outU32); h.result() != "v1" || cas != 1 {
		t.Errorf("get: %q cas %d", h.result(), cas)
	}
	h.expect("stale cas", h.call("proxy_set_shared_data", k, kn, v1, v1n, 7), statusCasMismatch)
	if _, _, found := sharedData.get("vm-svc", []byte("k")); found {
		t.Error("the process's shared data was written too")
	}
	sd.fail = errors.New("store down")
	h.expect("get, store down", h.call("proxy_get_shared_data", k, kn, outPtr, outSize, outU32), statusInternalFailure)
	h.expect("set, store down", h.call("proxy_set_shared_data", k, kn, v1, v1n, 0), statusInternalFailure)
	if len(sd.ns) != 6 || slices.ContainsFunc(sd.ns, func(ns string) bool { return ns != "vm-svc" }) {
		t.Errorf("namespaces %q", sd.ns)
	}
}
