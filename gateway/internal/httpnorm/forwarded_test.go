package httpnorm

import (
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func prefixes(t testing.TB, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestSetForwarded(t *testing.T) {
	lb := prefixes(t, "10.0.0.0/8", "fd00::/8")
	for _, tc := range []struct {
		name    string
		conn    Conn
		trusted []netip.Prefix
		in      http.Header
		want    http.Header
		client  string
	}{{
		name: "direct client",
		conn: Conn{RemoteAddr: "203.0.113.7:5555", Host: "api.example.com"},
		in:   http.Header{"Accept": {"*/*"}},
		want: http.Header{
			"Accept":            {"*/*"},
			"X-Forwarded-For":   {"203.0.113.7"},
			"X-Forwarded-Proto": {"http"},
			"X-Forwarded-Host":  {"api.example.com"},
		},
		client: "203.0.113.7",
	}, {
		name: "direct client over tls",
		conn: Conn{RemoteAddr: "203.0.113.7:5555", Host: "api.example.com", TLS: true},
		in:   http.Header{},
		want: http.Header{
			"X-Forwarded-For":   {"203.0.113.7"},
			"X-Forwarded-Proto": {"https"},
			"X-Forwarded-Host":  {"api.example.com"},
		},
		client: "203.0.113.7",
	}, {
		name:    "untrusted client spoofing everything",
		conn:    Conn{RemoteAddr: "203.0.113.7:5555", Host: "api.example.com", TLS: true},
		trusted: lb,
		in: http.Header{
			"X-Forwarded-For":   {"10.0.0.1", "127.0.0.1"},
			"X-Forwarded-Proto": {"https"},
			"X-Forwarded-Host":  {"admin.internal"},
			"Forwarded":         {"for=10.0.0.1;proto=https"},
			"X-Real-Ip":         {"10.0.0.1"},
		},
		want: http.Header{
			"X-Forwarded-For":   {"203.0.113.7"},
			"X-Forwarded-Proto": {"https"},
			"X-Forwarded-Host":  {"api.example.com"},
		},
		client: "203.0.113.7",
	}, {
		name: "untrusted proto replaced",
		conn: Conn{RemoteAddr: "203.0.113.7:5555", Host: "h"},
		in:   http.Header{"X-Forwarded-Proto": {"https"}},
		want: http.Header{
			"X-Forwarded-For":   {"203.0.113.7"},
			"X-Forwarded-Proto": {"http"},
			"X-Forwarded-Host":  {"h"},
		},
		client: "203.0.113.7",
	}, {
		name: "untrusted without host",
		conn: Conn{RemoteAddr: "203.0.113.7:5555"},
		in:   http.Header{"X-Forwarded-Host": {"evil"}},
		want: http.Header{
			"X-Forwarded-For":   {"203.0.113.7"},
			"X-Forwarded-Proto": {"http"},
		},
		client: "203.0.113.7",
	}, {
		name: "unparseable remote address",
		conn: Conn{RemoteAddr: "@", Host: "h"},
		in:   http.Header{"X-Forwarded-For": {"1.2.3.4"}},
		want: http.Header{
			"X-Forwarded-Proto": {"http"},
			"X-Forwarded-Host":  {"h"},
		},
		client: "invalid IP",
	}, {
		name:    "trusted proxy",
		conn:    Conn{RemoteAddr: "10.1.2.3:40000", Host: "gw.internal"},
		trusted: lb,
		in: http.Header{
			"X-Forwarded-For":   {"198.51.100.9"},
			"X-Forwarded-Proto": {"https"},
			"X-Forwarded-Host":  {"shop.example.com"},
			"X-Real-Ip":         {"198.51.100.9"},
		},
		want: http.Header{
			"X-Forwarded-For":   {"198.51.100.9, 10.1.2.3"},
			"X-Forwarded-Proto": {"https"},
			"X-Forwarded-Host":  {"shop.example.com"},
			"X-Real-Ip":         {"198.51.100.9"},
		},
		client: "198.51.100.9",
	}, {
		name:    "trusted proxy sending nothing",
		conn:    Conn{RemoteAddr: "10.1.2.3:40000", Host: "gw.internal", TLS: true},
		trusted: lb,
		in:      http.Header{"X-Forwarded-Proto": {""}},
		want: http.Header{
			"X-Forwarded-For":   {"10.1.2.3"},
			"X-Forwarded-Proto": {"https"},
			"X-Forwarded-Host":  {"gw.internal"},
		},
		client: "10.1.2.3",
	}, {
		name:    "trusted proxy, several header lines and blanks",
		conn:    Conn{RemoteAddr: "10.1.2.3:40000", Host: "h"},
		trusted: lb,
		in:      http.Header{"X-Forwarded-For": {"198.51.100.9, 10.9.9.9", " ", "10.0.0.5"}},
		want: http.Header{
			"X-Forwarded-For":   {"198.51.100.9, 10.9.9.9, 10.0.0.5, 10.1.2.3"},
			"X-Forwarded-Proto": {"http"},
			"X-Forwarded-Host":  {"h"},
		},
		client: "198.51.100.9",
	}, {
		name:    "trusted proxy with Forwarded",
		conn:    Conn{RemoteAddr: "10.1.2.3:40000", Host: "h", TLS: true},
		trusted: lb,
		in:      http.Header{"Forwarded": {`for=198.51.100.9;proto=https`, `for="[2001:db8::1]"`}},
		want: http.Header{
			"Forwarded":         {`for=198.51.100.9;proto=https, for="[2001:db8::1]", for=10.1.2.3;proto=https`},
			"X-Forwarded-For":   {"10.1.2.3"},
			"X-Forwarded-Proto": {"https"},
			"X-Forwarded-Host":  {"h"},
		},
		client: "10.1.2.3",
	}, {
		name:    "trusted IPv6 proxy with Forwarded",
		conn:    Conn{RemoteAddr: "[fd00::7]:40000", Host: "h"},
		trusted: lb,
		in:      http.Header{"Forwarded": {"for=198.51.100.9"}, "X-Forwarded-For": {"198.51.100.9"}},
		want: http.Header{
			"Forwarded":         {`for=198.51.100.9, for="[fd00::7]";proto=http`},
			"X-Forwarded-For":   {"198.51.100.9, fd00::7"},
			"X-Forwarded-Proto": {"http"},
			"X-Forwarded-Host":  {"h"},
		},
		client: "198.51.100.9",
	}, {
		name:    "IPv4-mapped peer is unmapped, then trusted",
		conn:    Conn{RemoteAddr: "[::ffff:10.1.2.3]:40000", Host: "h"},
		trusted: lb,
		in:      http.Header{"X-Forwarded-For": {"198.51.100.9"}},
		want: http.Header{
			"X-Forwarded-For":   {"198.51.100.9, 10.1.2.3"},
			"X-Forwarded-Proto": {"http"},
			"X-Forwarded-Host":  {"h"},
		},
		client: "198.51.100.9",
	}, {
		name: "IPv4-mapped untrusted peer",
		conn: Conn{RemoteAddr: "[::ffff:203.0.113.7]:1", Host: "h"},
		in:   http.Header{},
		want: http.Header{
			"X-Forwarded-For":   {"203.0.113.7"},
			"X-Forwarded-Proto": {"http"},
			"X-Forwarded-Host":  {"h"},
		},
		client: "203.0.113.7",
	}, {
		name: "IPv6 peer, zone dropped",
		conn: Conn{RemoteAddr: "[fe80::1%eth0]:1", Host: "h"},
		in:   http.Header{},
		want: http.Header{
			"X-Forwarded-For":   {"fe80::1"},
			"X-Forwarded-Proto": {"http"},
			"X-Forwarded-Host":  {"h"},
		},
		client: "fe80::1",
	}, {
		name: "bare address",
		conn: Conn{RemoteAddr: "2001:db8::2", Host: "h"},
		in:   http.Header{},
		want: http.Header{
			"X-Forwarded-For":   {"2001:db8::2"},
			"X-Forwarded-Proto": {"http"},
			"X-Forwarded-Host":  {"h"},
		},
		client: "2001:db8::2",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.in.Clone()
			client := SetForwarded(h, tc.conn, tc.trusted)
			if !reflect.DeepEqual(h, tc.want) {
				t.Errorf("header\n got %v\nwant %v", h, tc.want)
			}
			if client.String() != tc.client {
				t.Errorf("client = %v, want %v", client, tc.client)
			}
		})
	}
}

// The shared values must survive a caller appending to the headers.
func TestSetForwardedValuesNotShared(t *testing.T) {
	h1, h2 := http.Header{}, http.Header{}
	SetForwarded(h1, Conn{RemoteAddr: "192.0.2.1:1", Host: "a"}, nil)
	SetForwarded(h2, Conn{RemoteAddr: "192.0.2.2:1", Host: "b"}, nil)
	h1.Add("X-Forwarded-For", "x")
	h1.Add("X-Forwarded-Proto", "x")
	h1.Add("X-Forwarded-Host", "x")
	if h2.Get("X-Forwarded-Host") != "b" || len(h2["X-Forwarded-Proto"]) != 1 || len(valHTTP) != 1 || valHTTP[0] != "http" {
		t.Fatalf("appending to one header changed another: %v, %v", h2, valHTTP)
	}
	if got := h1["X-Forwarded-For"]; !reflect.DeepEqual(got, []string{"192.0.2.1", "x"}) {
		t.Fatalf("X-Forwarded-For = %q", got)
	}
}

func TestClientAddr(t *testing.T) {
	trusted := prefixes(t, "10.0.0.0/8", "192.168.1.1/32", "2001:db8::/32")
	for _, tc := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"untrusted peer ignores xff", "203.0.113.1", []string{"1.1.1.1"}, "203.0.113.1"},
		{"trusted peer, no xff", "10.0.0.1", nil, "10.0.0.1"},
		{"one hop", "10.0.0.1", []string{"198.51.100.9"}, "198.51.100.9"},
		{"skips trusted hops", "10.0.0.1", []string{"198.51.100.9, 192.168.1.1, 10.2.2.2"}, "198.51.100.9"},
		{"stops at first untrusted from the right", "10.0.0.1", []string{"6.6.6.6, 198.51.100.9, 10.2.2.2"}, "198.51.100.9"},
		{"across header lines", "10.0.0.1", []string{"6.6.6.6", "198.51.100.9", "10.2.2.2"}, "198.51.100.9"},
		{"all trusted: left-most", "10.0.0.1", []string{"10.0.0.9, 10.0.0.8"}, "10.0.0.9"},
		{"garbage stops the walk", "10.0.0.1", []string{"198.51.100.9, unknown, 10.2.2.2"}, "10.2.2.2"},
		{"garbage right away", "10.0.0.1", []string{"<script>"}, "10.0.0.1"},
		{"blank entries skipped", "10.0.0.1", []string{"198.51.100.9, , ", ""}, "198.51.100.9"},
		{"with port", "10.0.0.1", []string{"198.51.100.9:4711"}, "198.51.100.9"},
		{"bracketed v6", "10.0.0.1", []string{"[2001:db9::1]"}, "2001:db9::1"},
		{"bracketed v6 with port", "10.0.0.1", []string{"[2001:db9::1]:80"}, "2001:db9::1"},
		{"mapped entry unmapped and trusted", "10.0.0.1", []string{"198.51.100.9, ::ffff:10.3.3.3"}, "198.51.100.9"},
		{"mapped peer", "::ffff:10.0.0.1", []string{"198.51.100.9"}, "198.51.100.9"},
		{"v6 hops", "2001:db8::1", []string{"2001:db9::5, 2001:db8::2"}, "2001:db9::5"},
		{"slash-32 exact", "192.168.1.1", []string{"198.51.100.9"}, "198.51.100.9"},
		{"slash-32 miss", "192.168.1.2", []string{"198.51.100.9"}, "192.168.1.2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ClientAddr(netip.MustParseAddr(tc.peer), tc.xff, trusted)
			if got.String() != tc.want {
				t.Errorf("ClientAddr(%s, %q) = %v, want %v", tc.peer, tc.xff, got, tc.want)
			}
		})
	}
	if got := ClientAddr(netip.Addr{}, []string{"1.1.1.1"}, trusted); got.IsValid() {
		t.Errorf("ClientAddr(invalid) = %v", got)
	}
	if got := ClientAddr(netip.MustParseAddr("10.0.0.1"), []string{"1.1.1.1"}, nil); got.String() != "10.0.0.1" {
		t.Errorf("ClientAddr with no trusted = %v", got)
	}
}

