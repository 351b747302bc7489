package counters

import (
	"context"
	"errors"
	"math"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/internal/testredis"
)

// casArg says which cas a Set step passes.
type casArg int

const (
	casZero    casArg = iota
	casCurrent        // the key's cas, as the last Get returned it
	casStale          // the key's cas before its last set
	casBogus          // one the key never had
)

func TestRedisSharedSemantics(t *testing.T) {
	srv := startRedis(t)
	s := NewRedisShared(srv.client(t), "sem:")
	ctx := context.Background()
	binKey := string([]byte{0, 'v', ':', 0xff, '\n', 'c', ':'})
	binValue := string([]byte{0, 1, 2, 0xfe, 0xff, '\r', '\n', 0})

	steps := []struct {
		name      string
		ns, key   string
		set       bool
		value     string
		cas       casArg
		wantErr   error
		wantValue string
		wantFound bool
	}{
		{name: "missing key", ns: "a", key: "k"},
		{name: "set a missing key with a cas", ns: "a", key: "k", set: true, value: "1", cas: casBogus, wantValue: "1", wantFound: true},
		{name: "cas 0 sets unconditionally", ns: "a", key: "k", set: true, value: "2", cas: casZero, wantValue: "2", wantFound: true},
		{name: "matching cas", ns: "a", key: "k", set: true, value: "3", cas: casCurrent, wantValue: "3", wantFound: true},
		{name: "stale cas", ns: "a", key: "k", set: true, value: "lost", cas: casStale, wantErr: ErrCasMismatch, wantValue: "3", wantFound: true},
		{name: "bogus cas", ns: "a", key: "k", set: true, value: "lost", cas: casBogus, wantErr: ErrCasMismatch, wantValue: "3", wantFound: true},
		{name: "matching cas after a mismatch", ns: "a", key: "k", set: true, value: "4", cas: casCurrent, wantValue: "4", wantFound: true},
		{name: "empty value", ns: "a", key: "k", set: true, value: "", cas: casCurrent, wantValue: "", wantFound: true},
		{name: "empty value is kept", ns: "a", key: "k", wantValue: "", wantFound: true},
		{name: "set after an empty value", ns: "a", key: "k", set: true, value: "5", cas: casCurrent, wantValue: "5", wantFound: true},
		{name: "other namespace: missing", ns: "b", key: "k"},
		{name: "other namespace: set", ns: "b", key: "k", set: true, value: "b", cas: casZero, wantValue: "b", wantFound: true},
		{name: "first namespace untouched", ns: "a", key: "k", wantValue: "5", wantFound: true},
		{name: "namespace with a colon", ns: "a:b", key: "k", set: true, value: "ab", cas: casZero, wantValue: "ab", wantFound: true},
		{name: "namespace that escapes like it", ns: "a%3Ab", key: "k"},
		{name: "empty namespace and key", ns: "", key: "", set: true, value: "e", cas: casZero, wantValue: "e", wantFound: true},
		{name: "binary key and value", ns: "a", key: binKey, set: true, value: binValue, cas: casZero, wantValue: binValue, wantFound: true},
		{name: "binary key, matching cas", ns: "a", key: binKey, set: true, value: binValue + "!", cas: casCurrent, wantValue: binValue + "!", wantFound: true},
		{name: "key named like the counter", ns: "a", key: "#", set: true, value: "x", cas: casZero, wantValue: "x", wantFound: true},
		{name: "first key untouched", ns: "a", key: "k", wantValue: "5", wantFound: true},
	}

	type history struct{ cas []uint32 } // every cas a key had, in order
	seen := map[[2]string]*history{}
	for _, st := range steps {
		id := [2]string{st.ns, st.key}
		h := seen[id]
		if h == nil {
			h = &history{}
			seen[id] = h
		}
		if st.set {
			var cas uint32
			switch st.cas {
			case casCurrent:
				cas = h.cas[len(h.cas)-1]
			case casStale:
				cas = h.cas[len(h.cas)-2]
			case casBogus:
				cas = math.MaxUint32 - 7
			}
			if err := s.Set(ctx, st.ns, []byte(st.key), []byte(st.value), cas); !errors.Is(err, st.wantErr) || (err == nil) != (st.wantErr == nil) {
				t.Fatalf("%s: Set(cas %d) = %v, want %v", st.name, cas, err, st.wantErr)
			}
		}
		v, cas, found, err := s.Get(ctx, st.ns, []byte(st.key))
		if err != nil || found != st.wantFound || string(v) != st.wantValue {
			t.Fatalf("%s: Get = %q, %d, %v, %v; want %q, found %v", st.name, v, cas, found, err, st.wantValue, st.wantFound)
		}
		switch {
		case !found:
			if cas != 0 {
				t.Fatalf("%s: cas %d for a missing key", st.name, cas)
			}
		case cas == 0:
			t.Fatalf("%s: cas 0", st.name)
		case st.set && st.wantErr == nil:
			if slices.Contains(h.cas, cas) {
				t.Fatalf("%s: a set kept cas %d (had %v)", st.name, cas, h.cas)
			}
			h.cas = append(h.cas, cas)
		default:
			if cas != h.cas[len(h.cas)-1] {
				t.Fatalf("%s: cas %d, want it unchanged at %d", st.name, cas, h.cas[len(h.cas)-1])
			}
		}
	}
}

