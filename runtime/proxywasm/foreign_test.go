package proxywasm

import (
	"context"
	_ "embed"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/internal/testutil"
)

//go:embed testdata/foreign.wat
var foreignWAT string

// later is an asynchronous foreign function that answers each call from another
// goroutine, once per prefix, with prefix+args, and keeps the calls it got.
type later struct {
	prefixes []string
	delay    time.Duration

	mu    sync.Mutex
	calls []*ForeignCall
}

func (l *later) fn(args []byte, call *ForeignCall) error {
	l.mu.Lock()
	l.calls = append(l.calls, call)
	l.mu.Unlock()
	go func() {
		time.Sleep(l.delay)
		for _, p := range l.prefixes {
			call.Post(append([]byte(p), args...))
		}
	}()
	return nil
}

func (l *later) call(t *testing.T, k int) *ForeignCall {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.calls) <= k {
		t.Fatalf("%d calls of later, want %d", len(l.calls), k+1)
	}
	return l.calls[k]
}

// TestForeignFunctionAnswersLater: a paused stream waits for an asynchronous foreign
// function's answer, which comes to the root context as proxy_on_foreign_function with the
// token the call returned, its data in buffer 8; the filter resumes the stream from it.
func TestForeignFunctionAnswersLater(t *testing.T) {
	r := newRuntime(t)
	l := &later{prefixes: []string{"pong:"}, delay: 20 * time.Millisecond}
	r.RegisterAsyncForeignFunction("later", l.fn)
	sink := &logSink{}
	p := loadWAT(t, r, foreignWAT, Config{Logger: slog.New(sink)}, nil)
	i := theInstance(t, p)
	s, err := p.NewStream(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if a, err := s.OnRequestHeaders(&Headers{}, true); a != Pause || err != nil {
		t.Fatalf("OnRequestHeaders: %v %v", a, err)
	}
	if st := i.u32At(0x100); st != statusOK {
		t.Fatalf("proxy_call_foreign_function: status %d", st)
	}
	token := i.u32At(0x104)
	if c := l.call(t, 0); c.ID() != token || token == 0 {
		t.Errorf("token %d returned to the filter, call ID %d", token, c.ID())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if root, id, size := i.u32At(0x110), i.u32At(0x114), i.u32At(0x118); root != i.rootID || id != token || size != 9 {
		t.Errorf("proxy_on_foreign_function(%d, %d, %d), want (%d, %d, 9)", root, id, size, i.rootID, token)
	}
	if st, data := i.u32At(0x11c), i.bytesAt(0x300); st != statusOK || string(data) != "pong:ping" {
		t.Errorf("buffer 8 in proxy_on_foreign_function: status %d, %q", st, data)
	}
	if st1, st2 := i.u32At(0x120), i.u32At(0x124); st1 != statusOK || st2 != statusOK {
		t.Errorf("set_effective_context %d, continue_stream %d", st1, st2)
	}
	// Outside proxy_on_foreign_function, buffer 8 is not there.
	if _, err := s.OnResponseHeaders(&Headers{Fields: []Field{{":status", "200"}}}, true); err != nil {
		t.Fatal(err)
	}
	if st := i.u32At(0x130); st != statusNotFound {
		t.Errorf("buffer 8 in proxy_on_response_headers: status %d, want NOT_FOUND", st)
	}
	if !sink.has("INFO pong:ping") {
		t.Errorf("filter log %q", sink.messages())
	}
}

// TestForeignFunctionAnswersIdle: answers to a call the root context made reach the
// instance while it is idle, each as its own callback, in order; once the plugin closes,
// Done is closed and Post delivers nothing.
func TestForeignFunctionAnswersIdle(t *testing.T) {
	r := newRuntime(t)
	l := &later{prefixes: []string{"first:", "second:"}}
	r.RegisterAsyncForeignFunction("later", l.fn)
	sink := &logSink{}
	p := loadWAT(t, r, foreignWAT, Config{Plugin: []byte("boot"), Logger: slog.New(sink)}, nil)
	testutil.Eventually(t, "two answers", func() bool { return len(sink.messages()) == 2 })
	if got, want := sink.messages(), []string{"INFO first:boot", "INFO second:boot"}; !slices.Equal(got, want) {
		t.Errorf("filter log %q, want %q", got, want)
	}
	call := l.call(t, 0)
	select {
	case <-call.Done():
		t.Fatal("Done closed while the instance lives")
	default:
	}
	p.Close()
	select {
	case <-call.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("Done not closed after the plugin closed")
	}
	if call.Post([]byte("late")) {
		t.Error("Post after the instance went away reported delivery")
	}
}

// TestForeignFunctionFailsToStart: an asynchronous function that returns an error gives
// the filter INTERNAL_FAILURE, and what it posted is dropped.
func TestForeignFunctionFailsToStart(t *testing.T) {
	r := newRuntime(t)
	var call *ForeignCall
	var posted bool
	r.RegisterAsyncForeignFunction("later", func(args []byte, c *ForeignCall) error {
		call = c
		posted = c.Post([]byte("too soon"))
		return errors.New("no connection")
	})
	sink := &logSink{}
	p := loadWAT(t, r, foreignWAT, Config{Logger: slog.New(sink)}, nil)
	i := theInstance(t, p)
	s, err := p.NewStream(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.OnRequestHeaders(&Headers{}, true)
	if st := i.u32At(0x100); st != statusInternalFailure {
		t.Errorf("proxy_call_foreign_function: status %d, want INTERNAL_FAILURE", st)
	}
	if !posted {
		t.Error("Post from within the function was refused")
	}
	if call.Post([]byte("later")) {
		t.Error("Post after the function failed reported delivery")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait: %v, want the deadline (nothing resumes the stream)", err)
	}
	if n := i.u32At(0x128); n != 0 {
		t.Errorf("proxy_on_foreign_function ran %d times", n)
	}
}
