package counters_test

import (
	"context"
	"fmt"
	"time"

	"github.com/plexus-mesh/plexus/gateway/internal/counters"
)

func Example() {
	// With a Redis client c, counters.NewRedis(c, "plexus:") behaves the same,
	// shared by every replica.
	var store counters.Store = counters.NewLocal()
	defer store.Close()
	ctx := context.Background()

	// 2 requests a second, in bursts of up to 3.
	limit := counters.Limit{Rate: 2, Period: time.Second, Burst: 3}
	for i := 0; i < 4; i++ {
		d, err := store.Allow(ctx, "client:203.0.113.7", limit, 1)
		if err != nil {
			panic(err) // the gateway fails open or closed here, by policy
		}
		fmt.Printf("allowed=%v remaining=%d retry-after~%v\n", d.Allowed, d.Remaining, d.RetryAfter.Round(100*time.Millisecond))
	}

	n, _ := store.Incr(ctx, "hits:/api", 1, time.Minute)
	fmt.Println("hits this minute:", n)
	// Output:
	// allowed=true remaining=2 retry-after~0s
	// allowed=true remaining=1 retry-after~0s
	// allowed=true remaining=0 retry-after~0s
	// allowed=false remaining=0 retry-after~500ms
	// hits this minute: 1
}
