package route

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/gateway/config"
)

func TestJoinPrefix(t *testing.T) {
	for _, tc := range []struct{ prefix, rest, want string }{
		{"/v2", "/x", "/v2/x"},
		{"/v2/", "/x", "/v2/x"},
		{"/v2", "", "/v2"},
		{"/v2", "x", "/v2/x"},
		{"/v2/", "x", "/v2/x"},
		{"/", "/x", "/x"},
		{"/v2", "?q=1", "/v2?q=1"},
	} {
		if got := joinPrefix(tc.prefix, tc.rest); got != tc.want {
			t.Errorf("joinPrefix(%q, %q) = %q, want %q", tc.prefix, tc.rest, got, tc.want)
		}
	}
}

func TestRequestHost(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":        "example.com",
		"Example.COM:8080":   "example.com",
		"example.com.":       "example.com",
		"[::1]:8443":         "::1",
		"[::1]":              "::1",
		"127.0.0.1:80":       "127.0.0.1",
		"api.Example.com.:1": "api.example.com",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = in
		if got := RequestHost(r); got != want {
			t.Errorf("RequestHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHostPatterns(t *testing.T) {
	for _, tc := range []struct {
		hosts []string
		match []string // request hosts (as RequestHost gives them) that match
		miss  []string
	}{
		{[]string{"Example.com:8080"}, []string{"example.com"}, []string{"www.example.com", "example.org"}},
		{[]string{"*.example.com"}, []string{"a.example.com", "a.b.example.com"}, []string{"example.com", ".example.com"}},
		{[]string{"*-canary"}, []string{"web-canary", "a.b-canary"}, []string{"-canary", "canary", "web-canary.x"}},
		{[]string{"api.*"}, []string{"api.example.com", "api.internal"}, []string{"api.", "api", "www.api.example.com"}},
		{[]string{"*"}, []string{"anything", "127.0.0.1"}, nil},
		{[]string{"[::1]:8443", "a.*"}, []string{"::1", "a.b"}, []string{"::2", "b.a"}},
	} {
		r := &Route{}
		r.setHosts(tc.hosts)
		for _, h := range tc.match {
			req := httptest.NewRequest("GET", "/", nil)
			if !r.Matches(req, h, "/") {
				t.Errorf("hosts %q do not match %q", tc.hosts, h)
			}
		}
		for _, h := range tc.miss {
			req := httptest.NewRequest("GET", "/", nil)
			if r.Matches(req, h, "/") {
				t.Errorf("hosts %q match %q", tc.hosts, h)
			}
		}
	}
}

func TestGRPCMatch(t *testing.T) {
	timeout := time.Duration(0)
	method := Compile(&config.Route{Name: "m", Timeout: &timeout, Match: config.Match{GRPC: &config.GRPCMatch{Service: "shop.v1.Orders", Method: "Get"}}}, nil, nil)
	service := Compile(&config.Route{Name: "s", Timeout: &timeout, Match: config.Match{GRPC: &config.GRPCMatch{Service: "shop.v1.Orders"}}}, nil, nil)
	req := func(path, ct string) *http.Request {
		r := httptest.NewRequest("POST", path, nil)
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		return r
	}
	for _, tc := range []struct {
		path, ct        string
		method, service bool
	}{
		{"/shop.v1.Orders/Get", "application/grpc", true, true},
		{"/shop.v1.Orders/Get", "application/grpc+proto", true, true},
		{"/shop.v1.Orders/Get", "application/grpc-web-text", true, true},
		{"/shop.v1.Orders/List", "application/grpc", false, true},
		{"/shop.v1.Orders/Get", "application/json", false, false}, // not a gRPC call
		{"/shop.v1.Orders/Get", "", false, false},
		{"/shop.v1.Orders/", "application/grpc", false, false}, // no method
		{"/shop.v1.Orders/Get/x", "application/grpc", false, false},
		{"/shop.v1.OrdersX/Get", "application/grpc", false, false},
		{"/shop.v1/Orders/Get", "application/grpc", false, false},
	} {
		r := req(tc.path, tc.ct)
		if got := method.Matches(r, "", tc.path); got != tc.method {
			t.Errorf("method route, %s %q: %v", tc.path, tc.ct, got)
		}
		if got := service.Matches(r, "", tc.path); got != tc.service {
			t.Errorf("service route, %s %q: %v", tc.path, tc.ct, got)
		}
	}
	if method.Template != "/shop.v1.Orders/Get" || service.Template != "/shop.v1.Orders/*" {
		t.Errorf("templates %q %q", method.Template, service.Template)
	}
}

func TestRetryOnGRPC(t *testing.T) {
	on := ParseRetryOn([]string{config.RetryUnavailable, config.RetryResourceExhausted, config.Retry5xx})
	for code, want := range map[int]bool{0: false, 1: false, 4: false, 8: true, 13: false, 14: true, 99: false, -1: false} {
		if got := on.RetriesGRPC(code); got != want {
			t.Errorf("code %d: %v", code, got)
		}
	}
	if !on.Any5xx {
		t.Error("5xx lost")
	}
}
