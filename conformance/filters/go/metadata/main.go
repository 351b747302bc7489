// Command metadata is a test filter on the upstream proxy-wasm-go-sdk that reads its
// route's metadata as filters written for Envoy do, through properties, and tells the
// backend what it read: x-team (xds.route_metadata.filter_metadata.plexus.team, a string),
// x-weight (route_metadata...weight, a double), x-canary (...canary, a boolean) and x-md
// (the whole xds.route_metadata message, base64); and x-sni, the TLS server name the
// client asked for (connection.requested_server_name), x-local-subject and x-local-dns
// (the listener certificate's subject and first DNS name) and x-peer-subject (the client
// certificate's, when it sent one). On the response it sets
// x-grpc-status from response.grpc_status.
package main

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type plugin struct{ types.DefaultPluginContext }

func (*plugin) NewHttpContext(uint32) types.HttpContext { return &stream{} }

type stream struct{ types.DefaultHttpContext }

func (*stream) OnHttpResponseHeaders(int, bool) types.Action {
	if v, err := proxywasm.GetProperty([]string{"response", "grpc_status"}); err == nil && len(v) == 8 {
		proxywasm.AddHttpResponseHeader("x-grpc-status", strconv.FormatInt(int64(binary.LittleEndian.Uint64(v)), 10))
	}
	return types.ActionContinue
}

func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
	if v, err := proxywasm.GetProperty([]string{"xds", "route_metadata", "filter_metadata", "plexus", "team"}); err == nil {
		proxywasm.AddHttpRequestHeader("x-team", string(v))
	}
	if v, err := proxywasm.GetProperty([]string{"route_metadata", "filter_metadata", "plexus", "weight"}); err == nil && len(v) == 8 {
		proxywasm.AddHttpRequestHeader("x-weight", strconv.FormatFloat(math.Float64frombits(binary.LittleEndian.Uint64(v)), 'g', -1, 64))
	}
	if v, err := proxywasm.GetProperty([]string{"route_metadata", "filter_metadata", "plexus", "canary"}); err == nil && len(v) == 1 {
		proxywasm.AddHttpRequestHeader("x-canary", strconv.FormatBool(v[0] == 1))
	}
	if v, err := proxywasm.GetProperty([]string{"connection", "requested_server_name"}); err == nil {
		proxywasm.AddHttpRequestHeader("x-sni", string(v))
	}
	for _, a := range [][2]string{{"subject_local_certificate", "x-local-subject"}, {"dns_san_local_certificate", "x-local-dns"}, {"subject_peer_certificate", "x-peer-subject"}} {
		if v, err := proxywasm.GetProperty([]string{"connection", a[0]}); err == nil {
			proxywasm.AddHttpRequestHeader(a[1], string(v))
		}
	}
	if v, err := proxywasm.GetProperty([]string{"xds", "route_metadata"}); err == nil {
		proxywasm.AddHttpRequestHeader("x-md", base64.StdEncoding.EncodeToString(v))
	}
	return types.ActionContinue
}
