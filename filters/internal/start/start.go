//go:build wasip1

// Package start is how plexus's filters take their configuration: one way for all, so
// that a configuration a filter refuses always says why, in the gateway's load error.
package start

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// Configure hands the plugin configuration (size bytes; {} when there is none, so that a
// filter that needs fields says which) to parse.
// An error is logged at critical, naming the filter, and refuses the plugin's start: the
// gateway's error for the load quotes that line.
func Configure(filter string, size int, parse func(raw []byte) error) types.OnPluginStartStatus {
	var raw []byte
	var err error
	if size > 0 {
		raw, err = proxywasm.GetPluginConfiguration()
	}
	if err == nil {
		if len(raw) == 0 {
			raw = []byte("{}")
		}
		err = parse(raw)
	}
	if err != nil {
		proxywasm.LogCriticalf("%s: configuration: %v", filter, err)
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}