func TestStripProxyHeaders(t *testing.T) {
	h := http.Header{
		"Proxy-Authorization": {"Basic Zm9vOmJhcg=="},
		"Proxy-Connection":    {"keep-alive"},
		"Authorization":       {"Bearer t"},
	}
	StripProxyHeaders(h)
	if want := (http.Header{"Authorization": {"Bearer t"}}); !reflect.DeepEqual(h, want) {
		t.Fatalf("got %v, want %v", h, want)
	}
}

func TestSetForwardedAllocs(t *testing.T) {
	h := http.Header{"Accept": {"*/*"}, "User-Agent": {"curl/8"}}
	conn := Conn{RemoteAddr: "203.0.113.7:5555", Host: "api.example.com"}
	trusted := prefixes(t, "10.0.0.0/8")
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		max     float64
	}{{"no trusted proxies", nil, 1}, {"untrusted peer", trusted, 1}} {
		n := testing.AllocsPerRun(100, func() {
			SetForwarded(h, conn, tc.trusted)
			StripProxyHeaders(h)
		})
		if n > tc.max {
			t.Errorf("%s: %v allocations, want at most %v", tc.name, n, tc.max)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		ClientAddr(netip.MustParseAddr("10.0.0.1"), []string{"198.51.100.9, 10.2.2.2"}, trusted)
	}); n != 0 {
		t.Errorf("ClientAddr: %v allocations", n)
	}
}

