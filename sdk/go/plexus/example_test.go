package plexus_test

import (
	"errors"
	"strconv"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/plexus-mesh/plexus/sdk/go/plexus"
)

// Count a client's requests in the current minute, from OnHttpRequestHeaders.
func ExampleIncr() {
	client, err := proxywasm.GetHttpRequestHeader("x-client-id")
	if err != nil {
		return
	}
	n, err := plexus.Incr("minute:"+client, 1, time.Minute)
	if err != nil {
		proxywasm.LogWarnf("counting requests: %v", err)
		return
	}
	proxywasm.AddHttpRequestHeader("x-client-requests-this-minute", strconv.FormatInt(n, 10))
}

func ExampleGet() {
	n, found, err := plexus.Get("deploys")
	switch {
	case err != nil:
		proxywasm.LogWarnf("reading deploys: %v", err)
	case !found:
		proxywasm.LogInfo("no deploys yet")
	default:
		proxywasm.LogInfof("%d deploys", n)
	}
}

// Ten requests per second per API key, in bursts of up to twenty: the body of an
// OnHttpRequestHeaders.
func ExampleRateLimit() {
	apiKey, err := proxywasm.GetHttpRequestHeader("x-api-key")
	if err != nil {
		return // types.ActionContinue: no key, no limit
	}
	d, err := plexus.RateLimit("api-key:"+apiKey, plexus.Limit{Rate: 10, Period: time.Second, Burst: 20, Cost: 1})
	if errors.Is(err, plexus.ErrUnavailable) {
		// redis_failure: closed, and Redis is down: the gateway has answered 503 already.
		return // types.ActionContinue
	}
	if err != nil || d.Allowed {
		return // types.ActionContinue
	}
	retry := (d.RetryAfter + time.Second - 1) / time.Second
	proxywasm.SendHttpResponse(429, [][2]string{{"retry-after", strconv.Itoa(int(retry))}}, []byte("slow down\n"), -1)
	_ = types.ActionPause // what OnHttpRequestHeaders returns after a local reply
}

// A per-client and a global limit, decided in one round trip: the request passes when
// both allow it.
func ExampleRateLimitMany() {
	client, _ := proxywasm.GetHttpRequestHeader("x-client-id")
	ds, err := plexus.RateLimitMany([]plexus.Limit{
		{Key: "client:" + client, Rate: 100, Period: time.Minute, Cost: 1},
		{Key: "global", Rate: 5000, Period: time.Second, Cost: 1},
	})
	if err != nil {
		proxywasm.LogWarnf("rate limit: %v", err)
		return
	}
	for _, d := range ds {
		if !d.Allowed {
			proxywasm.SendHttpResponse(429, nil, []byte("rate limited\n"), -1)
			return
		}
	}
}
