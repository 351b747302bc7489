//go:build !wasip1

// The SDK's host emulator is built for the host only: it replaces the proxy_* imports
// with Go functions.

package plexus

import (
	"bytes"
	"io"
	"log"
	"testing"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/plexus-mesh/plexus/sdk/go/plexus/wire"
)

// The SDK's calls through proxywasm.CallForeignFunction, in the upstream SDK's host
// emulator: the path a filter's call takes.
func TestThroughTheSDKsEmulator(t *testing.T) {
	w := log.Writer()
	log.SetOutput(io.Discard) // the emulator logs every foreign call
	t.Cleanup(func() { log.SetOutput(w) })
	host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(&types.DefaultVMContext{}))
	defer reset()
	var got []byte
	host.RegisterForeignFunction(wire.FuncRateLimit, func(args []byte) []byte {
		got = bytes.Clone(args)
		return wire.AppendDecisions(nil, []wire.Decision{{Allowed: true, Remaining: 4}, {Cached: true, RetryAfter: time.Second}})
	})
	limits := []Limit{{Key: "x", Rate: 5, Period: time.Second, Cost: 1}, {Key: "y", Rate: 1, Period: time.Minute, Burst: 2, Cost: 1}}
	ds, err := RateLimitMany(limits)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, wire.AppendLimits(nil, limits)) {
		t.Errorf("the host got %x", got)
	}
	if !ds[0].Allowed || ds[0].Remaining != 4 || ds[1].Allowed || !ds[1].Cached || ds[1].RetryAfter != time.Second {
		t.Errorf("decisions %+v", ds)
	}
}
