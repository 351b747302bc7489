// Command attrs is a test filter on the upstream proxy-wasm-go-sdk for attributes Envoy's
// filters pass each other and read: configured "set", it sets the property
// plexus_test.user to the request's x-user header; configured "get", it tells the backend
// what it reads of it (x-user, by its path; x-state, as filter_state.wasm.plexus_test.user)
// the request's connection.id (x-conn) and request.total_size (x-total), and its backend's
// metadata plexus.team (x-cluster-team from cluster_metadata, x-xds-cluster-team from
// xds.cluster_metadata), its listener's metadata plexus.zone (x-listener-zone) and
// listener_direction (x-direction); and the
// client what it reads as the response comes: response.flags (x-flags),
// response.code_details (x-details), upstream.request_attempt_count (x-attempts), the
// connection to the backend (x-up-local, x-up-tls, x-up-subject, x-up-dns: its
// upstream.local_address, tls_version, subject_peer_certificate and
// dns_san_peer_certificate), why connecting failed (x-up-failure:
// upstream.transport_failure_reason) and the endpoint's metadata plexus.zone (x-host-zone
// from upstream_host_metadata, x-xds-host-zone from xds.upstream_host_metadata). As the
// stream ends it logs response.backend_latency.
package main

import (
	"encoding/binary"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type plugin struct {
	types.DefaultPluginContext
	set bool
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	conf, _ := proxywasm.GetPluginConfiguration()
	p.set = string(conf) == "set"
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{set: p.set} }

type stream struct {
	types.DefaultHttpContext
	set  bool
	path string
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	if s.set {
		user, _ := proxywasm.GetHttpRequestHeader("x-user")
		if err := proxywasm.SetProperty([]string{"plexus_test.user"}, []byte(user)); err != nil {
			proxywasm.LogCriticalf("attrs: set_property: %v", err)
		}
		return types.ActionContinue
	}
	s.path, _ = proxywasm.GetHttpRequestHeader(":path")
	if v, err := proxywasm.GetProperty([]string{"plexus_test.user"}); err == nil {
		proxywasm.ReplaceHttpRequestHeader("x-user", string(v))
	} else {
		proxywasm.ReplaceHttpRequestHeader("x-user", "("+err.Error()+")")
	}
	if v, err := proxywasm.GetProperty([]string{"filter_state", "wasm.plexus_test.user"}); err == nil {
		proxywasm.AddHttpRequestHeader("x-state", string(v))
	}
	if v, err := proxywasm.GetProperty([]string{"cluster_metadata", "filter_metadata", "plexus", "team"}); err == nil {
		proxywasm.AddHttpRequestHeader("x-cluster-team", string(v))
	}
	if v, err := proxywasm.GetProperty([]string{"xds", "cluster_metadata", "filter_metadata", "plexus", "team"}); err == nil {
		proxywasm.AddHttpRequestHeader("x-xds-cluster-team", string(v))
	}
	if v, err := proxywasm.GetProperty([]string{"listener_metadata", "filter_metadata", "plexus", "zone"}); err == nil {
		proxywasm.AddHttpRequestHeader("x-listener-zone", string(v))
	}
	for _, a := range [][3]string{{"connection", "id", "x-conn"}, {"request", "total_size", "x-total"}, {"listener_direction", "", "x-direction"}} {
		path := []string{a[0], a[1]}
		if a[1] == "" {
			path = path[:1]
		}
		if v, err := proxywasm.GetProperty(path); err == nil && len(v) == 8 {
			proxywasm.AddHttpRequestHeader(a[2], strconv.FormatUint(binary.LittleEndian.Uint64(v), 10))
		}
	}
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	if s.set {
		return types.ActionContinue
	}
	if v, err := proxywasm.GetProperty([]string{"response", "code_details"}); err == nil {
		proxywasm.AddHttpResponseHeader("x-details", string(v))
	}
	for _, a := range [][3]string{{"response", "flags", "x-flags"}, {"upstream", "request_attempt_count", "x-attempts"}} {
		if v, err := proxywasm.GetProperty([]string{a[0], a[1]}); err == nil && len(v) == 8 {
			proxywasm.AddHttpResponseHeader(a[2], strconv.FormatUint(binary.LittleEndian.Uint64(v), 10))
		}
	}
	for _, a := range []struct {
		path   []string
		header string
	}{
		{[]string{"upstream", "local_address"}, "x-up-local"},
		{[]string{"upstream", "tls_version"}, "x-up-tls"},
		{[]string{"upstream", "subject_peer_certificate"}, "x-up-subject"},
		{[]string{"upstream", "dns_san_peer_certificate"}, "x-up-dns"},
		{[]string{"upstream", "transport_failure_reason"}, "x-up-failure"},
		{[]string{"upstream_host_metadata", "filter_metadata", "plexus", "zone"}, "x-host-zone"},
		{[]string{"xds", "upstream_host_metadata", "filter_metadata", "plexus", "zone"}, "x-xds-host-zone"},
	} {
		if v, err := proxywasm.GetProperty(a.path); err == nil {
			proxywasm.AddHttpResponseHeader(a.header, string(v))
		}
	}
	return types.ActionContinue
}

// OnHttpStreamDone logs response.backend_latency, known once the backend's last byte is in.
func (s *stream) OnHttpStreamDone() {
	if s.set {
		return
	}
	if v, err := proxywasm.GetProperty([]string{"response", "backend_latency"}); err == nil && len(v) == 8 {
		proxywasm.LogInfof("attrs: %s backend_latency %d", s.path, binary.LittleEndian.Uint64(v))
	}
}
