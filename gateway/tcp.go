package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/gateway/internal/l4"
	"github.com/plexus-mesh/plexus/gateway/internal/stream"
)

// tcpListener is an L4 listener (protocols [tcp]): each connection is proxied by the l4
// stage to the backend its listener's tcp block names in the snapshot in force as it
// arrives, through the network filters it names. The connection holds that snapshot
// until it ends, as a request does.
type tcpListener struct {
	g    *Gateway
	name string
	ln   net.Listener

	ctx    context.Context // canceled to close every connection
	cancel context.CancelFunc
	wg     sync.WaitGroup // connections open
}

func (g *Gateway) startTCPListener(lc config.Listener) (*listener, error) {
	ln, err := net.Listen("tcp", lc.Address)
	if err != nil {
		return nil, err
	}
	l := &listener{cfg: lc, addr: ln.Addr()}
	if lc.TLS != nil {
		ln = tls.NewListener(ln, g.listenerTLS(lc.Name))
	}
	t := &tcpListener{g: g, name: lc.Name, ln: ln}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	l.tcp = t
	go g.serve(lc.Name, t.accept)
	return l, nil
}

func (t *tcpListener) accept() error {
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.serveConn(c)
		}()
	}
}

func (t *tcpListener) serveConn(c net.Conn) {
	g := t.g
	snap := stream.Acquire(g.snap.Load)
	defer snap.Release()
	target := snap.tcp[t.name]
	if target == nil { // sameBinding keeps a listener L4 across reloads
		g.log.Error("tcp: connection closed: the listener is not an L4 listener in the config in force", "listener", t.name)
		c.Close()
		return
	}
	l4.Serve(t.ctx, c, stream.NewConnID(), target, g.log)
}

// tcpTargets compiles where the connections of each L4 listener go in this snapshot: its
// backends, SNI routes and filters, once for every connection it will take.
func (s *snapshot) tcpTargets() error {
	for _, lc := range s.cfg.Listeners {
		if lc.TCP == nil {
			continue
		}
		name := lc.Name
		t := &l4.Target{Listener: name, Direction: lc.DirectionCode(), Passthrough: lc.TLS == nil, LocalCert: s.cert(name), Metadata: s.listenerMD[name], IdleTimeout: lc.TCP.IdleTimeout}
		if b := lc.TCP.Backend; b != "" {
			if t.Cluster = s.backends[b]; t.Cluster == nil {
				return fmt.Errorf("listener %q: no backend %q", name, b) // validated by config.Load
			}
		}
		for _, r := range lc.TCP.SNI {
			sr := l4.SNIRoute{Cluster: s.backends[r.Backend]}
			if sr.Cluster == nil {
				return fmt.Errorf("listener %q: no backend %q", name, r.Backend)
			}
			for _, n := range r.ServerNames {
				sr.Names.Add(n)
			}
			t.SNI = append(t.SNI, sr)
		}
		for _, f := range lc.TCP.Filters {
			fl := s.filters[f]
			if fl == nil {
				return fmt.Errorf("listener %q: no filter %q", name, f)
			}
			t.Filters = append(t.Filters, fl)
		}
		if s.tcp == nil {
			s.tcp = map[string]*l4.Target{}
		}
		s.tcp[name] = t
	}
	return nil
}

// shutdown stops accepting, waits for the connections open until ctx ends (the
// listener's drain_timeout), then closes those left.
func (t *tcpListener) shutdown(ctx context.Context) error {
	t.ln.Close()
	done := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		t.cancel()
		<-done
		return fmt.Errorf("listener %q: connections still open after its drain_timeout were closed", t.name)
	}
}

func (t *tcpListener) close() {
	t.ln.Close()
	t.cancel()
}
