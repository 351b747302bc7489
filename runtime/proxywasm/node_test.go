package proxywasm

import (
	"strings"
	"testing"
)

// TestNodeProperties: node.id, node.cluster and node.metadata with paths into it, as the
// config's node: declares them, from a stream and from the root context, and under
// xds.node too. Strings come raw, numbers and booleans as their text, maps and lists as
// JSON.
func TestNodeProperties(t *testing.T) {
	r := newRuntime(t)
	node := Node{
		ID:      "gw-1",
		Cluster: "edge",
		Metadata: map[string]any{
			"region":   "eu-west-1",
			"replicas": 3,
			"ratio":    0.5,
			"canary":   true,
			"nothing":  nil,
			"labels":   map[string]any{"tier": "gold", "team": map[string]any{"name": "core"}},
			"zones":    []any{"a", "b"},
		},
	}
	p := loadWAT(t, r, hostcallsWAT, Config{Name: "node", Node: node}, &fakeHost{})
	h := newHC(t, p, &StreamInfo{})
	get := func(path string) (uint32, string) {
		pp, pn := h.put(strings.ReplaceAll(path, ".", "\x00"))
		st := h.call("proxy_get_property", pp, pn, outPtr, outSize)
		if st != statusOK {
			return st, ""
		}
		return st, h.result()
	}
	found := []struct{ path, want string }{
		{"node.id", "gw-1"},
		{"node.cluster", "edge"},
		{"node.metadata.region", "eu-west-1"},
		{"node.metadata.replicas", "3"},
		{"node.metadata.ratio", "0.5"},
		{"node.metadata.canary", "true"},
		{"node.metadata.labels.tier", "gold"},
		{"node.metadata.labels.team.name", "core"},
		{"node.metadata.zones.1", "b"},
		{"node.metadata.labels", `{"team":{"name":"core"},"tier":"gold"}`},
		{"node.metadata.zones", `["a","b"]`},
		{"node.metadata", `{"canary":true,"labels":{"team":{"name":"core"},"tier":"gold"},"nothing":null,"ratio":0.5,"region":"eu-west-1","replicas":3,"zones":["a","b"]}`},
		{"node", `{"cluster":"edge","id":"gw-1","metadata":{"canary":true,"labels":{"team":{"name":"core"},"tier":"gold"},"nothing":null,"ratio":0.5,"region":"eu-west-1","replicas":3,"zones":["a","b"]}}`},
		{"xds.node.id", "gw-1"},
		{"xds.node.metadata.labels.tier", "gold"},
	}
	absent := []string{"node.metadata.nope", "node.metadata.nothing", "node.metadata.region.deeper",
		"node.metadata.zones.2", "node.metadata.zones.x", "node.locality", "xds.node.nope"}
	check := func(where string) {
		t.Helper()
		for _, f := range found {
			if st, got := get(f.path); st != statusOK || got != f.want {
				t.Errorf("%s: %s = %d %q, want %q", where, f.path, st, got, f.want)
			}
		}
		for _, path := range absent {
			if st, got := get(path); st != statusNotFound {
				t.Errorf("%s: %s = %d %q, want NOT_FOUND", where, path, st, got)
			}
		}
	}
	check("in a stream")
	h.expect("to the root context", h.call("proxy_set_effective_context", uint64(h.i.rootID)), statusOK)
	check("in the root context")

	// Without an id of its own, node.id is the host's.
	p2 := loadWAT(t, r, hostcallsWAT, Config{Name: "node-2", Node: Node{Cluster: "edge"}}, &fakeHost{})
	h2 := newHC(t, p2, &StreamInfo{})
	pp, pn := h2.put("node\x00id")
	h2.expect("node.id", h2.call("proxy_get_property", pp, pn, outPtr, outSize), statusOK)
	if got := h2.result(); got != "node-1" {
		t.Errorf("node.id without one configured = %q, want the host's node-1", got)
	}
	pp, pn = h2.put("node\x00metadata")
	h2.expect("node.metadata without any", h2.call("proxy_get_property", pp, pn, outPtr, outSize), statusNotFound)
}
