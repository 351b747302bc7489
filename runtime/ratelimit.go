package runtime

import (
	"sync"
	"time"
)

// Bucket is a token bucket: Burst tokens at most, refilled at Rate tokens per second.
// It limits how fast a pool replaces failed instances, so that a filter that traps on
// every request costs a bounded amount of CPU in instance start-ups.
type Bucket struct {
	mu     sync.Mutex
	tokens float64
	burst  float64
	rate   float64
	last   time.Time
	now    func() time.Time
}

// NewBucket returns a full bucket.
func NewBucket(burst int, perSecond float64) *Bucket {
	return &Bucket{tokens: float64(burst), burst: float64(burst), rate: perSecond, last: time.Now(), now: time.Now}
}

// Allow takes a token if there is one.
func (b *Bucket) Allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.tokens += now.Sub(b.last).Seconds() * b.rate
	if b.tokens > b.burst {
		b.tokens = b.burst
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