// The namespace's hash and its fields, as an operator sees them in Redis.
func TestRedisSharedLayout(t *testing.T) {
	srv := startRedis(t)
	raw := srv.client(t)
	s := NewRedisShared(srv.client(t), "plexus:")
	ctx := context.Background()
	for _, ns := range []string{"vm", "a:b", "a%3Ab", "100%"} {
		if err := s.Set(ctx, ns, []byte("k"), []byte(ns), 0); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := raw.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	want := []string{"plexus:sd:100%25", "plexus:sd:a%253Ab", "plexus:sd:a%3Ab", "plexus:sd:vm"}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys %q, want %q", keys, want)
	}
	fields, err := raw.HGetAll(ctx, "plexus:sd:a%3Ab").Result()
	if err != nil {
		t.Fatal(err)
	}
	// A new hash's counter starts from the server's clock, not from 1.
	if len(fields) != 3 || fields["v:k"] != "a:b" || fields["#"] == "" || fields["#"] == "1" || fields["c:k"] != fields["#"] {
		t.Fatalf("hash of namespace a:b: %q", fields)
	}

	// What is not written by Set is an error, not a value.
	raw.HSet(ctx, "plexus:sd:vm", "c:k", "zero")
	if _, _, _, err := s.Get(ctx, "vm", []byte("k")); !errors.Is(err, ErrRedis) {
		t.Fatalf("Get with a bad cas field: %v, want ErrRedis", err)
	}
	raw.Set(ctx, "plexus:sd:str", "a string", 0)
	if _, _, _, err := s.Get(ctx, "str", []byte("k")); !errors.Is(err, ErrRedis) {
		t.Fatalf("Get of a string key: %v, want ErrRedis", err)
	}
	if err := s.Set(ctx, "str", []byte("k"), nil, 0); !errors.Is(err, ErrRedis) {
		t.Fatalf("Set on a string key: %v, want ErrRedis", err)
	}
}

// New cas values go round 1..2^32−1, never 0, as proxy-wasm-cpp-host's
// nextCas does; the counter is then kept below 2^32.
func TestRedisSharedCasWraps(t *testing.T) {
	srv := startRedis(t)
	raw := srv.client(t)
	s := NewRedisShared(srv.client(t), "wrap:")
	ctx := context.Background()
	tests := []struct {
		counter int64
		want    []uint32
	}{
		{math.MaxUint32 - 2, []uint32{math.MaxUint32 - 1, math.MaxUint32, 1, 2}},
		{1<<40 + 5, []uint32{(1<<40+5)%math.MaxUint32 + 1, (1<<40+6)%math.MaxUint32 + 1}},
		{3*math.MaxUint32 - 1, []uint32{math.MaxUint32, 1}},
	}
	for _, tt := range tests {
		if err := raw.HSet(ctx, "wrap:sd:ns", "#", tt.counter).Err(); err != nil {
			t.Fatal(err)
		}
		var got []uint32
		for range tt.want {
			_, cas, _, err := s.Get(ctx, "ns", []byte("k"))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Set(ctx, "ns", []byte("k"), []byte("v"), cas); err != nil {
				t.Fatal(err)
			}
			if _, cas, _, err = s.Get(ctx, "ns", []byte("k")); err != nil {
				t.Fatal(err)
			}
			got = append(got, cas)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("counter at %d: cas values %v, want %v", tt.counter, got, tt.want)
		}
		if n, err := raw.HGet(ctx, "wrap:sd:ns", "#").Int64(); err != nil || n != int64(got[len(got)-1]) {
			t.Errorf("counter at %d: then %d, %v; want the last cas", tt.counter, n, err)
		}
	}
}

