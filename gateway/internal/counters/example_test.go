package counters_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

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

// A store in Redis as the gateway composes it: denials of a key under attack
// answered in process, the rest through a circuit breaker.
func ExampleNewDenyCache() {
	breaker := counters.NewBreaker(counters.BreakerConfig{Failures: 5, Cooldown: time.Second})
	// counters.NewRedis(c, "plexus:") in place of NewLocal, with Redis.
	store := counters.NewDenyCache(counters.NewGuarded(counters.NewLocal(), breaker), 0)
	defer store.Close()
	ctx := context.Background()

	limit := counters.Limit{Rate: 1, Period: time.Minute, Burst: 1}
	for i := 0; i < 3; i++ {
		d, err := store.Allow(ctx, "client:203.0.113.7", limit, 1)
		if err != nil {
			panic(err) // ErrBreakerOpen or ErrRedis: the failure policy applies
		}
		fmt.Printf("allowed=%v cached=%v retry-after~%v\n", d.Allowed, d.Cached, d.RetryAfter.Round(time.Second))
	}
	// Output:
	// allowed=true cached=false retry-after~0s
	// allowed=false cached=false retry-after~1m0s
	// allowed=false cached=true retry-after~1m0s
}

// A read-modify-write of shared data, as a filter does it with
// proxy_get_shared_data and proxy_set_shared_data: again on a cas mismatch.
func ExampleRedisShared() {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", MaxRetries: -1})
	defer c.Close()
	shared := counters.NewRedisShared(c, "plexus:")
	ctx := context.Background()
	for {
		v, cas, _, err := shared.Get(ctx, "my_vm_id", []byte("hits"))
		if err != nil {
			return // Redis is unavailable: the filter's failure policy applies
		}
		n, _ := strconv.Atoi(string(v)) // 0 when the key is missing
		err = shared.Set(ctx, "my_vm_id", []byte("hits"), strconv.AppendInt(nil, int64(n+1), 10), cas)
		if !errors.Is(err, counters.ErrCasMismatch) {
			break
		}
	}
}
