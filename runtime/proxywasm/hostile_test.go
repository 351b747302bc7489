package proxywasm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// headersN is a request with n headers: hostile.wat misbehaves by that number.
func headersN(n int) *Headers {
	h := &Headers{Fields: []Field{{":path", "/"}}}
	for len(h.Fields) < n {
		h.Fields = append(h.Fields, Field{"x-pad", "1"})
	}
	return h
}

func TestHostileFilters(t *testing.T) {
	// A module that exports interrupt.Export itself cannot be instrumented: wazero's own
	// termination checks must stop it instead. (They are at loop heads only: a recursion
	// that never loops, case 13, runs on under them; see runtime/RATIONALE.md.)
	uninstrumentable := strings.Replace(hostileWAT, `(func (export "proxy_abi_version_0_2_0"))`,
		`(func (export "proxy_abi_version_0_2_0")) (func (export "plexus.interrupt"))`, 1)
	tests := []struct {
		name    string
		headers int
		kind    FailureKind
		msg     string
	}{
		{"infinite loop", 7, FailTimeout, "deadline"},
		{"recursion that never loops", 13, FailTimeout, "deadline"},
		{"infinite loop, wazero's checks", 7, FailTimeout, "deadline"},
		{"unbounded memory.grow", 8, FailMemory, "memory limit"},
		{"unreachable", 9, FailTrap, "unreachable"},
		{"malloc past memory", 10, FailABI, "past the end of linear memory"},
		{"import not provided", 12, FailTrap, "env.not_provided is not provided"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRuntime(t)
			timeout := 2 * time.Second // slow machines, -race
			if tt.kind == FailTimeout {
				timeout = 50 * time.Millisecond
			}
			src := hostileWAT
			if strings.HasSuffix(tt.name, "wazero's checks") {
				src = uninstrumentable
			}
			p := loadWAT(t, r, src, Config{MaxInstances: 2, CallbackTimeout: timeout, MemoryLimitPages: 64}, nil)
			if p.interrupt != (src == hostileWAT) {
				t.Fatalf("instrumented: %v", p.interrupt)
			}
			base := p.Stats()
			if base.Instances != 1 || base.MemoryBytes != 2*65536 {
				t.Fatalf("baseline %+v", base)
			}

			// The bad stream fails on one instance while a good one works on another.
			bad, err := p.NewStream(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			failed := make(chan error, 1)
			go func() {
				_, err := bad.OnRequestHeaders(headersN(tt.headers), true)
				failed <- err
			}()
			good, err := p.NewStream(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if a, err := good.OnRequestHeaders(headersN(1), true); a != Continue || err != nil {
				t.Errorf("the healthy stream: %v %v", a, err)
			}
			good.Close()

			err = <-failed
			var f *Failure
			if !errors.As(err, &f) || f.Kind != tt.kind || f.Filter != "test" || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v: want a %v failure saying %q", err, tt.kind, tt.msg)
			}
			if _, err2 := bad.OnResponseHeaders(headersN(1), true); err2 != err {
				t.Errorf("a later phase: %v, want the same failure", err2)
			}
			if err2 := bad.Wait(context.Background()); err2 != err {
				t.Errorf("Wait: %v, want the same failure", err2)
			}
			bad.Close()

			st := p.Stats()
			if st.Failures[tt.kind.String()] != 1 || st.Instances != 1 || st.InUse != 0 || st.MemoryBytes != 2*65536 {
				t.Errorf("after the failure: %+v", st)
			}
			// A fresh instance replaces the failed one when one is needed.
			s1, _ := p.NewStream(context.Background(), nil)
			s2, err := p.NewStream(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if a, err := s2.OnRequestHeaders(headersN(1), true); a != Continue || err != nil {
				t.Errorf("after a restart: %v %v", a, err)
			}
			s1.Close()
			s2.Close()
			st = p.Stats()
			if st.Instances != 2 || st.Restarts != 1 || st.MemoryBytes != 2*2*65536 {
				t.Errorf("after the restart: %+v", st)
			}
		})
	}
}

func TestOutOfBoundsMessage(t *testing.T) {
	r := newRuntime(t)
	p := loadWAT(t, r, hostileWAT, Config{}, nil)
	s, err := p.NewStream(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if a, err := s.OnRequestHeaders(headersN(11), true); a != Continue || err != nil {
		t.Fatalf("%v %v", a, err)
	}
	if st := theInstance(t, p).u32At(0x100); st != statusInvalidMemoryAccess {
		t.Errorf("proxy_log with an out-of-bounds message: status %d", st)
	}
}

func TestRestartsAreRateLimited(t *testing.T) {
	r := newRuntime(t)
	p := loadWAT(t, r, hostileWAT, Config{}, nil)
	var noInstance int
	for k := 0; k < 15; k++ {
		s, err := p.NewStream(context.Background(), nil)
		var f *Failure
		if errors.As(err, &f) && f.Kind == FailNoInstance {
			noInstance++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.OnRequestHeaders(headersN(9), true); err == nil {
			t.Fatal("no trap")
		}
		s.Close()
	}
	if noInstance == 0 {
		t.Fatal("15 traps in a row and every instance was replaced")
	}
	if st := p.Stats(); st.Failures["no instance"] != noInstance || st.Failures["trap"] != 15-noInstance || st.Instances != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestNewStreamWaitsForAnInstance(t *testing.T) {
	r := newRuntime(t)
	p := loadWAT(t, r, callbacksWAT, Config{MaxInstances: 1}, nil)
	s, err := p.NewStream(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	var f *Failure
	if _, err := p.NewStream(ctx, nil); !errors.As(err, &f) || f.Kind != FailNoInstance || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("all busy: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		s2, err := p.NewStream(context.Background(), nil)
		if err == nil {
			s2.Close()
		}
		got <- err
	}()
	time.Sleep(10 * time.Millisecond)
	s.Close()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

func TestPluginClose(t *testing.T) {
	r := newRuntime(t)
	p := loadWAT(t, r, callbacksWAT, Config{MaxInstances: 2}, nil)
	s, err := p.NewStream(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	i := theInstance(t, p)
	p.Close()
	if _, err := p.NewStream(context.Background(), nil); err == nil {
		t.Fatal("NewStream on a closed plugin")
	}
	if a, err := s.OnRequestHeaders(&Headers{}, true); a != Continue || err != nil {
		t.Fatalf("a stream open at Close: %v %v", a, err)
	}
	s.Close()
	if st := p.Stats(); st.Instances != 0 {
		t.Errorf("after the last stream: %+v", st)
	}
	_ = i
}

// TestRuntimeCloseWithOpenStream: a stream open when the runtime closes finishes; the
// compiled code outlives it.
func TestRuntimeCloseWithOpenStream(t *testing.T) {
	r, err := NewRuntime(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := loadWAT(t, r, onecallWAT, Config{}, nil)
	s, err := p.NewStream(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Close(context.Background())
	if _, err := r.Load(context.Background(), nil, Config{}, nil); err == nil {
		t.Error("Load on a closed runtime")
	}
	if a, err := s.OnRequestHeaders(&Headers{Fields: []Field{{":path", "/"}}}, true); a != Continue || err != nil {
		t.Errorf("after Runtime.Close: %v %v", a, err)
	}
	s.Close()
	if p.Stats().Instances != 0 {
		t.Errorf("stats %+v", p.Stats())
	}
}

// TestStartFunctionHasADeadline: a start function runs under the start-up deadline (10× the
// callback timeout) and one that never returns fails the Load, whether the module is
// instrumented or stopped by wazero's checks.
func TestStartFunctionHasADeadline(t *testing.T) {
	const spin = `(module
  (memory (export "memory") 1)
  (func $spin (loop $l (br $l)))
  (start $spin)
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_0"))%s)`
	r := newRuntime(t)
	for _, extra := range []string{"", `(func (export "plexus.interrupt"))`} {
		start := time.Now()
		_, err := r.Load(context.Background(), wasmbuild.WAT(t, fmt.Sprintf(spin, extra)), Config{Name: "spin", CallbackTimeout: 20 * time.Millisecond}, &fakeHost{})
		var f *Failure
		if !errors.As(err, &f) || f.Kind != FailTimeout {
			t.Fatalf("Load with a start function that never returns (%q): %v, want a timeout", extra, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Load took %v", d)
		}
	}
}
