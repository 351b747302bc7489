package h1

import (
	"net/http"
	"testing"
	"time"
)

// deliberate lists the corpus cases where this server and net/http's disagree on
// purpose: each one net/http accepts and this server refuses (see the package doc).
var deliberate = map[string]string{
	"HTTP/1.2":                   "RFC 9110 section 2.5 lets a server serve an unknown 1.x as 1.1; the gateway answers only the versions it implements",
	"asterisk GET":               "RFC 9112 section 3.2.4: the asterisk-form is for OPTIONS only",
	"absolute-form without host": "an absolute-form target names the origin (RFC 9112 section 3.2.2); http:/x names none",
	"authority-form GET":         "RFC 9112 section 3.2.3: the authority-form is for CONNECT only (net/http takes example.com as a scheme)",
	"CONNECT origin-form":        "RFC 9112 section 3.2.3: CONNECT takes the authority-form (net/http allows a path for net/rpc)",
	"obs-fold":                   "RFC 9112 section 5.2 allows refusing obs-fold; a proxy in front may unfold it differently",
	"Host with bad port":         "a Host is uri-host [:port] (RFC 9110 section 7.2) and a port is digits; net/http checks only the bytes",
	"head over the limit":        "net/http allows MaxHeaderBytes plus 4 KiB; this server MaxHeaderBytes exactly",
	"501 fields":                 "a 431 past 500 fields bounds the header map's size apart from its bytes",
	"CL and TE":                  "request smuggling: RFC 9112 section 6.1 allows refusing it, and Envoy does; net/http lets Transfer-Encoding win",
	"TE and CL":                  "as CL and TE",
	"TE in HTTP/1.0":             "net/http ignores Transfer-Encoding in HTTP/1.0 and reads no body, so the chunked body would be the next request",
	"CONNECT without Host":       "RFC 9112 section 3.2: every HTTP/1.1 request has a Host; net/http exempts CONNECT",
	"CONNECT without port":       "RFC 9112 section 3.2.3: the authority-form has a port",
	"chunk size 64 bits":         "a chunk size must fit in 63 bits; net/http takes it and waits for 2^63 bytes",
	"chunk extension CTL":        "a chunk extension is tokens and quoted strings (RFC 9112 section 7.1.1), no control bytes",
	"trailer obs-fold":           "trailer fields are checked as header fields are; net/http drops a bad trailer section silently",
	"trailer bad name":           "as trailer obs-fold",
	"chunk size space":           "no whitespace may follow a chunk size but before an extension (RFC 9112 section 7.1.1); net/http trims it",
}

// TestDifferential sends the corpus to this server and to net/http's, both with the
// same handler and MaxHeaderBytes, and checks that they agree on accepting (a status
// below 400) or refusing each request, but for the deliberate differences, which must
// differ.
func TestDifferential(t *testing.T) {
	h := &recorder{}
	ours, _ := serve(t, h, func(s *Server) { s.MaxHeaderBytes = strictMaxHeader })
	theirs := serveNetHTTP(t, h, func(s *http.Server) { s.MaxHeaderBytes = strictMaxHeader })
	for _, tc := range rawCases {
		t.Run(tc.name, func(t *testing.T) {
			a, as := accepts(t, ours, tc.raw)
			b, bs := accepts(t, theirs, tc.raw)
			why, differs := deliberate[tc.name]
			switch {
			case differs && a == b:
				t.Errorf("listed as a deliberate difference (%s), but both answer alike (%s, net/http %s)", why, as, bs)
			case !differs && a != b:
				t.Errorf("this server %s, net/http %s", as, bs)
			}
		})
	}
}

// accepts sends raw to addr and reports whether the answer is a success, or none
// comes because the server waits for more of the request, and what it was.
func accepts(t *testing.T, addr, raw string) (bool, string) {
	c := newClient(t, addr)
	c.send(raw)
	c.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, _, err := c.read(methodOf(raw))
	if isTimeout(err) {
		return true, "no answer (waiting for more)"
	}
	if err != nil {
		return false, "closed (" + err.Error() + ")"
	}
	return resp.StatusCode < 400, resp.Status
}
