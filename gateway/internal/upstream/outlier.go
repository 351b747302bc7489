package upstream

import (
	"context"
	"math"
	"time"

	"github.com/plexus-mesh/plexus/gateway/config"
)

// Why an endpoint was ejected (ClusterStats.Ejections' index).
const (
	EjectConsecutive5xx = iota
	EjectConsecutiveGateway
	EjectSuccessRate
	numEjectReasons
)

// EjectReasons name the reasons, as metrics and logs do.
var EjectReasons = [numEjectReasons]string{"consecutive_5xx", "consecutive_gateway_failure", "success_rate"}

// outlier is a backend's outlier detection (passive health, as Envoy's): the router tells
// it how each attempt went (Observe); it ejects an endpoint whose answers fail too often
// in a row at once, and on every interval ejects those whose success rate is an outlier,
// ends the ejections that ran out, and lets the ejection multiple of the endpoints that
// stayed in fall back.
type outlier struct {
	cons5xx, consGateway int32
	interval             time.Duration
	base, max            time.Duration
	maxPercent           int
	srHosts, srVolume    int
	srFactor             float64
	successRate          bool
	now                  func() time.Time
	tick                 func(time.Duration) <-chan time.Time
}

func newOutlier(o *config.Outlier) *outlier {
	d := &outlier{consGateway: int32(o.ConsecutiveGatewayFailure), interval: o.Interval, base: o.BaseEjectionTime,
		max: o.MaxEjectionTime, maxPercent: o.MaxEjectionPercent, now: time.Now, tick: time.After}
	if o.Consecutive5xx != nil {
		d.cons5xx = int32(*o.Consecutive5xx)
	}
	if sr := o.SuccessRate; sr != nil {
		d.successRate, d.srHosts, d.srVolume, d.srFactor = true, sr.MinimumHosts, sr.RequestVolume, sr.StdevFactor
	}
	return d
}

// Observe tells outlier detection how an attempt on ep went: its status, or local (the
// gateway could not connect, or the exchange was reset or timed out) when there is none.
// Without outlier_detection it does nothing.
func (b *Cluster) Observe(ep *Endpoint, status int, local bool) {
	o := b.outlier
	if o == nil {
		return
	}
	failed5xx := local || status >= 500
	ep.srTotal.Add(1)
	if failed5xx {
		ep.srFailed.Add(1)
	}
	gateway := local || status == 502 || status == 503 || status == 504
	if o.cons5xx > 0 {
		if failed5xx {
			if ep.cons5xx.Add(1) >= o.cons5xx {
				b.eject(ep, EjectConsecutive5xx)
			}
		} else if ep.cons5xx.Load() != 0 {
			ep.cons5xx.Store(0)
		}
	}
	if o.consGateway > 0 {
		if gateway {
			if ep.consGateway.Add(1) >= o.consGateway {
				b.eject(ep, EjectConsecutiveGateway)
			}
		} else if ep.consGateway.Load() != 0 {
			ep.consGateway.Store(0)
		}
	}
}

// eject takes ep out of the rotation for base_ejection_time times the number of its
// ejections in a row (at most max_ejection_time), unless it is out already or
// max_ejection_percent of the endpoints are (one may always be).
func (b *Cluster) eject(ep *Endpoint, why int) bool {
	o := b.outlier
	b.mu.Lock()
	defer b.mu.Unlock()
	now := o.now()
	if ep.ejectedUntil.Load() > now.UnixNano() {
		return false
	}
	eps := b.set.Load().eps
	ejected := 0
	for _, e := range eps {
		if e.ejectedUntil.Load() > now.UnixNano() {
			ejected++
		}
	}
	if ejected > 0 && (ejected+1)*100 > o.maxPercent*len(eps) {
		return false
	}
	n := ep.ejections.Add(1)
	d := min(o.base*time.Duration(n), o.max)
	ep.ejectedUntil.Store(now.Add(d).UnixNano())
	ep.cons5xx.Store(0)
	ep.consGateway.Store(0)
	b.Stats.Ejections[why].Add(1)
	b.healthChanged()
	b.log.Warn("endpoint ejected", "backend", b.Name, "endpoint", ep.Addr, "reason", EjectReasons[why], "for", d, "ejections_in_a_row", n)
	return true
}

// Ejected reports whether ep is ejected now, and until when.
func (ep *Endpoint) Ejected() (time.Time, bool) {
	u := ep.ejectedUntil.Load()
	if u == 0 || u <= time.Now().UnixNano() {
		return time.Time{}, false
	}
	return time.Unix(0, u), true
}

// HealthCheckFailed reports whether the health checks hold ep out.
func (ep *Endpoint) HealthCheckFailed() bool { return ep.hcFailed.Load() }

// run is the interval's work, until ctx ends.
func (o *outlier) run(ctx context.Context, b *Cluster) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.tick(o.interval):
		}
		o.sweep(b)
	}
}

// sweep is one interval: ejections that ran out end (the endpoint's multiple stays, and
// falls by one each interval it then stays in), and success rates are compared.
func (o *outlier) sweep(b *Cluster) {
	now := o.now().UnixNano()
	eps := b.set.Load().eps
	type rate struct {
		ep   *Endpoint
		rate float64
	}
	var rates []rate
	for _, ep := range eps {
		total, failed := ep.srTotal.Swap(0), ep.srFailed.Swap(0)
		switch u := ep.ejectedUntil.Load(); {
		case u != 0 && u <= now:
			ep.ejectedUntil.Store(0)
			b.healthChanged()
			b.log.Info("endpoint back from ejection", "backend", b.Name, "endpoint", ep.Addr)
		case u == 0 && ep.ejections.Load() > 0:
			ep.ejections.Add(-1)
		}
		if o.successRate && total >= int64(o.srVolume) && ep.ejectedUntil.Load() == 0 {
			rates = append(rates, rate{ep, float64(total-failed) / float64(total)})
		}
	}
	if !o.successRate || len(rates) < o.srHosts {
		return
	}
	var mean float64
	for _, r := range rates {
		mean += r.rate
	}
	mean /= float64(len(rates))
	var variance float64
	for _, r := range rates {
		variance += (r.rate - mean) * (r.rate - mean)
	}
	threshold := mean - o.srFactor*math.Sqrt(variance/float64(len(rates)))
	for _, r := range rates {
		if r.rate < threshold {
			b.eject(r.ep, EjectSuccessRate)
		}
	}
}
