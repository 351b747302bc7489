//go:build wasip1

// Command api-key is plexus's API key filter: a request must carry one of the configured
// keys (in a header or a query parameter); the gateway keeps only their SHA-256 hashes and
// compares them in constant time. An authenticated request goes on with its consumer's
// name in a header, its key removed; any other gets 401. See README.md.
package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/plexus-mesh/plexus/filters/internal/start"

	"github.com/plexus-mesh/plexus/filters/internal/authn"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

// source is where a key may be: one of header or query.
type source struct {
	Header string `json:"header"`
	Query  string `json:"query"`
}

type key struct {
	Consumer string `json:"consumer"`
	SHA256   string `json:"sha256"` // hex

	hash []byte
}

type config struct {
	Keys []key    `json:"keys"`
	In   []source `json:"in"`
	authn.Options
	Realm string `json:"realm"`
}

type plugin struct {
	types.DefaultPluginContext
	c config
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	return start.Configure("api-key", size, p.c.parse)
}

func (c *config) parse(raw []byte) error {
	if err := json.Unmarshal(raw, c); err != nil {
		return err
	}
	if len(c.Keys) == 0 {
		return fmt.Errorf("keys: none: no request could pass")
	}
	for i := range c.Keys {
		h, err := hex.DecodeString(c.Keys[i].SHA256)
		if err != nil || len(h) != sha256.Size {
			return fmt.Errorf("keys[%d] (%s): sha256: want 64 hex digits, the SHA-256 of the key", i, c.Keys[i].Consumer)
		}
		c.Keys[i].hash = h
	}
	if len(c.In) == 0 {
		c.In = []source{{Header: "x-api-key"}}
	}
	for i, s := range c.In {
		c.In[i].Header = strings.ToLower(s.Header)
	}
	c.Defaults()
	if c.Realm == "" {
		c.Realm = "plexus"
	}
	return nil
}

// match is the consumer whose key hashes to sum, "" for none. Every key is compared, in
// constant time each: how long it takes says nothing of which key came close.
func (c *config) match(sum []byte) string {
	found := -1
	for i := range c.Keys {
		if subtle.ConstantTimeCompare(sum, c.Keys[i].hash) == 1 {
			found = i
		}
	}
	if found < 0 {
		return ""
	}
	return c.Keys[found].Consumer
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{c: &p.c} }

type stream struct {
	types.DefaultHttpContext
	c *config
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	challenge := fmt.Sprintf("Key realm=%q", s.c.Realm)
	presented, from, ok := s.find()
	if !ok {
		return authn.Deny(401, challenge, "No API key found in request")
	}
	sum := sha256.Sum256([]byte(presented))
	consumer := s.c.match(sum[:])
	if consumer == "" {
		return authn.Deny(401, challenge, "Invalid authentication credentials")
	}
	if *s.c.HideCredentials {
		hide(from)
	}
	authn.Consumer(*s.c.ConsumerHeader, consumer)
	return types.ActionContinue
}

// find is the first key the request carries, where the configuration says to look.
func (s *stream) find() (string, source, bool) {
	for _, src := range s.c.In {
		if src.Header != "" {
			if v, err := proxywasm.GetHttpRequestHeader(src.Header); err == nil && v != "" {
				return v, src, true
			}
			continue
		}
		if v, ok := authn.QueryParam(src.Query); ok {
			return v, src, true
		}
	}
	return "", source{}, false
}

// hide removes the key from where it was found.
func hide(src source) {
	if src.Header != "" {
		proxywasm.RemoveHttpRequestHeader(src.Header)
		return
	}
	authn.RemoveQueryParam(src.Query)
}
