//go:build wasip1

// Package authn is what plexus's authentication filters (api-key, basic-auth, jwt-auth)
// share: the answer to a request they refuse, and how an authenticated consumer is handed
// to the backend.
package authn

import (
	"encoding/json"
	"net/url"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// Deny answers the request with status (401, 403), the challenge as WWW-Authenticate
// when there is one, and a JSON body {"message": message}, as Kong's auth plugins do; the
// request goes no further.
func Deny(status uint32, challenge, message string) types.Action {
	body, _ := json.Marshal(map[string]string{"message": message})
	h := [][2]string{{"content-type", "application/json"}}
	if challenge != "" {
		h = append(h, [2]string{"www-authenticate", challenge})
	}
	if err := proxywasm.SendHttpResponse(status, h, append(body, '\n'), -1); err != nil {
		proxywasm.LogErrorf("refusing a request: %v", err)
	}
	return types.ActionPause
}

// Options are what the authentication filters' configurations share: the request header
// that carries the authenticated consumer to the backend, and whether the credential is
// removed from the request before it goes on.
type Options struct {
	ConsumerHeader  *string `json:"consumer_header"`
	HideCredentials *bool   `json:"hide_credentials"`
}

// Defaults fills in what the configuration left out: x-consumer, and hiding.
func (o *Options) Defaults() {
	if o.ConsumerHeader == nil {
		h := "x-consumer"
		o.ConsumerHeader = &h
	}
	if o.HideCredentials == nil {
		t := true
		o.HideCredentials = &t
	}
}

// Consumer sets header on the request to the authenticated consumer's name, replacing
// any value the client sent: the backend can trust it. No header, no change.
func Consumer(header, name string) {
	if header != "" {
		proxywasm.ReplaceHttpRequestHeader(header, name)
	}
}

// QueryParam is the value of the request's query parameter name, false when it has none
// (or an empty one).
func QueryParam(name string) (string, bool) {
	path, _ := proxywasm.GetHttpRequestHeader(":path")
	_, q, _ := strings.Cut(path, "?")
	vals, err := url.ParseQuery(q)
	if err != nil || vals.Get(name) == "" {
		return "", false
	}
	return vals.Get(name), true
}

// RemoveQueryParam removes every parameter called name from the request's query, leaving
// the others as they were.
func RemoveQueryParam(name string) {
	path, _ := proxywasm.GetHttpRequestHeader(":path")
	p, q, ok := strings.Cut(path, "?")
	if !ok {
		return
	}
	var kept []string
	for _, part := range strings.Split(q, "&") {
		n, _, _ := strings.Cut(part, "=")
		if u, err := url.QueryUnescape(n); err == nil && u == name {
			continue
		}
		kept = append(kept, part)
	}
	if len(kept) > 0 {
		p += "?" + strings.Join(kept, "&")
	}
	proxywasm.ReplaceHttpRequestHeader(":path", p)
}
