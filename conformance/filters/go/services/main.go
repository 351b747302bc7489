// Command services is the host suite's filter for plexus's own host services, on
// sdk/go/plexus over the upstream proxy-wasm-go-sdk: each request increments the counter
// conformance-hits (x-count: the new value, read back with Get as x-count-get), and asks
// two rate limits at once: one it is within (x-within: allowed or denied) and one whose
// cost is over its burst (x-over: the same).
package main

import (
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

type plugin struct{ types.DefaultPluginContext }

func (*plugin) NewHttpContext(uint32) types.HttpContext { return &stream{} }

type stream struct{ types.DefaultHttpContext }

func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
	set := func(name, v string) { proxywasm.AddHttpRequestHeader(name, v) }
	if n, err := plexus.Incr("conformance-hits", 1, 0); err != nil {
		set("x-count", "error: "+err.Error())
	} else {
		set("x-count", strconv.FormatInt(n, 10))
	}
	if n, found, err := plexus.Get("conformance-hits"); err == nil && found {
		set("x-count-get", strconv.FormatInt(n, 10))
	}
	ds, err := plexus.RateLimitMany([]plexus.Limit{
		{Key: "conformance-within", Rate: 10, Period: time.Hour, Cost: 1},
		{Key: "conformance-over", Rate: 1, Period: time.Hour, Burst: 1, Cost: 5},
	})
	if err != nil {
		set("x-within", "error: "+err.Error())
		return types.ActionContinue
	}
	verdict := func(d plexus.Decision) string {
		if d.Allowed {
			return "allowed"
		}
		return "denied"
	}
	set("x-within", verdict(ds[0]))
	set("x-over", verdict(ds[1]))
	return types.ActionContinue
}
