package route

import (
	"net/http/httptest"
	"testing"
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
