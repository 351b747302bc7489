package upstream

import (
	"context"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/plexus-mesh/plexus/gateway/config"
)

// Source feeds a backend its endpoints, each time they change (discovery.Source).
type Source interface {
	Run(ctx context.Context, update func([]config.Endpoint))
}

// Start runs what the backend does in the background: health checks, outlier detection's
// interval, and discovery (src; nil for the endpoints the config lists). It runs once: a
// backend carried over by a reload is started already. Close stops it all.
//
// A backend whose endpoints are discovered waits, up to firstWait, for the first set, so
// that a gateway that starts does not answer its first requests with 503.
func (b *Cluster) Start(log *slog.Logger, src Source) {
	b.mu.Lock()
	if b.started {
		b.mu.Unlock()
		return
	}
	b.started = true
	if log != nil {
		b.log = log
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.ctx, b.stop = ctx, cancel
	if b.health != nil {
		for _, ep := range b.set.Load().eps {
			b.health.start(ctx, ep)
		}
	}
	if b.outlier != nil {
		b.bg.Go(func() { b.outlier.run(ctx, b) })
	}
	if src == nil {
		b.mu.Unlock()
		return
	}
	first := make(chan struct{})
	var once sync.Once
	b.bg.Go(func() {
		src.Run(ctx, func(eps []config.Endpoint) {
			b.SetEndpoints(eps)
			once.Do(func() { close(first) })
		})
	})
	b.mu.Unlock()
	t := time.NewTimer(firstWait)
	defer t.Stop()
	select {
	case <-first:
	case <-t.C:
		b.log.Warn("backend: discovery has found no endpoints yet; requests get 503 until it does", "backend", b.Name, "waited", firstWait)
	}
}

// firstWait bounds how long Start waits for discovery's first set.
const firstWait = 3 * time.Second

// SetEndpoints makes specs the backend's endpoints, as discovery found them. Endpoints
// that stay keep their connections, health and counters; new ones start health checks
// (and, with slow start, a growing share); those gone are drained: they take no new
// requests, and their connections close as their requests end.
func (b *Cluster) SetEndpoints(specs []config.Endpoint) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.set.Load()
	byAddr := make(map[string]*Endpoint, len(old.eps))
	for _, ep := range old.eps {
		byAddr[ep.Addr] = ep
	}
	now := time.Now().UnixNano()
	ctx := b.ctx // nil until Start
	eps := make([]*Endpoint, 0, len(specs))
	kept := map[*Endpoint]bool{}
	added := 0
	for _, spec := range specs {
		prev := byAddr[spec.Address]
		if prev != nil && kept[prev] {
			continue // the same address twice
		}
		if prev != nil && config.SameEndpoint(prev.spec, spec) {
			eps = append(eps, prev)
			kept[prev] = true
			continue
		}
		ep := b.newEndpoint(spec)
		if prev != nil {
			// Its weight or metadata changed: the same endpoint to its backend, so its
			// connections and health carry over.
			kept[prev] = true
			if ep.pool != nil {
				ep.pool.Close()
			}
			ep.pool = prev.pool
			ep.hcFailed.Store(prev.hcFailed.Load())
			ep.ejectedUntil.Store(prev.ejectedUntil.Load())
			ep.DownUntil.Store(prev.DownUntil.Load())
			b.health.stopEndpoint(prev)
		} else {
			added++
			if b.slow != nil && b.seeded {
				// Not the first set: those a backend starts with start at full weight.
				ep.warmFrom.Store(now)
			}
		}
		if ctx != nil && b.health != nil {
			b.health.start(ctx, ep)
		}
		eps = append(eps, ep)
	}
	removed := 0
	for _, ep := range old.eps {
		if !kept[ep] {
			removed++
			b.health.stopEndpoint(ep)
			if ep.pool != nil {
				ep.pool.Close()
			}
		}
	}
	b.set.Store(&hostSet{eps: eps, lb: newBalancer(b.policy, eps)})
	b.seeded = true
	b.healthChanged()
	b.Stats.Added.Add(int64(added))
	b.Stats.Removed.Add(int64(removed))
	if added > 0 || removed > 0 {
		b.log.Info("backend endpoints changed", "backend", b.Name, "endpoints", len(eps), "added", added, "removed", removed)
	}
}

// slowStart is a backend's slow_start: an endpoint's share of traffic over the window after
// it joined is max(min, (elapsed/window)^(1/aggression)) of its weight (Envoy's formula).
type slowStart struct {
	window     time.Duration
	aggression float64
	min        float64
}

// factor is ep's share now, and false once its window is over.
func (s *slowStart) factor(ep *Endpoint, now int64) (float64, bool) {
	from := ep.warmFrom.Load()
	if from == 0 {
		return 1, false
	}
	elapsed := time.Duration(now - from)
	if elapsed >= s.window {
		ep.warmFrom.CompareAndSwap(from, 0)
		return 1, false
	}
	f := math.Pow(max(float64(elapsed), 0)/float64(s.window), 1/s.aggression)
	return max(f, s.min), true
}

// admit says whether a pick of ep stands: always outside its window, else with the
// probability of its share.
func (s *slowStart) admit(ep *Endpoint, now int64) bool {
	f, warming := s.factor(ep, now)
	return !warming || rand.Float64() < f
}

// SlowStartFactor is ep's share of its weight now (1 outside slow start), for /clusters.
func (b *Cluster) SlowStartFactor(ep *Endpoint) float64 {
	if b.slow == nil {
		return 1
	}
	f, _ := b.slow.factor(ep, time.Now().UnixNano())
	return f
}