// Replicas incrementing one value by get, set with the cas, and again on a
// mismatch lose no update.
func TestRedisSharedHammer(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	key := []byte("counter")
	if err := NewRedisShared(srv.client(t), "hammer:").Set(ctx, "ns", key, []byte("0"), 0); err != nil {
		t.Fatal(err)
	}
	const goroutines, increments = 8, 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	mismatches := 0
	for g := 0; g < goroutines; g++ {
		s := NewRedisShared(srv.client(t), "hammer:") // a replica: its own connections
		wg.Add(1)
		go func() {
			defer wg.Done()
			retries := 0
			defer func() { mu.Lock(); mismatches += retries; mu.Unlock() }()
			for i := 0; i < increments; {
				v, cas, found, err := s.Get(ctx, "ns", key)
				if err != nil || !found {
					t.Errorf("Get: %v, found %v", err, found)
					return
				}
				n, err := strconv.Atoi(string(v))
				if err != nil {
					t.Error(err)
					return
				}
				err = s.Set(ctx, "ns", key, strconv.AppendInt(nil, int64(n+1), 10), cas)
				switch {
				case errors.Is(err, ErrCasMismatch):
					retries++
				case err != nil:
					t.Error(err)
					return
				default:
					i++
				}
			}
		}()
	}
	wg.Wait()
	v, _, _, err := NewRedisShared(srv.client(t), "hammer:").Get(ctx, "ns", key)
	if err != nil || string(v) != strconv.Itoa(goroutines*increments) {
		t.Fatalf("final value %q, %v; want %d", v, err, goroutines*increments)
	}
	t.Logf("%d increments, %d cas mismatches retried", goroutines*increments, mismatches)
}

func TestRedisSharedOneRoundTrip(t *testing.T) {
	srv := startRedis(t)
	raw := srv.client(t)
	c := srv.client(t)
	hook := &testredis.RoundTrips{}
	c.AddHook(hook)
	s := NewRedisShared(c, "rt:")
	ctx := context.Background()
	if err := s.Set(ctx, "ns", []byte("k"), []byte("v"), 0); err != nil { // loads the script
		t.Fatal(err)
	}
	check := func(what string, calls, wantTrips, wantEvalsha, wantEval int64, call func() error) {
		t.Helper()
		evalsha, eval := commandCalls(t, raw, "evalsha"), commandCalls(t, raw, "eval")
		hook.Reset()
		for i := int64(0); i < calls; i++ {
			if err := call(); err != nil && !errors.Is(err, ErrCasMismatch) {
				t.Fatalf("%s: %v", what, err)
			}
		}
		if n := hook.Total(); n != wantTrips {
			t.Errorf("%s ×%d: %d round trips, want %d", what, calls, n, wantTrips)
		}
		es, e := commandCalls(t, raw, "evalsha")-evalsha, commandCalls(t, raw, "eval")-eval
		if es != wantEvalsha || e != wantEval {
			t.Errorf("%s ×%d: the server ran EVALSHA %d times and EVAL %d times, want %d and %d", what, calls, es, e, wantEvalsha, wantEval)
		}
	}
	check("Get", 10, 10, 0, 0, func() error { _, _, _, err := s.Get(ctx, "ns", []byte("k")); return err })
	check("Get of a missing key", 10, 10, 0, 0, func() error { _, _, _, err := s.Get(ctx, "ns", []byte("none")); return err })
	check("Set", 10, 10, 10, 0, func() error { return s.Set(ctx, "ns", []byte("k"), []byte("v"), 0) })
	check("Set, cas mismatch", 10, 10, 10, 0, func() error { return s.Set(ctx, "ns", []byte("k"), []byte("v"), 1) })
	if err := raw.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// After SCRIPT FLUSH: NOSCRIPT, then EVAL, once.
	check("Set after SCRIPT FLUSH", 1, 2, 1, 1, func() error { return s.Set(ctx, "ns", []byte("k"), []byte("w"), 0) })
	if v, _, _, err := s.Get(ctx, "ns", []byte("k")); err != nil || string(v) != "w" {
		t.Fatalf("after SCRIPT FLUSH: %q, %v", v, err)
	}
}

func TestRedisSharedDown(t *testing.T) {
	srv := startRedis(t)
	s := NewRedisShared(srv.client(t), "down:")
	ctx := context.Background()
	if err := s.Set(ctx, "ns", []byte("k"), []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, _, _, err := s.Get(ctx, "ns", []byte("k")); return err }},
		{"Set", func() error { return s.Set(ctx, "ns", []byte("k"), []byte("v"), 0) }},
	} {
		start := time.Now()
		err := c.call()
		took := time.Since(start)
		if !errors.Is(err, ErrRedis) || errors.Is(err, ErrCasMismatch) {
			t.Errorf("%s with Redis down: %v, want an error wrapping ErrRedis", c.name, err)
		}
		if took > 500*time.Millisecond {
			t.Errorf("%s with Redis down took %v", c.name, took)
		}
	}
}

func TestEscapeNamespace(t *testing.T) {
	tests := map[string]string{
		"":         "",
		"vm":       "vm",
		"a:b":      "a%3Ab",
		"a%3Ab":    "a%253Ab",
		"%":        "%25",
		"::":       "%3A%3A",
		"ümlaut/x": "ümlaut/x",
	}
	seen := map[string]string{}
	for in, want := range tests {
		got := escapeNamespace(in)
		if got != want {
			t.Errorf("escapeNamespace(%q) = %q, want %q", in, got, want)
		}
		if other, ok := seen[got]; ok {
			t.Errorf("%q and %q both escape to %q", in, other, got)
		}
		seen[got] = in
	}
}
