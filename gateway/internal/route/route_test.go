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
