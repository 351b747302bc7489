package counters

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// SharedData is shared data with the compare-and-swap semantics of
// Proxy-Wasm (proxy-wasm-cpp-host, SharedData in src/shared_data.cc): what
// proxy_get_shared_data and proxy_set_shared_data do for a filter whose data
// is shared by every replica rather than by one process.
type SharedData interface {
	// Get returns key's value in namespace ns and its cas; found is false
	// when the key was never set.
	Get(ctx context.Context, ns string, key []byte) (value []byte, cas uint32, found bool, err error)
	// Set stores value under key: unconditionally when cas is 0 or the key
	// does not exist; otherwise only when cas equals the key's current cas,
	// else it returns ErrCasMismatch and changes nothing. Every successful
	// set gives the key a new cas, never 0.
	Set(ctx context.Context, ns string, key, value []byte, cas uint32) error
}

// ErrCasMismatch is returned by [SharedData.Set] when the key was set by
// someone else since the caller read its cas (Proxy-Wasm's CAS_MISMATCH).
var ErrCasMismatch = errors.New("counters: cas mismatch")

var (
	//go:embed shared.lua
	sharedSetSrc    string
	sharedSetScript = redis.NewScript(sharedSetSrc)
)

// RedisShared is [SharedData] in Redis: one hash per namespace, so that a
// namespace is one key (one slot of a Cluster) and a set can compare and
// write in one script. See the package documentation.
type RedisShared struct {
	c      redis.UniversalClient
	prefix string
}

var _ SharedData = (*RedisShared)(nil)

// NewRedisShared returns shared data kept in c under prefix (e.g.
// "plexus:"). As with [NewRedis], the caller owns c and its options.
func NewRedisShared(c redis.UniversalClient, prefix string) *RedisShared {
	return &RedisShared{c: c, prefix: prefix}
}

// hash is the name of namespace ns's hash.
func (r *RedisShared) hash(ns string) string {
	return r.prefix + "sd:" + escapeNamespace(ns)
}

// escapeNamespace percent-escapes ':' and '%'. Tools read ':' in a Redis key
// as a level of a tree, so a namespace ("vm_id") with colons would look like
// a subtree of another one; escaping '%' as well keeps the mapping injective.
func escapeNamespace(ns string) string {
	if !strings.ContainsAny(ns, ":%") {
		return ns
	}
	var b strings.Builder
	b.Grow(len(ns) + 8)
	for i := 0; i < len(ns); i++ {
		switch c := ns[i]; c {
		case ':':
			b.WriteString("%3A")
		case '%':
			b.WriteString("%25")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Get implements [SharedData.Get] with one HMGET of the value and the cas,
// which reads both at once.
func (r *RedisShared) Get(ctx context.Context, ns string, key []byte) ([]byte, uint32, bool, error) {
	h, k := r.hash(ns), string(key)
	vs, err := r.c.HMGet(ctx, h, "v:"+k, "c:"+k).Result()
	if err != nil {
		return nil, 0, false, wrap(err)
	}
	if len(vs) != 2 {
		return nil, 0, false, wrap(fmt.Errorf("HMGET %q returned %d values, want 2", h, len(vs)))
	}
	if vs[0] == nil {
		return nil, 0, false, nil
	}
	v, _ := vs[0].(string)
	c, _ := vs[1].(string)
	cas, err := strconv.ParseUint(c, 10, 32)
	if err != nil || cas == 0 {
		return nil, 0, false, wrap(fmt.Errorf("hash %q: field %q holds %q, not a cas", h, "c:"+k, vs[1]))
	}
	return []byte(v), uint32(cas), true, nil
}

// Set implements [SharedData.Set] with one script (shared.lua), which
// compares the cas and writes atomically.
func (r *RedisShared) Set(ctx context.Context, ns string, key, value []byte, cas uint32) error {
	got, err := sharedSetScript.Run(ctx, r.c, []string{r.hash(ns)}, key, value, cas).Int64()
	if err != nil {
		return wrap(err)
	}
	if got == 0 {
		return ErrCasMismatch
	}
	return nil
}
