package l4

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/gateway/internal/filterchain"
	"github.com/plexus-mesh/plexus/gateway/internal/upstream"
	"github.com/plexus-mesh/plexus/internal/testutil"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
	"github.com/plexus-mesh/plexus/runtime/proxywasm"
)

// holdWAT holds the client's bytes until it has four of them (or the last), then lets them
// through with "<" in front.
var holdWAT = wasmbuild.WATFilter(`  (import "env" "proxy_set_buffer_bytes" (func $set (param i32 i32 i32 i32 i32) (result i32)))`, `
  (data (i32.const 0) "<")
  (func (export "proxy_on_new_connection") (param i32) (result i32) (i32.const 0))
  (func (export "proxy_on_downstream_data") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (if (i32.and (i32.lt_u (local.get $size) (i32.const 4)) (i32.eqz (local.get $eos)))
      (then (return (i32.const 1))))
    (drop (call $set (i32.const 2) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1)))
    (i32.const 0))`)

// startRawEcho is a TCP backend that writes back what it reads, and closes its side after
// the client closed its own.
func startRawEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return testutil.ServeConns(t, ln, func(c net.Conn) {
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
		c.Close()
	})
}

func target(t *testing.T, backend string, filters ...*filterchain.Filter) *Target {
	t.Helper()
	cl, err := upstream.NewCluster(config.Backend{Name: "echo", Endpoints: []config.Endpoint{{Address: backend}}, ConnectTimeout: 5 * time.Second}, &config.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &Target{Listener: "test", Cluster: cl, Filters: filters, IdleTimeout: time.Hour}
}

// proxy serves one connection through Serve and returns the client's end.
func proxy(t *testing.T, tg *Target) net.Conn {
	t.Helper()
	client, server := tcpPair(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Serve(context.Background(), server, 1, tg, slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() {
		client.Close()
		<-done
	})
	client.SetDeadline(time.Now().Add(30 * time.Second))
	return client
}

func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if server, err = ln.Accept(); err != nil {
		t.Fatal(err)
	}
	return client, server
}

func TestServeWithoutFilters(t *testing.T) {
	c := proxy(t, target(t, startRawEcho(t)))
	big := make([]byte, 1<<20) // past the writers' queue of chunks, both ways at once
	for k := range big {
		big[k] = byte(k)
	}
	go func() {
		c.Write(big)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || len(got) != len(big) || string(got) != string(big) {
		t.Fatalf("echoed %d bytes (err %v); want the %d written, in order", len(got), err, len(big))
	}
}

func TestServeHoldsForAFilter(t *testing.T) {
	r, err := proxywasm.NewRuntime(context.Background(), proxywasm.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	p, err := r.Load(context.Background(), wasmbuild.WAT(t, holdWAT), proxywasm.Config{Name: "hold"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := proxy(t, target(t, startRawEcho(t), &filterchain.Filter{Name: "hold", Plugin: p}))
	io.WriteString(c, "ab")
	time.Sleep(20 * time.Millisecond) // most likely a read of its own: the filter holds it
	io.WriteString(c, "cd")
	time.Sleep(20 * time.Millisecond)
	io.WriteString(c, "e")
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	// "ab" held, "abcd" let through as "<abcd"; "e" held, then let through at the end as "<e".
	if want := "<abcd<e"; string(got) != want && string(got) != "<abcde" {
		t.Errorf("through the filter: %q; want %q", got, want)
	}
}

func TestIdleTimeoutCloses(t *testing.T) {
	tg := target(t, startRawEcho(t))
	tg.IdleTimeout = 50 * time.Millisecond
	c := proxy(t, tg)
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("an idle connection: %v; want it closed (EOF)", err)
	}
}
