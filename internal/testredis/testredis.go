// Package testredis runs a real redis-server for a test, on a 127.0.0.1 port the OS
// picked, and lets the test take it down, stall it and bring it back, as a Redis in
// production fails.
package testredis

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is one redis-server, stopped when the test ends.
type Server struct {
	Addr string // host:port

	tb   testing.TB
	bin  string
	conf string   // a config file to start with, for a sentinel
	args []string // more arguments to redis-server
	mu   sync.Mutex
	cmd  *exec.Cmd // nil while stopped
}

// Start starts redis-server with no persistence, and args after the others (such as
// "--cluster-enabled", "yes"). It skips the test when the binary is missing
// (scripts/deps.sh installs it).
func Start(tb testing.TB, args ...string) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Skip("redis-server is not installed (scripts/deps.sh installs it)")
	}
	s := &Server{tb: tb, bin: bin, args: args}
	tb.Cleanup(s.Stop)
	for attempt := 0; ; attempt++ {
		s.Addr = freeAddr(tb)
		if err := s.start(); err == nil {
			return s
		} else if attempt == 2 {
			tb.Fatal(err)
		}
	}
}

// StartSentinel starts a Redis Sentinel that watches the master at masterAddr under name,
// alone (a quorum of 1).
func StartSentinel(tb testing.TB, name, masterAddr string) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Skip("redis-server is not installed (scripts/deps.sh installs it)")
	}
	host, port, _ := net.SplitHostPort(masterAddr)
	conf := filepath.Join(tb.TempDir(), "sentinel.conf") // the sentinel rewrites it
	body := fmt.Sprintf("sentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s 1000\n", name, host, port, name)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		tb.Fatal(err)
	}
	s := &Server{tb: tb, bin: bin, conf: conf}
	tb.Cleanup(s.Stop)
	s.Addr = freeAddr(tb)
	if err := s.start(); err != nil {
		tb.Fatal(err)
	}
	return s
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (s *Server) start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	var args []string
	if s.conf != "" {
		args = append(args, s.conf, "--sentinel")
	}
	args = append(args, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning")
	cmd := exec.Command(s.bin, append(args, s.args...)...)
	cmd.Dir = s.tb.TempDir() // where a cluster node keeps its nodes.conf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for !s.Ping() {
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("redis-server on %s did not answer PING", s.Addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// Ping reports whether the server answers PING within 100ms.
func (s *Server) Ping() bool {
	c, err := net.DialTimeout("tcp", s.Addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(100 * time.Millisecond))
	fmt.Fprint(c, "PING\r\n")
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.HasPrefix(line, "+PONG")
}

// Do sends one command (its words, sent as a RESP array of bulk strings) and returns the
// first line of the reply.
func (s *Server) Do(words ...string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(words))
	for _, w := range words {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(w), w)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(line, "$") { // a bulk string: its bytes follow
		n, _ := strconv.Atoi(strings.TrimSpace(line[1:]))
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// Stop kills the server: connections to it are refused. It is safe to call twice.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd != nil {
		cmd.Process.Signal(syscall.SIGCONT) // a stalled server dies too
		cmd.Process.Kill()
		cmd.Wait()
	}
}

// Restart starts the server again on the same address, empty.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.tb.Fatal(err)
	}
}

// Stall stops the process (SIGSTOP): connections open, nothing answers. Resume undoes it.
func (s *Server) Stall() { s.signal(syscall.SIGSTOP) }

// Resume continues a stalled server.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.cmd.Process.Signal(sig)
	}
}
