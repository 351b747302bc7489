//go:build wasip1

// Command request_counter counts each client's requests in the current window with
// plexus's shared counters (sdk/go/plexus): one counter per client, shared by every
// replica of the gateway through Redis when the gateway has redis:, in process when not.
// The count goes back to the client in x-request-count; GET /request-count reads it
// without counting (plexus.Get).
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"strconv"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/plexus-mesh/plexus/sdk/go/plexus"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

// config is the plugin configuration: {"header": "x-client", "window": "1m"}. Without a
// header, clients are told apart by their address.
type config struct {
	Header string `json:"header"`
	Window string `json:"window"`
}

type plugin struct {
	types.DefaultPluginContext
	header string
	window time.Duration
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	c := config{Window: "1m"}
	if size > 0 {
		raw, err := proxywasm.GetPluginConfiguration()
		if err == nil {
			err = json.Unmarshal(raw, &c)
		}
		if err != nil {
			proxywasm.LogCriticalf("request_counter: plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	w, err := time.ParseDuration(c.Window)
	if err != nil || w < time.Millisecond {
		proxywasm.LogCriticalf("request_counter: window %q: want a duration of 1ms or more", c.Window)
		return types.OnPluginStartStatusFailed
	}
	p.header, p.window = c.Header, w
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{p: p} }

type stream struct {
	types.DefaultHttpContext
	p     *plugin
	count string
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	key := s.client()
	if path, _ := proxywasm.GetHttpRequestHeader(":path"); path == "/request-count" {
		n, found, err := plexus.Get(key)
		switch {
		case err != nil:
			s.count = "error"
		case !found:
			s.count = "0"
		default:
			s.count = strconv.FormatInt(n, 10)
		}
		proxywasm.SendHttpResponse(200, [][2]string{{"x-request-count", s.count}}, nil, -1)
		return types.ActionPause
	}
	n, err := plexus.Incr(key, 1, s.p.window)
	if err != nil {
		// The store is down: the request goes on uncounted (or, with the filter's
		// redis_failure: closed, the gateway has answered 503 already). The gateway logs
		// why, now and then.
		s.count = "error"
		return types.ActionContinue
	}
	s.count = strconv.FormatInt(n, 10)
	return types.ActionContinue
}

// client is the counter's key: the configured header's value (hashed when long, so that
// any value makes a key), else the client's IP address, each in a namespace of its own so
// that a header cannot name an address's counter.
func (s *stream) client() string {
	if s.p.header != "" {
		if v, err := proxywasm.GetHttpRequestHeader(s.p.header); err == nil && v != "" {
			if len(v) > 64 {
				sum := sha256.Sum256([]byte(v))
				v = "sha256:" + hex.EncodeToString(sum[:])
			}
			return "requests:header:" + v
		}
	}
	addr, err := proxywasm.GetProperty([]string{"source", "address"})
	if err != nil {
		return "requests:ip:unknown"
	}
	if host, _, err := net.SplitHostPort(string(addr)); err == nil {
		return "requests:ip:" + host
	}
	return "requests:ip:" + string(addr)
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	proxywasm.ReplaceHttpResponseHeader("x-request-count", s.count)
	return types.ActionContinue
}
