package gateway

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"regexp"
	"strings"
	"time"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/gateway/internal/filterchain"
	"github.com/plexus-mesh/plexus/gateway/internal/telemetry"
	"github.com/plexus-mesh/plexus/gateway/internal/upstream"
)

// adminHandler serves the admin listener:
//
//	/healthz  200 while the process serves (liveness)
//	/ready    200 once listening, 503 while draining (readiness: take it out of rotation)
//	/config   the active config, secrets and filter configs redacted, with its version and load time
//	/routes   the active routes in match order, with what each one does
//	/filters  each Wasm filter: module, digest, ABI, instances, memory, failures, time per callback
//	/clusters each backend: circuit breaker, and each endpoint's health and counters
//	/stats    every metric, one line per series (?filter=REGEX, ?format=json)
//	/metrics  every metric as Prometheus text (unless telemetry.metrics.prometheus is false)
//	/debug/pprof/  Go's runtime profiles (CPU, heap, goroutines, execution trace), with admin.pprof
//
// What admin.pprof and admin.show_filter_config say is read from the active snapshot on each
// request, so a reload turns them on and off.
func (g *Gateway) adminHandler() http.Handler {
	mux := http.NewServeMux()
	// Go's profiles, as Envoy's admin has /cpuprofiler and /heapprofiler: where a gateway's
	// CPU goes under real traffic is something operators and we need to see. Off by default:
	// a CPU profile or a trace costs the gateway while it runs, and a goroutine dump shows
	// what requests are doing, to anyone who can reach the admin listener.
	for pattern, h := range map[string]http.HandlerFunc{
		"GET /debug/pprof/":        pprof.Index,
		"GET /debug/pprof/profile": pprof.Profile,
		"GET /debug/pprof/trace":   pprof.Trace,
	} {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if !g.snap.Load().cfg.Admin.Pprof {
				http.Error(w, "404 page not found (profiles are served with admin.pprof: true)", http.StatusNotFound)
				return
			}
			h(w, r)
		})
	}
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
		routes := make([]any, len(s.Routes))
		for i, rt := range s.Routes {
			routes[i] = rt.Cfg.RouteView()
		}
		writeJSON(w, map[string]any{"version": s.version, "routes": routes})
	})
	mux.HandleFunc("GET /filters", func(w http.ResponseWriter, r *http.Request) {
		s := g.snap.Load()
		out := make([]any, 0, len(s.cfg.Filters))
		for _, fc := range s.cfg.Filters {
			f := s.filters[fc.Name]
			st := f.Stats()
			failures := st.Failures
			if failures == nil {
				failures = map[string]int{}
			}
			v := map[string]any{
				"name":         fc.Name,
				"module":       fc.Module,
				"source":       f.Source,
				"failure":      fc.Failure,
				"instances":    st.Instances,
				"in_use":       st.InUse,
				"waiting":      st.Waiting,
				"memory_bytes": st.MemoryBytes,
				"host_bytes":   st.HostBytes,
				"failures":     failures,
				"restarts":     st.Restarts,
				"callbacks":    callbackStats(f),
			}
			if f.Plugin != nil {
				v["digest"], v["abi"] = f.Plugin.Digest(), f.Plugin.ABIVersion()
			}
			if f.Digest != "" {
				v["manifest_digest"] = f.Digest // the oci:// artifact's
			}
			if f.Unavailable != nil {
				v["unavailable"] = f.Unavailable.Error()
			}
			out = append(out, v)
		}
		writeJSON(w, map[string]any{"version": s.version, "filters": out})
	})
	if h := g.metrics.Prometheus(); h != nil {
		mux.Handle("GET /metrics", h)
	}
	if g.inst != nil {
		mux.HandleFunc("GET /stats", g.serveStats)
	}
	mux.HandleFunc("GET /clusters", g.serveClusters)
	return mux
}

// warnRemoteAdmin logs, once at start, that the admin listener bound at addr is open to other
// hosts: config validation lets that happen only with admin.allow_remote, and an operator
// reading the log should still see it.
func (g *Gateway) warnRemoteAdmin(addr net.Addr) {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || tcp.IP.IsLoopback() {
		return
	}
	g.log.Warn("admin listener is reachable from other hosts: it has no authentication, and /config, /clusters and /filters are open to anyone who reaches it; keep it behind a firewall, or bind it to a loopback address",
		"address", addr.String(), "allow_remote", g.snap.Load().cfg.Admin.AllowRemote)
}

