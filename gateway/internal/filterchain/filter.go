package filterchain

import (
	"context"

	"go.opentelemetry.io/otel/attribute"

	"github.com/plexus-mesh/plexus/gateway/internal/telemetry"
	"github.com/plexus-mesh/plexus/runtime/proxywasm"
)

// Filter is a loaded Wasm filter of a snapshot. A filter whose declaration and module did not
// change is carried over by a reload, with its warm instances.
type Filter struct {
	Name     string
	Key      string // everything that makes two declarations the same filter
	Plugin   *proxywasm.Plugin
	FailOpen bool
	Source   string // where the module came from: its file, or oci://REF@DIGEST
	Digest   string // an oci:// module's manifest digest; "" for a file

	// Unavailable is why the module could not be had (a pull that failed, with no good
	// module before it): Plugin is nil, and every stream meets the filter's failure
	// policy, open (the filter is left out) or closed (503).
	Unavailable error

	spanNames [NumPhases]string               // "filter NAME on_request_headers"...
	durations [NumPhases]*telemetry.Histogram // time in each callback
}

// Instrument names the filter's spans and binds its duration series, once per filter.
// With metrics disabled (durations nil) only the span names are set.
func (f *Filter) Instrument(durations *telemetry.HistogramVec) {
	if f.spanNames[0] != "" {
		return // carried over from the previous snapshot
	}
	for ph := range NumPhases {
		f.spanNames[ph] = "filter " + f.Name + " " + PhaseNames[ph]
		if durations == nil {
			continue
		}
		f.durations[ph] = durations.With(telemetry.Key{A: f.Name, B: PhaseNames[ph]}, func(k telemetry.Key) []attribute.KeyValue {
			return []attribute.KeyValue{attribute.String("plexus.filter", k.A), attribute.String("plexus.phase", k.B)}
		})
	}
}

// Durations are the filter's time per callback, by phase; nil where metrics are off.
func (f *Filter) Durations() [NumPhases]*telemetry.Histogram { return f.durations }

// Phase is a filter callback phase, as metrics and spans name it.
type Phase uint8

const (
	PhaseRequestHeaders Phase = iota
	PhaseRequestBody
	PhaseRequestTrailers
	PhaseResponseHeaders
	PhaseResponseBody
	PhaseResponseTrailers
	NumPhases
)

// PhaseNames are the phases' callback names.
var PhaseNames = [NumPhases]string{"on_request_headers", "on_request_body", "on_request_trailers", "on_response_headers", "on_response_body", "on_response_trailers"}

// NewStream starts the filter on a stream; an unavailable filter fails, as a *Failure of
// kind FailUnavailable.
func (f *Filter) NewStream(ctx context.Context, info *proxywasm.StreamInfo) (*proxywasm.Stream, error) {
	if f.Plugin == nil {
		return nil, &proxywasm.Failure{Filter: f.Name, Kind: proxywasm.FailUnavailable, Err: f.Unavailable}
	}
	return f.Plugin.NewStream(ctx, info)
}

// Close closes the filter's plugin, if it has one.
func (f *Filter) Close() {
	if f.Plugin != nil {
		f.Plugin.Close()
	}
}

// Stats are the filter's pool's; zero for an unavailable filter.
func (f *Filter) Stats() proxywasm.PluginStats {
	if f.Plugin == nil {
		return proxywasm.PluginStats{}
	}
	return f.Plugin.Stats()
}
