package gateway

import (
	"context"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/gateway/internal/telemetry"
)

// inUse reports whether a loaded config (the one in force, or the one being built) runs
// the module of manifest digest d: the module cache never evicts it.
func (g *Gateway) inUse(d digest.Digest) bool {
	for _, s := range []*snapshot{g.snap.Load(), g.building.Load()} {
		if s == nil {
			continue
		}
		for _, f := range s.filters {
			if f.Digest == string(d) {
				return true
			}
		}
	}
	return false
}

// refreshPulls runs until ctx ends: every registry.refresh_interval it resolves the tags
// of filters under pull_policy Always and retries the filters whose pull failed; a new
// digest, pulled and verified, or a pull that now succeeds, is swapped in as a reload
// swaps a config: requests in flight finish on the old module, new ones get the new.
func (g *Gateway) refreshPulls(ctx context.Context) {
	for {
		s := g.snap.Load()
		wait := s.cfg.Registry.RefreshInterval
		if wait <= 0 {
			wait = config.DefaultRefreshInterval
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		g.refreshOnce(ctx, s)
	}
}

// refreshOnce checks s's oci:// filters once, and reloads s's config if one changed.
func (g *Gateway) refreshOnce(ctx context.Context, s *snapshot) {
	type change struct {
		filter, ref string
		from, to    digest.Digest
	}
	var changes []change
	retry := false
	for i := range s.cfg.Filters {
		fc := &s.cfg.Filters[i]
		ref, ok := strings.CutPrefix(fc.Module, "oci://")
		if !ok {
			continue
		}
		f := s.filters[fc.Name]
		if f != nil && f.Unavailable != nil {
			// Pulled now, it is cached (and a tag held): the reload loads it from there.
			if _, err := g.oci.fetch(ctx, s.cfg, fc); err == nil {
				retry = true
			}
			continue
		}
		if fc.PullPolicy != config.PullAlways || strings.Contains(ref, "@") || f == nil {
			continue
		}
		d, err := g.oci.resolve(ctx, s.cfg, ref)
		if err != nil {
			g.log.Warn("registry: cannot check the tag for a new digest; the loaded module serves on", "filter", fc.Name, "ref", ref, "digest", f.Digest, "error", err)
			continue
		}
		if string(d) == f.Digest || g.oci.isBad(ref, d) {
			continue
		}
		changes = append(changes, change{fc.Name, ref, digest.Digest(f.Digest), d})
	}
	if len(changes) == 0 && !retry {
		return
	}
	for _, c := range changes {
		g.oci.release(c.ref) // the reload pulls the tag again, and holds it at what it finds
	}
	if err := g.reloadFrom(s); err != nil {
		for _, c := range changes {
			g.oci.hold(c.ref, c.from)
			g.oci.markBad(c.ref, c.to)
			g.log.Error("registry: the tag's new digest did not load; the previous module serves on", "filter", c.filter, "ref", c.ref,
				"digest", c.from, "refused", c.to, "error", err)
		}
		return
	}
	cur := g.snap.Load()
	for _, c := range changes {
		if f := cur.filters[c.filter]; f != nil && f.Digest != string(c.from) {
			g.log.Info("registry: swapped in a new digest", "filter", c.filter, "ref", c.ref, "from", c.from, "to", f.Digest)
			if g.inst != nil {
				g.inst.Swaps.With(telemetry.Key{A: c.filter}, filterAttrs).Add(1)
			}
		}
	}
}
