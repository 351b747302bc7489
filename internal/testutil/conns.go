package testutil

import (
	"net"
	"testing"
)

// ServeConns accepts ln's connections until the test ends, each handled by h on a
// goroutine of its own, and closes ln then. It returns ln's address.
func ServeConns(t testing.TB, ln net.Listener, h func(net.Conn)) string {
	t.Helper()
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go h(c)
		}
	}()
	return ln.Addr().String()
}