func BenchmarkSetForwarded(b *testing.B) {
	trusted := prefixes(b, "10.0.0.0/8", "172.16.0.0/12")
	for _, bc := range []struct {
		name    string
		conn    Conn
		trusted []netip.Prefix
		xff     []string
	}{
		{"untrusted/no-proxies", Conn{RemoteAddr: "203.0.113.7:5555", Host: "api.example.com"}, nil, nil},
		{"untrusted/spoofed-xff", Conn{RemoteAddr: "203.0.113.7:5555", Host: "api.example.com"}, trusted, []string{"10.0.0.1"}},
		{"untrusted/ipv6", Conn{RemoteAddr: "[2001:db8::7]:5555", Host: "api.example.com"}, trusted, nil},
		{"trusted/one-hop", Conn{RemoteAddr: "10.1.2.3:40000", Host: "api.example.com"}, trusted, []string{"198.51.100.9"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := http.Header{"Accept": {"*/*"}, "User-Agent": {"curl/8"}}
			b.ReportAllocs()
			for b.Loop() {
				if bc.xff != nil {
					h["X-Forwarded-For"] = bc.xff
				}
				SetForwarded(h, bc.conn, bc.trusted)
			}
		})
	}
	// Baseline: what gateway/headers.go's prepareRequestHeader does today
	// (append to any X-Forwarded-For, trusted or not).
	b.Run("baseline-today", func(b *testing.B) {
		h := http.Header{"Accept": {"*/*"}, "User-Agent": {"curl/8"}}
		r := &http.Request{RemoteAddr: "203.0.113.7:5555", Host: "api.example.com", Header: h}
		b.ReportAllocs()
		for b.Loop() {
			ip, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				ip = r.RemoteAddr
			}
			if prior, ok := h["X-Forwarded-For"]; ok && len(prior) > 0 {
				h["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + ip}
			} else {
				h["X-Forwarded-For"] = []string{ip}
			}
			h["X-Forwarded-Proto"] = valHTTP
			h["X-Forwarded-Host"] = []string{r.Host}
			delete(h, "X-Forwarded-For") // as if each iteration were a new request
		}
	})
}
