package main

import (
	"testing"

	"github.com/plexus-mesh/plexus/sdk/go/plexustest"
)

// The same cases natively in the SDK's emulator, and compiled in a real plexus.
func TestFilter(t *testing.T) {
	cases := []plexustest.Case{
		{Name: "passes", Upstream: map[string]string{"x-hello": "world", "x-count": "1"}},
		{Name: "denied", Header: [][2]string{{"x-deny", "yes"}}, Status: 403, Body: "denied\n"},
	}
	plexustest.Emulate(t, newPlugin, nil, cases)
	plexustest.Gateway(t, plexustest.Build(t, "."), nil, cases)
}
