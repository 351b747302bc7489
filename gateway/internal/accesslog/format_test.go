package accesslog

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func sampleRecord() *Record {
	return &Record{
		// Not UTC, to check that start_time is printed in UTC.
		Start:         time.Date(2024, 5, 1, 12, 30, 45, 123456789, time.FixedZone("CEST", 2*3600)),
		Duration:      57*time.Millisecond + 900*time.Microsecond,
		Listener:      "public",
		Route:         "orders-api",
		Backend:       "orders",
		UpstreamHost:  "10.0.0.7:8080",
		Method:        "POST",
		Authority:     "shop.example.com",
		Path:          "/api/v1/orders?id=7",
		Protocol:      "HTTP/1.1",
		Scheme:        "https",
		Status:        201,
		BytesReceived: 154,
		BytesSent:     2048,
		UpstreamTime:  42 * time.Millisecond,
		Attempts:      1,
		RequestID:     "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2",
		TraceID:       "4bf92f3577b34da6a3ce929d0e0e4736",
		SpanID:        "00f067aa0ba902b7",
		ClientAddress: "203.0.113.9:51234",
		Request: http.Header{
			"User-Agent":      {"curl/8.5.0"},
			"X-Forwarded-For": {"198.51.100.1"},
			"Referer":         {"https://shop.example.com/cart"},
			"X-Tenant":        {"acme"},
		},
		Response: http.Header{"Content-Type": {"application/json"}},
	}
}

// line formats r with a formatter for format and fields.
func line(t *testing.T, format string, fields []string, r *Record) string {
	t.Helper()
	f, err := newFormatter(format, fields)
	if err != nil {
		t.Fatal(err)
	}
	return string(f.append(nil, r))
}