// callbackStats is how often each of a filter's callbacks ran, and its mean time, its
// median and 99th percentile (upper bounds, from the histogram's buckets) and the longest.
func callbackStats(f *filterchain.Filter) map[string]any {
	out := map[string]any{}
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	for ph, h := range f.Durations() {
		if h == nil {
			continue // metrics are disabled
		}
		if n := h.Count(); n > 0 {
			out[filterchain.PhaseNames[ph]] = map[string]any{
				"calls":   n,
				"mean_us": float64(h.Sum()) / float64(n) / 1e3,
				"p50_us":  us(h.Quantile(0.5)),
				"p99_us":  us(h.Quantile(0.99)),
				"max_us":  us(h.Max()),
			}
		}
	}
	return out
}

// serveStats shows every metric, as Envoy's /stats does: a line per series, or JSON.
func (g *Gateway) serveStats(w http.ResponseWriter, r *http.Request) {
	var filter *regexp.Regexp
	if f := r.URL.Query().Get("filter"); f != "" {
		var err error
		if filter, err = regexp.Compile(f); err != nil {
			http.Error(w, "filter: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	rm, err := g.metrics.Collect(r.Context())
	if err != nil {
		http.Error(w, "collecting metrics: "+err.Error(), http.StatusInternalServerError)
		return
	}
	lines := telemetry.Lines(&rm, filter)
	if r.URL.Query().Get("format") == "json" {
		writeJSON(w, map[string]any{"stats": lines})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	telemetry.WriteText(w, lines)
}

// endpointView is an endpoint as /clusters shows it.
type endpointView struct {
	Address         string   `json:"address"`
	Weight          uint32   `json:"weight"`
	Health          string   `json:"health"`       // healthy, or Envoy's health flags: /failed_active_hc, /failed_outlier_check
	Flags           []string `json:"health_flags"` // each reason it is out of the rotation
	EjectedUntil    string   `json:"ejected_until,omitempty"`
	SlowStart       float64  `json:"slow_start_share,omitempty"` // its share of its weight while in slow start
	ConsecutiveFail int32    `json:"consecutive_connect_failures"`
	RqTotal         int64    `json:"rq_total"`
	RqActive        int64    `json:"rq_active"`
	RqError         int64    `json:"rq_error"`
	RqTimeout       int64    `json:"rq_timeout"`
	CxConnectFail   int64    `json:"cx_connect_fail"`
}

// clusterView is a backend as /clusters shows it.
type clusterView struct {
	Name             string           `json:"name"`
	Protocol         string           `json:"protocol"`
	Balance          string           `json:"balance"`
	Discovery        string           `json:"discovery"`
	MaxRequests      int64            `json:"max_requests"`
	MaxConnections   int              `json:"max_connections"`
	MaxPending       int              `json:"max_pending_requests"`
	MaxRetries       int64            `json:"max_retries"` // with a retry budget, what it allows now
	Pending          int              `json:"pending_requests"`
	Active           int64            `json:"active_requests"`
	RetriesActive    int64            `json:"active_retries"`
	Overflows        int64            `json:"overflows"`
	PendingOverflows int64            `json:"pending_overflows"`
	RetryOverflows   int64            `json:"retry_overflows"`
	Panic            bool             `json:"panic"`
	BecameHealthy    int64            `json:"health_transitions_healthy"`
	BecameUnhealthy  int64            `json:"health_transitions_unhealthy"`
	Ejections        map[string]int64 `json:"ejections"`
	EndpointsAdded   int64            `json:"endpoints_added"`
	EndpointsRemoved int64            `json:"endpoints_removed"`
	Endpoints        []endpointView   `json:"endpoints"`
}

// clusterViews is every backend of s as /clusters shows it.
func clusterViews(s *snapshot) []clusterView {
	now := time.Now()
	var out []clusterView
	for _, bc := range s.cfg.Backends {
		b := s.backends[bc.Name]
		cb := bc.CircuitBreaker
		cv := clusterView{Name: b.Name, Protocol: bc.Protocol, Balance: bc.Balance, Discovery: config.DiscoveryStatic,
			MaxRequests: b.MaxActive, MaxConnections: cb.MaxConnections, MaxPending: cb.MaxPendingRequests, MaxRetries: b.RetryLimit(), Pending: b.Pending(),
			Active: b.Active.Load(), RetriesActive: b.Retries(), Overflows: b.Overflows.Load(),
			PendingOverflows: b.Stats.PendingOverflows.Load(), RetryOverflows: b.Stats.RetryOverflows.Load(), Panic: b.Panicking(),
			BecameHealthy: b.Stats.BecameHealthy.Load(), BecameUnhealthy: b.Stats.BecameUnhealthy.Load(), Ejections: map[string]int64{},
			EndpointsAdded: b.Stats.Added.Load(), EndpointsRemoved: b.Stats.Removed.Load(), Endpoints: []endpointView{}}
		if bc.Discovery != nil {
			cv.Discovery = bc.Discovery.Type
		}
		for i, why := range upstream.EjectReasons {
			cv.Ejections[why] = b.Stats.Ejections[i].Load()
		}
		for _, ep := range b.Endpoints() {
			v := endpointView{Address: ep.Addr, Weight: ep.Weight, Flags: []string{}, ConsecutiveFail: ep.Fails(),
				RqTotal: ep.Stats.Total.Load(), RqActive: ep.Stats.Active.Load(), RqError: ep.Stats.Errors.Load(),
				RqTimeout: ep.Stats.Timeouts.Load(), CxConnectFail: ep.Stats.ConnectFailures.Load()}
			if ep.HealthCheckFailed() {
				v.Flags = append(v.Flags, "/failed_active_hc")
			}
			// Ejected as an outlier, or refused a connection just now and out for a
			// back-off (Envoy reports its local-origin ejections the same way).
			until, _ := ep.Ejected()
			if down := time.Unix(0, ep.DownUntil.Load()); down.After(now) && down.After(until) {
				until = down
			}
			if !until.IsZero() {
				v.Flags = append(v.Flags, "/failed_outlier_check")
				v.EjectedUntil = until.UTC().Format(time.RFC3339Nano)
			}
			v.Health = "healthy"
			if len(v.Flags) > 0 {
				v.Health = strings.Join(v.Flags, "")
			}
			if f := b.SlowStartFactor(ep); f < 1 {
				v.SlowStart = f
			}
			cv.Endpoints = append(cv.Endpoints, v)
		}
		out = append(out, cv)
	}
	return out
}

// serveClusters shows each backend and its endpoints, as Envoy's /clusters does: lines of
// backend::endpoint::stat::value, or JSON with ?format=json.
func (g *Gateway) serveClusters(w http.ResponseWriter, r *http.Request) {
	s := g.snap.Load()
	out := clusterViews(s)
	if r.URL.Query().Get("format") == "json" {
		writeJSON(w, map[string]any{"version": s.version, "clusters": out})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for _, c := range out {
		p := c.Name + "::"
		fmt.Fprintf(w, "%scircuit_breakers::max_requests::%d\n%scircuit_breakers::max_connections::%d\n", p, c.MaxRequests, p, c.MaxConnections)
		fmt.Fprintf(w, "%scircuit_breakers::max_pending_requests::%d\n%scircuit_breakers::max_retries::%d\n", p, c.MaxPending, p, c.MaxRetries)
		fmt.Fprintf(w, "%sactive_requests::%d\n%sactive_retries::%d\n%spending_requests::%d\n", p, c.Active, p, c.RetriesActive, p, c.Pending)
		fmt.Fprintf(w, "%soverflows::%d\n%spending_overflows::%d\n%sretry_overflows::%d\n", p, c.Overflows, p, c.PendingOverflows, p, c.RetryOverflows)
		fmt.Fprintf(w, "%spanic::%t\n%sdiscovery::%s\n", p, c.Panic, p, c.Discovery)
		for _, why := range upstream.EjectReasons {
			fmt.Fprintf(w, "%sejections::%s::%d\n", p, why, c.Ejections[why])
		}
		for _, e := range c.Endpoints {
			p := c.Name + "::" + e.Address + "::"
			fmt.Fprintf(w, "%shealth_flags::%s\n%sweight::%d\n%srq_total::%d\n%srq_active::%d\n%srq_error::%d\n%srq_timeout::%d\n%scx_connect_fail::%d\n",
				p, e.Health, p, e.Weight, p, e.RqTotal, p, e.RqActive, p, e.RqError, p, e.RqTimeout, p, e.CxConnectFail)
		}
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
