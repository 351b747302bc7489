package h1

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

var targets = []string{
	"/", "/a/b", "/a?b", "/a?", "/a??", "/?", "/a?b?", "/a?b#c", "/a#b", "//a/b", "///a",
	"/a:b@c", "/$&+,;=", "/a b", "/a%20b", "/a%2Fb", "/a%zz", "/é", "/a?é", "/a\x7f", "/a?\x01",
	"/a!b", "/a'b", "/(x)", "/*", "/~user/a_b-c.d", "/a?x=1&y=%zz", "/a\"b", "/a<b>", "/a[b]", "/a{b}",
	"/a|b", "/a\\b", "/a^b", "/a`b",
}

// TestParseOriginForm checks the fast path against url.ParseRequestURI.
func TestParseOriginForm(t *testing.T) {
	for _, target := range targets {
		want, wantErr := url.ParseRequestURI(target)
		got, gotErr := parseOriginForm(target, new(url.URL))
		if (wantErr != nil) != (gotErr != nil) {
			t.Errorf("%q: error %v, url.ParseRequestURI's %v", target, gotErr, wantErr)
			continue
		}
		if wantErr == nil && *got != *want {
			t.Errorf("%q: %#v, url.ParseRequestURI's %#v", target, got, want)
		}
	}
}

func FuzzParseOriginForm(f *testing.F) {
	for _, target := range targets {
		f.Add(target)
	}
	f.Fuzz(func(t *testing.T, target string) {
		if len(target) == 0 || target[0] != '/' {
			return
		}
		want, wantErr := url.ParseRequestURI(target)
		got, gotErr := parseOriginForm(target, new(url.URL))
		if (wantErr != nil) != (gotErr != nil) || wantErr == nil && *got != *want {
			t.Fatalf("%q: %#v %v, url.ParseRequestURI's %#v %v", target, got, gotErr, want, wantErr)
		}
	})
}

func TestCanonicalKey(t *testing.T) {
	for _, name := range []string{
		"host", "Host", "HOST", "content-length", "x-forwarded-for", "X-FORWARDED-FOR", "x--y",
		"-x", "a", "A", "user-agent", "Www-Authenticate", "www-authenticate", "x_y", "1a-b", "a-1b",
		"!#$%&'*+-.^_`|~", "sec-ch-ua", "te",
	} {
		got, _ := canonicalKey(name, nil)
		if want := http.CanonicalHeaderKey(name); got != want {
			t.Errorf("%q: %q, http.CanonicalHeaderKey's %q", name, got, want)
		}
	}
}

func TestValidHost(t *testing.T) {
	for _, tc := range []struct {
		host     string
		needPort bool
		ok       bool
	}{
		{"", false, true}, {"a", false, true}, {"a.example:80", false, true}, {"a:", false, true},
		{"127.0.0.1:8080", false, true}, {"[::1]", false, true}, {"[::1]:443", false, true},
		{"[v1.x]", false, false}, {"a%41", false, true}, {"a%4", false, false},
		{"a b", false, false}, {"a/b", false, false}, {"u@a", false, false}, {"a:b", false, false},
		{"a:123456", false, false}, {"[::1", false, false}, {"[::1]x", false, false}, {"a:1:2", false, false},
		{"a:443", true, true}, {"a", true, false}, {"a:", true, false}, {":443", true, false}, {"[::1]:1", true, true},
	} {
		if got := validHost(tc.host, tc.needPort); got != tc.ok {
			t.Errorf("validHost(%q, %v) = %v, want %v", tc.host, tc.needPort, got, tc.ok)
		}
	}
}

func TestParseContentLength(t *testing.T) {
	for s, want := range map[string]int64{
		"0": 0, "5": 5, "007": 7, "9223372036854775807": 1<<63 - 1,
		"9223372036854775808": -1, "": -1, "+1": -1, "-1": -1, "1 ": -1, "0x1": -1, "1_0": -1,
	} {
		n, ok := parseContentLength(s)
		if !ok {
			n = -1
		}
		if n != want {
			t.Errorf("parseContentLength(%q) = %d, want %d", s, n, want)
		}
	}
}

func TestStatusLine(t *testing.T) {
	for code, want := range map[int]string{
		200: "HTTP/1.1 200 OK\r\n", 404: "HTTP/1.1 404 Not Found\r\n", 599: "HTTP/1.1 599 status 599\r\n",
	} {
		if got := string(appendStatusLine(nil, true, code)); got != want {
			t.Errorf("%d: %q, want %q", code, got, want)
		}
	}
	if got := fmt.Sprintf("%q", appendStatusLine(nil, false, 103)); got != `"HTTP/1.0 103 Early Hints\r\n"` {
		t.Errorf("HTTP/1.0: %s", got)
	}
}

// FuzzParseRequest feeds heads to the parser: it must not panic, and what it accepts
// must be framed one way only.
func FuzzParseRequest(f *testing.F) {
	for _, tc := range rawCases {
		f.Add(tc.raw)
	}
	// An empty Host is a Host (RFC 9112 section 3.2: what a client sends for a target URI
	// with an empty authority), whatever the case of its name.
	f.Add("0 / HTTP/1.1\nHosT:\n\n")
	f.Fuzz(func(t *testing.T, raw string) {
		end, _ := headEnd([]byte(raw), 0)
		if end < 0 {
			return
		}
		c := &conn{srv: &Server{}, ctx: context.Background()}
		ex, perr := c.parseRequest(raw[:end])
		if perr != nil {
			return
		}
		r := ex.req
		switch {
		case r.ContentLength == -1 && len(r.TransferEncoding) != 1,
			r.ContentLength >= 0 && r.TransferEncoding != nil,
			r.Header["Transfer-Encoding"] != nil, r.Header["Host"] != nil,
			len(r.Header["Content-Length"]) > 1,
			r.ProtoMinor == 1 && r.Host == "" && r.URL.Host == "" && !contains(strings.ToLower(raw[:end]), "\nhost:"):
			t.Fatalf("%q: accepted as %+v", raw[:end], r)
		}
	})
}
