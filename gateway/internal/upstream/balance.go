package upstream

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/plexus-mesh/plexus/gateway/config"
)

// balancer picks an endpoint of a cluster for one attempt: key is the request's hash
// (hashed says whether it has one: consistent-hash balancers spread requests without one
// at random), avoid the endpoint that just failed (picked again only when it is the one
// healthy endpoint). Endpoints that are down are passed over; nil means every endpoint is.
type balancer interface {
	pick(eps []*Endpoint, key uint64, hashed bool, avoid *Endpoint, at moment) *Endpoint
}

func newBalancer(policy string, eps []*Endpoint) balancer {
	switch policy {
	case config.BalanceLeastRequest:
		return leastRequest{}
	case config.BalanceRandom:
		return newWeightedRandom(eps)
	case config.BalanceRingHash:
		return newRing(eps)
	case config.BalanceMaglev:
		return newMaglev(eps)
	}
	return newRoundRobin(eps)
}

// moment is when a pick is made (unix nanos), and whether the cluster is in panic mode.
type moment struct {
	now   int64
	panic bool
}

// up reports whether ep may be picked at: not in its connect-failure back-off, and, unless
// the cluster panics, neither failing its health checks nor ejected as an outlier.
func up(ep *Endpoint, at moment) bool {
	return ep.DownUntil.Load() <= at.now && (at.panic || ep.healthy(at.now))
}

// roundRobin walks a schedule in which each endpoint stands as often as its weight,
// interleaved (smooth weighted round robin, computed once): lock-free, one atomic add a
// pick.
type roundRobin struct {
	schedule []int32
	next     atomic.Uint64
}

// maxSchedule bounds the weighted schedule; weights whose sum is larger are scaled down.
const maxSchedule = 1 << 14

func newRoundRobin(eps []*Endpoint) *roundRobin {
	weights := make([]int64, len(eps))
	var total int64
	for i, ep := range eps {
		weights[i] = int64(ep.Weight)
		total += weights[i]
	}
	if total > maxSchedule {
		for i := range weights {
			weights[i] = max(1, weights[i]*maxSchedule/total)
		}
		total = 0
		for _, w := range weights {
			total += w
		}
	}
	rr := &roundRobin{schedule: make([]int32, 0, total)}
	current := make([]int64, len(eps))
	for range total {
		best := 0
		for i := range current {
			current[i] += weights[i]
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		rr.schedule = append(rr.schedule, int32(best))
	}
	return rr
}

func (rr *roundRobin) pick(eps []*Endpoint, _ uint64, _ bool, avoid *Endpoint, at moment) *Endpoint {
	return walk(eps, rr.schedule, rr.next.Add(1)-1, avoid, at)
}

// leastRequest is the power of two choices: of two healthy endpoints picked at random, the
// one with fewer requests in flight for its weight (Envoy's LEAST_REQUEST).
type leastRequest struct{}

func (leastRequest) pick(eps []*Endpoint, _ uint64, _ bool, avoid *Endpoint, at moment) *Endpoint {
	n := len(eps)
	if n == 0 {
		return nil
	}
	if n == 1 {
		if up(eps[0], at) {
			return eps[0]
		}
		return nil
	}
	a := other(eps, nil, avoid, at)
	if a == nil {
		return firstUp(eps, avoid, at)
	}
	b := other(eps, a, avoid, at)
	if b == nil || load(a) <= load(b) {
		return a
	}
	return b
}

// other is a healthy endpoint other than not and avoid, from a random place on: nil when
// there is none.
func other(eps []*Endpoint, not, avoid *Endpoint, at moment) *Endpoint {
	n := len(eps)
	start := rand.IntN(n)
	for i := range n {
		ep := eps[(start+i)%n]
		if up(ep, at) && ep != not && ep != avoid {
			return ep
		}
	}
	return nil
}

// load is an endpoint's requests in flight over its weight, scaled to compare in integers.
func load(ep *Endpoint) int64 {
	return (ep.Stats.Active.Load() + 1) * config.MaxEndpointWeight / int64(ep.Weight)
}

// firstUp is the first healthy endpoint that is not avoid, else avoid if it is up.
func firstUp(eps []*Endpoint, avoid *Endpoint, at moment) *Endpoint {
	return walk(eps, nil, 0, avoid, at)
}

// walk goes round order (indexes into eps; nil: eps as they are) from start, and returns
// the first endpoint that is up and not avoid, else avoid if it is up, else nil.
func walk(eps []*Endpoint, order []int32, start uint64, avoid *Endpoint, at moment) *Endpoint {
	n := uint64(len(order))
	if order == nil {
		n = uint64(len(eps))
	}
	var fallback *Endpoint
	for i := range n {
		k := (start + i) % n
		if order != nil {
			k = uint64(order[k])
		}
		ep := eps[k]
		switch {
		case !up(ep, at):
		case ep == avoid:
			fallback = ep
		default:
			return ep
		}
	}
	return fallback
}

// weightedRandom picks at random, in proportion to weight.
type weightedRandom struct{ cumul []uint64 }

func newWeightedRandom(eps []*Endpoint) *weightedRandom {
	w := &weightedRandom{}
	var sum uint64
	for _, ep := range eps {
		sum += uint64(ep.Weight)
		w.cumul = append(w.cumul, sum)
	}
	return w
}

func (w *weightedRandom) pick(eps []*Endpoint, _ uint64, _ bool, avoid *Endpoint, at moment) *Endpoint {
	if len(w.cumul) == 0 {
		return nil
	}
	total := w.cumul[len(w.cumul)-1]
	for range 2 * len(eps) {
		i, _ := slices.BinarySearch(w.cumul, rand.Uint64N(total)+1)
		if ep := eps[i]; up(ep, at) && ep != avoid {
			return ep
		}
	}
	return firstUp(eps, avoid, at)
}

// ring is consistent hashing on a ring (Envoy's RING_HASH, Karger et al.): each endpoint
// stands at ringPoints points per unit of weight, hashed from its address; a key goes to the
// first point at or after it, or on, past endpoints that are down. The same endpoints make
// the same ring in every replica; one gone moves only its own keys.
type ring struct {
	points []uint64
	owner  []int32 // of each point, an index into the endpoints
}

const ringPoints = 160

func newRing(eps []*Endpoint) *ring {
	type point struct {
		h   uint64
		own int32
	}
	var ps []point
	for i, ep := range eps {
		for k := range int(ep.Weight) * ringPoints {
			ps = append(ps, point{xxhash.Sum64String(ep.Addr + "_" + strconv.Itoa(k)), int32(i)})
		}
	}
	slices.SortFunc(ps, func(a, b point) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return int(a.own - b.own)
	})
	r := &ring{points: make([]uint64, len(ps)), owner: make([]int32, len(ps))}
	for i, p := range ps {
		r.points[i], r.owner[i] = p.h, p.own
	}
	return r
}

