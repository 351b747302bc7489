package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"time"
)

// adminHandler serves the admin listener:
//
//	/healthz  200 while the process serves (liveness)
//	/ready    200 once listening, 503 while draining (readiness: take it out of rotation)
//	/config   the active config, secrets redacted, with its version and load time
//	/routes   the active routes in match order, with what each one does
//	/filters  each Wasm filter: module, digest, ABI, instances, memory, failures
//	/debug/pprof/  Go's runtime profiles (CPU, heap, goroutines, execution trace)
func (g *Gateway) adminHandler() http.Handler {
	mux := http.NewServeMux()
	// Go's profiles, as Envoy's admin has /cpuprofiler and /heapprofiler: where a gateway's
	// CPU goes under real traffic is something operators and we need to see.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch {
		case g.draining.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("draining\n"))
		case !g.started.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("starting\n"))
		default:
			w.Write([]byte("ready\n"))
		}
	})
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, r *http.Request) {
		s := g.snap.Load()
		writeJSON(w, map[string]any{
			"version": s.version,
			"loaded":  s.loaded.UTC().Format(time.RFC3339Nano),
			"file":    s.cfg.File(),
			"config":  s.cfg.Redacted(),
		})
	})
	mux.HandleFunc("GET /routes", func(w http.ResponseWriter, r *http.Request) {
		s := g.snap.Load()
		routes := make([]any, len(s.routes))
		for i, rt := range s.routes {
			routes[i] = rt.cfg.RouteView()
		}
		writeJSON(w, map[string]any{"version": s.version, "routes": routes})
	})
	mux.HandleFunc("GET /filters", func(w http.ResponseWriter, r *http.Request) {
		s := g.snap.Load()
		out := make([]any, 0, len(s.cfg.Filters))
		for _, fc := range s.cfg.Filters {
			f := s.filters[fc.Name]
			st := f.plugin.Stats()
			failures := st.Failures
			if failures == nil {
				failures = map[string]int{}
			}
			out = append(out, map[string]any{
				"name":         fc.Name,
				"module":       fc.Module,
				"digest":       f.plugin.Digest(),
				"abi":          f.plugin.ABIVersion(),
				"failure":      fc.Failure,
				"instances":    st.Instances,
				"in_use":       st.InUse,
				"memory_bytes": st.MemoryBytes,
				"failures":     failures,
				"restarts":     st.Restarts,
			})
		}
		writeJSON(w, map[string]any{"version": s.version, "filters": out})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
