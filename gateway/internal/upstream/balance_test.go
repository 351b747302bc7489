package upstream

import (
	"fmt"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/plexus-mesh/plexus/gateway/config"
)

func endpoints(weights ...uint32) []*Endpoint {
	eps := make([]*Endpoint, len(weights))
	for i, w := range weights {
		eps[i] = &Endpoint{Addr: fmt.Sprintf("10.0.0.%d:80", i+1), Weight: w}
	}
	return eps
}

func counts(eps []*Endpoint, n int, pick func(i int) *Endpoint) map[*Endpoint]int {
	c := map[*Endpoint]int{}
	for i := range n {
		c[pick(i)]++
	}
	return c
}

// TestRoundRobin: each endpoint as often as its weight, interleaved; one that is down is
// passed over; avoid is picked only when it is the one up.
func TestRoundRobin(t *testing.T) {
	eps := endpoints(1, 3)
	lb := newBalancer(config.BalanceRoundRobin, eps)
	now := moment{now: time.Now().UnixNano()}
	c := counts(eps, 400, func(int) *Endpoint { return lb.pick(eps, 0, false, nil, now) })
	if c[eps[0]] != 100 || c[eps[1]] != 300 {
		t.Errorf("weights 1:3 over 400 picks: %d, %d", c[eps[0]], c[eps[1]])
	}
	if s := newRoundRobin(eps).schedule; fmt.Sprint(s) != "[1 0 1 1]" {
		t.Errorf("schedule %v, want the heavy one interleaved: [1 0 1 1]", s)
	}
	eps[1].DownUntil.Store(now.now + int64(time.Minute))
	for range 10 {
		if ep := lb.pick(eps, 0, false, nil, now); ep != eps[0] {
			t.Fatalf("with one down: picked %v", ep.Addr)
		}
	}
	if ep := lb.pick(eps, 0, false, eps[0], now); ep != eps[0] {
		t.Errorf("avoid, when it is the one up: %v", ep)
	}
	eps[0].DownUntil.Store(now.now + int64(time.Minute))
	if ep := lb.pick(eps, 0, false, nil, now); ep != nil {
		t.Errorf("all down: %v", ep.Addr)
	}
}

// TestLeastRequest: the endpoint with fewer requests in flight for its weight wins the
// draw of two distinct healthy endpoints.
func TestLeastRequest(t *testing.T) {
	eps := endpoints(1, 1, 1)
	eps[0].Stats.Active.Store(50) // busy
	lb := newBalancer(config.BalanceLeastRequest, eps)
	now := moment{now: time.Now().UnixNano()}
	c := counts(eps, 3000, func(int) *Endpoint { return lb.pick(eps, 0, false, nil, now) })
	if c[eps[0]] != 0 {
		t.Errorf("the busy endpoint got %d of 3000 (it loses every draw of two distinct endpoints)", c[eps[0]])
	}
	if c[eps[1]] < 1000 || c[eps[2]] < 1000 {
		t.Errorf("the two idle ones: %d, %d", c[eps[1]], c[eps[2]])
	}
	// Weighted: 10 in flight on weight 10 is as loaded as 1 on weight 1.
	w := endpoints(10, 1)
	w[0].Stats.Active.Store(5)
	w[1].Stats.Active.Store(1)
	if ep := newBalancer(config.BalanceLeastRequest, w).pick(w, 0, false, nil, now); ep != w[0] {
		t.Errorf("weighted: picked %s, want the heavy one (6/10 < 2/1)", ep.Addr)
	}
}

// TestRandom: in proportion to weight.
func TestRandom(t *testing.T) {
	eps := endpoints(1, 3)
	lb := newBalancer(config.BalanceRandom, eps)
	now := moment{now: time.Now().UnixNano()}
	c := counts(eps, 20000, func(int) *Endpoint { return lb.pick(eps, 0, false, nil, now) })
	if d := c[eps[1]] - 15000; d > 750 || d < -750 {
		t.Errorf("weights 1:3 over 20000 picks: %d, %d", c[eps[0]], c[eps[1]])
	}
}

// TestConsistent: ring hash and maglev send a key to one endpoint, every time and in every
// replica (a balancer built again from the same endpoints); shares follow the weights; an
// endpoint that goes down moves only its own keys.
func TestConsistent(t *testing.T) {
	for _, policy := range []string{config.BalanceRingHash, config.BalanceMaglev} {
		t.Run(policy, func(t *testing.T) {
			eps := endpoints(1, 1, 2)
			a, b := newBalancer(policy, eps), newBalancer(policy, eps)
			now := moment{now: time.Now().UnixNano()}
			first := map[int]*Endpoint{}
			for k := range 4000 {
				key := xxhash.Sum64String(fmt.Sprint("user-", k))
				ep := a.pick(eps, key, true, nil, now)
				if again := b.pick(eps, key, true, nil, now); again != ep {
					t.Fatalf("key %d: %s, then %s in another replica", k, ep.Addr, again.Addr)
				}
				first[k] = ep
			}
			c := map[*Endpoint]int{}
			for _, ep := range first {
				c[ep]++
			}
			// Weights 1:1:2 of 4000 keys: 1000, 1000, 2000, within 20%.
			for i, want := range []int{1000, 1000, 2000} {
				if d := c[eps[i]] - want; d*5 > want || -d*5 > want {
					t.Errorf("%s got %d keys of 4000, want about %d", eps[i].Addr, c[eps[i]], want)
				}
			}
			eps[2].DownUntil.Store(now.now + int64(time.Minute))
			for k, was := range first {
				ep := a.pick(eps, xxhash.Sum64String(fmt.Sprint("user-", k)), true, nil, now)
				if ep == eps[2] {
					t.Fatalf("key %d went to the endpoint that is down", k)
				}
				if was != eps[2] && ep != was {
					t.Fatalf("key %d moved from %s to %s, though its endpoint is up", k, was.Addr, ep.Addr)
				}
			}
		})
	}
}

// TestNoEndpoints: every balancer answers nil for a backend with no endpoints.
func TestNoEndpoints(t *testing.T) {
	for _, policy := range []string{config.BalanceRoundRobin, config.BalanceLeastRequest, config.BalanceRandom, config.BalanceRingHash, config.BalanceMaglev} {
		if ep := newBalancer(policy, nil).pick(nil, 1, true, nil, moment{}); ep != nil {
			t.Errorf("%s: %v", policy, ep)
		}
	}
}