// decodeJSON parses one JSON line, returning its keys in order and its values.
func decodeJSON(t *testing.T, s string) ([]string, map[string]any) {
	t.Helper()
	if !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 {
		t.Fatalf("not one line: %q", s)
	}
	m := map[string]any{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%v: %s", err, s)
	}
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var keys []string
	d.Token() // {
	for d.More() {
		k, err := d.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	return keys, m
}

func TestJSONDefaultFields(t *testing.T) {
	s := line(t, "", nil, sampleRecord())
	keys, m := decodeJSON(t, s)
	if !reflect.DeepEqual(keys, DefaultFields) {
		t.Errorf("keys %v, want %v", keys, DefaultFields)
	}
	want := map[string]any{
		"start_time":                "2024-05-01T10:30:45.123Z",
		"method":                    "POST",
		"path":                      "/api/v1/orders?id=7",
		"protocol":                  "HTTP/1.1",
		"response_code":             201.0,
		"response_flags":            "-",
		"bytes_received":            154.0,
		"bytes_sent":                2048.0,
		"duration":                  57.0,
		"upstream_service_time":     42.0,
		"x_forwarded_for":           "198.51.100.1",
		"user_agent":                "curl/8.5.0",
		"request_id":                "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2",
		"authority":                 "shop.example.com",
		"upstream_host":             "10.0.0.7:8080",
		"upstream_cluster":          "orders",
		"route_name":                "orders-api",
		"downstream_remote_address": "203.0.113.9:51234",
		"trace_id":                  "4bf92f3577b34da6a3ce929d0e0e4736",
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got  %v\nwant %v", m, want)
	}
}

// TestJSONAllFields names every field, in an order unlike the table's, and checks
// values and key order; then the same on a local reply, whose missing values are null.
func TestJSONAllFields(t *testing.T) {
	fields := []string{
		"filter", "span_id", "trace_id", "request_id", "attempts", "listener", "route_name",
		"upstream_cluster", "upstream_host", "upstream_service_time", "bytes_sent", "bytes_received",
		"response_flags", "response_code", "scheme", "protocol", "path", "authority", "method",
		"duration", "start_time", "downstream_remote_address", "user_agent", "referer",
		"x_forwarded_for", "grpc_status", "req.X-TENANT", "resp.content-type",
	}
	if len(fields) != int(numNamed)+2 {
		t.Fatalf("the test names %d fields, the package knows %d", len(fields), numNamed+2)
	}
	r := sampleRecord()
	keys, m := decodeJSON(t, line(t, "json", fields, r))
	if !reflect.DeepEqual(keys, fields) {
		t.Errorf("keys %v, want %v", keys, fields)
	}
	want := map[string]any{
		"filter": nil, "span_id": "00f067aa0ba902b7", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
		"request_id": "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2", "attempts": 1.0, "listener": "public",
		"route_name": "orders-api", "upstream_cluster": "orders", "upstream_host": "10.0.0.7:8080",
		"upstream_service_time": 42.0, "bytes_sent": 2048.0, "bytes_received": 154.0,
		"response_flags": "-", "response_code": 201.0, "scheme": "https", "protocol": "HTTP/1.1",
		"path": "/api/v1/orders?id=7", "authority": "shop.example.com", "method": "POST",
		"duration": 57.0, "start_time": "2024-05-01T10:30:45.123Z",
		"downstream_remote_address": "203.0.113.9:51234", "user_agent": "curl/8.5.0",
		"referer": "https://shop.example.com/cart", "x_forwarded_for": "198.51.100.1",
		"grpc_status": nil, "req.X-TENANT": "acme", "resp.content-type": "application/json",
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got  %v\nwant %v", m, want)
	}

	local := &Record{Method: "GET", Path: "/admin", Status: 403, UpstreamTime: -1,
		Flags: FilterLocalReply, Filter: "authz"}
	_, m = decodeJSON(t, line(t, "json", fields, local))
	want = map[string]any{}
	for _, f := range fields {
		want[f] = nil
	}
	for k, v := range map[string]any{"filter": "authz", "method": "GET", "path": "/admin",
		"response_code": 403.0, "response_flags": "FL", "attempts": 0.0, "bytes_sent": 0.0,
		"bytes_received": 0.0, "duration": 0.0} {
		want[k] = v
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("local reply: got  %v\nwant %v", m, want)
	}
}

func TestJSONEscaping(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`plain`, `plain`},
		{`a "quoted" \ path`, `a "quoted" \ path`},
		{"new\nline\r\ttab", "new\nline\r\ttab"},
		{"\x00\x01\x1f\x7f", "\x00\x01\x1f\x7f"},
		{"é 日本 🙂", "é 日本 🙂"},
		{"\u2028\u2029", "\u2028\u2029"},
		{"bad \xff\xfe utf8 \xe6\x97", "bad \ufffd\ufffd utf8 \ufffd\ufffd"},
		{"</script>&", "</script>&"},
	} {
		r := &Record{Path: tc.in, Request: http.Header{"X-Forwarded-For": {tc.in, "10.0.0.1"}}}
		s := line(t, "json", []string{"path", "x_forwarded_for"}, r)
		for _, c := range []byte(s[:len(s)-1]) {
			if c < 0x20 {
				t.Errorf("%q: raw control character %#x in %q", tc.in, c, s)
			}
		}
		_, m := decodeJSON(t, s)
		if m["path"] != tc.want || m["x_forwarded_for"] != tc.want+", 10.0.0.1" {
			t.Errorf("%q: decoded %q and %q, want %q", tc.in, m["path"], m["x_forwarded_for"], tc.want)
		}
	}
}

func TestEnvoyTextLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    *Record
		want string
	}{
		{"proxied", sampleRecord(),
			`[2024-05-01T10:30:45.123Z] "POST /api/v1/orders?id=7 HTTP/1.1" 201 - 154 2048 57 42 "198.51.100.1" "curl/8.5.0" "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2" "shop.example.com" "10.0.0.7:8080"` + "\n"},
		{"nothing known", &Record{UpstreamTime: -1},
			`[-] "- - -" 0 - 0 0 0 - "-" "-" "-" "-" "-"` + "\n"},
		{"flags and escapes", &Record{
			Start: time.Date(2016, 4, 15, 20, 17, 0, 310e6, time.UTC), Method: "GET", Path: "/a\"b", Protocol: "HTTP/2",
			Status: 503, Flags: UpstreamConnectFailure | NoHealthyUpstream | RetriesExhausted, Duration: 3 * time.Second,
			UpstreamTime: -time.Nanosecond,
			Request:      http.Header{"User-Agent": {"evil\n[2016] \"forged\" \\ \x01"}, "X-Forwarded-For": {"1.1.1.1", "2.2.2.2"}},
		}, `[2016-04-15T20:17:00.310Z] "GET /a\"b HTTP/2" 503 UH,URX,UF 0 0 3000 - "1.1.1.1, 2.2.2.2" "evil\n[2016] \"forged\" \\ \x01" "-" "-" "-"` + "\n"},
	} {
		if got := line(t, "text", nil, tc.r); got != tc.want {
			t.Errorf("%s:\ngot  %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

func TestLogfmt(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "-"},
		{"/plain/path?x", "/plain/path?x"},
		{"has space", `"has space"`},
		{`has"quote`, `"has\"quote"`},
		{"k=v", `"k=v"`},
		{"tab\there", `"tab\there"`},
		{"nl\n", `"nl\n"`},
		{"bell\a", `"bell\x07"`},
		{`back\slash`, `back\slash`},
		{`back\slash "q"`, `"back\\slash \"q\""`},
		{"日本", "日本"},
		{"bad\xff", `"bad\xff"`},
		{"nbsp\u00a0", `"nbsp\u00a0"`},
		{"-", "-"},
	} {
		r := &Record{Path: tc.in, Status: 200, UpstreamTime: -1}
		got := line(t, "text", []string{"path", "response_code", "upstream_service_time", "response_flags"}, r)
		want := "path=" + tc.want + " response_code=200 upstream_service_time=- response_flags=-\n"
		if got != want {
			t.Errorf("%q:\ngot  %s\nwant %s", tc.in, got, want)
		}
		// Go's quoting of a quoted value round-trips.
		if q := tc.want; strings.HasPrefix(q, `"`) {
			if u, err := strconv.Unquote(q); err != nil || u != tc.in {
				t.Errorf("%q: %s unquotes to %q, %v", tc.in, q, u, err)
			}
		}
	}
}

func TestHeaderFields(t *testing.T) {
	r := &Record{
		Request:  http.Header{"X-Tenant": {"acme"}, "X-Multi": {"a", "b c"}, "Empty": {""}},
		Response: http.Header{"Content-Type": {"text/html; charset=utf-8"}, "X-Tenant": {"response side"}},
	}
	fields := []string{"req.x-tenant", "REQ.X-Tenant", "req.X-MULTI", "req.missing", "req.empty", "resp.Content-Type", "resp.x-tenant"}
	if _, err := newFormatter("json", fields); err == nil {
		t.Fatal(`"REQ.X-Tenant" accepted: the prefix is lower case`)
	}
	fields = append(fields[:1], fields[2:]...)
	keys, m := decodeJSON(t, line(t, "json", fields, r))
	if !reflect.DeepEqual(keys, fields) {
		t.Errorf("keys %v, want %v", keys, fields)
	}
	want := map[string]any{"req.x-tenant": "acme", "req.X-MULTI": "a, b c", "req.missing": nil,
		"req.empty": nil, "resp.Content-Type": "text/html; charset=utf-8", "resp.x-tenant": "response side"}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got  %v\nwant %v", m, want)
	}
	got := line(t, "text", fields, r)
	wantText := `req.x-tenant=acme req.X-MULTI="a, b c" req.missing=- req.empty=- resp.Content-Type="text/html; charset=utf-8" resp.x-tenant="response side"` + "\n"
	if got != wantText {
		t.Errorf("text:\ngot  %s\nwant %s", got, wantText)
	}
	// Nil header maps read as missing.
	_, m = decodeJSON(t, line(t, "json", fields, &Record{}))
	for k, v := range m {
		if v != nil {
			t.Errorf("%s = %v with nil headers", k, v)
		}
	}
}

