package wire_test

import (
	"fmt"
	"time"

	"github.com/plexus-mesh/plexus/sdk/go/plexus/wire"
)

// The host side of plexus.rate_limit: read the limits, decide, answer.
func ExampleParseLimits() {
	args := wire.AppendLimits(nil, []wire.Limit{{Key: "ratelimit:global:", Rate: 1000, Period: time.Second, Cost: 1}})

	ls, err := wire.ParseLimits(args)
	if err != nil {
		fmt.Println(err) // the host answers BAD_ARGUMENT
		return
	}
	ds := make([]wire.Decision, len(ls))
	for i, l := range ls {
		burst := l.Burst
		if burst == 0 {
			burst = l.Rate
		}
		ds[i] = wire.Decision{Allowed: true, Remaining: burst - l.Cost, ResetAfter: l.Period / time.Duration(l.Rate)}
	}
	fmt.Printf("%d limits, result of %d bytes\n", len(ls), len(wire.AppendDecisions(nil, ds)))

	_, err = wire.ParseLimits(args[:20])
	fmt.Println(err)
	// Output:
	// 1 limits, result of 32 bytes
	// plexus.rate_limit: limit 0: truncated at byte 20: a limit's fixed fields (u64 rate, period_ms, burst, cost; u32 key_len) take 36 bytes from byte 4
}