func (r *ring) pick(eps []*Endpoint, key uint64, hashed bool, avoid *Endpoint, at moment) *Endpoint {
	if len(r.points) == 0 {
		return nil
	}
	if !hashed {
		key = rand.Uint64()
	}
	start, _ := slices.BinarySearch(r.points, key)
	return walk(eps, r.owner, uint64(start), avoid, at)
}

// maglev is Maglev hashing (Eisenbud et al., NSDI 2016; Envoy's MAGLEV): a lookup table of
// a prime size that each endpoint fills in the order of its own permutation, as often as its
// weight says: even shares, and few keys move when the endpoints change.
type maglev struct{ table []int32 }

const maglevSize = 65537

func newMaglev(eps []*Endpoint) *maglev {
	if len(eps) == 0 {
		return &maglev{}
	}
	m := &maglev{table: make([]int32, maglevSize)}
	for i := range m.table {
		m.table[i] = -1
	}
	n := len(eps)
	offset, skip, next := make([]uint64, n), make([]uint64, n), make([]uint64, n)
	var maxWeight uint32
	for i, ep := range eps {
		offset[i] = xxhash.Sum64String(ep.Addr) % maglevSize
		skip[i] = xxhash.Sum64String(ep.Addr+"#skip")%(maglevSize-1) + 1
		maxWeight = max(maxWeight, ep.Weight)
	}
	// Weighted: in round r an endpoint takes an entry while it has taken fewer than
	// weight/maxWeight of r, so that the shares follow the weights.
	taken := make([]uint64, n)
	filled := 0
	for round := uint64(1); filled < maglevSize; round++ {
		for i, ep := range eps {
			if taken[i]*uint64(maxWeight) >= uint64(ep.Weight)*round {
				continue
			}
			for {
				c := (offset[i] + next[i]*skip[i]) % maglevSize
				next[i]++
				if m.table[c] < 0 {
					m.table[c] = int32(i)
					taken[i]++
					filled++
					break
				}
			}
			if filled == maglevSize {
				break
			}
		}
	}
	return m
}

func (m *maglev) pick(eps []*Endpoint, key uint64, hashed bool, avoid *Endpoint, at moment) *Endpoint {
	if len(m.table) == 0 {
		return nil
	}
	if !hashed {
		key = rand.Uint64()
	}
	return walk(eps, m.table, key%maglevSize, avoid, at)
}