func TestGRPCStatusField(t *testing.T) {
	for _, tc := range []struct {
		resp http.Header
		want any
	}{
		{http.Header{"Grpc-Status": {"14"}}, 14.0},                           // trailers-only
		{http.Header{"Trailer": {"Grpc-Status"}, "Grpc-Status": {"0"}}, 0.0}, // a declared trailer
		{http.Header{http.TrailerPrefix + "Grpc-Status": {"5"}}, 5.0},        // announced late
		{http.Header{"Content-Type": {"application/json"}}, nil},             // not gRPC
	} {
		_, m := decodeJSON(t, line(t, "json", []string{"grpc_status"}, &Record{Response: tc.resp}))
		if m["grpc_status"] != tc.want {
			t.Errorf("%v: %v, want %v", tc.resp, m["grpc_status"], tc.want)
		}
	}
}

func TestFlags(t *testing.T) {
	all := NoRoute | NoHealthyUpstream | UpstreamOverflow | UpstreamTimeout | RetriesExhausted |
		UpstreamConnectFailure | UpstreamReset | UpstreamProtocolError | DownstreamTerminated |
		FilterFailed | FilterLocalReply
	for _, tc := range []struct {
		f     Flags
		want  string
		names []string
	}{
		{0, "-", nil},
		{NoRoute, "NR", []string{"no_route"}},
		{UpstreamTimeout | RetriesExhausted, "UT,URX", []string{"upstream_timeout", "retries_exhausted"}},
		{FilterLocalReply | NoHealthyUpstream, "UH,FL", []string{"no_healthy_upstream", "filter_local_reply"}},
		{FilterFailed | DownstreamTerminated, "DC,FF", []string{"downstream_terminated", "filter_failed"}},
		{all, "NR,UH,UO,UT,URX,UF,UC,UPE,DC,FF,FL", []string{"no_route", "no_healthy_upstream",
			"upstream_overflow", "upstream_timeout", "retries_exhausted", "upstream_connect_failure",
			"upstream_reset", "upstream_protocol_error", "downstream_terminated", "filter_failed",
			"filter_local_reply"}},
		{1 << 31, "-", nil}, // an unknown bit prints nothing
	} {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("%#x: String() = %q, want %q", uint32(tc.f), got, tc.want)
		}
		var codes, names []string
		tc.f.Each(func(code, name string) { codes, names = append(codes, code), append(names, name) })
		if !reflect.DeepEqual(names, tc.names) || tc.want != "-" && strings.Join(codes, ",") != tc.want {
			t.Errorf("%#x: Each gave %v %v", uint32(tc.f), codes, names)
		}
	}
}

func TestFlagsEnvoy(t *testing.T) {
	if len(envoyBits) != len(flagInfo) {
		t.Fatalf("%d Envoy bits for %d flags", len(envoyBits), len(flagInfo))
	}
	for _, c := range []struct {
		f    Flags
		want uint64
	}{
		{0, 0},
		{NoRoute, 0x100},
		{UpstreamConnectFailure | RetriesExhausted, 0x20 | 0x8000},
		{UpstreamTimeout | DownstreamTerminated, 0x4 | 0x4000},
		{FilterFailed | FilterLocalReply, 0}, // plexus's own: Envoy has no bits for them
	} {
		if got := c.f.Envoy(); got != c.want {
			t.Errorf("%s: Envoy bits %#x, want %#x", c.f, got, c.want)
		}
	}
}
