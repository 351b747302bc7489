package h1

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"strconv"
	"testing"
	"unsafe"
)

var helloBody = []byte("Hello, World!")

// helloHandler is the benchmark's trivial handler: a 13-byte body.
var helloHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(helloBody) })

// BenchmarkServer compares this server with net/http's, same handler, over loopback:
// a keep-alive raw client sends GETs one after the other (seq), or several such
// clients at once (parallel). allocs/op counts both sides, the client allocating
// nothing.
func BenchmarkServer(b *testing.B) {
	servers := []struct {
		name  string
		start func(b *testing.B) string
	}{
		{"h1", func(b *testing.B) string {
			l := listen(b)
			s := &Server{Handler: helloHandler}
			go s.Serve(l)
			b.Cleanup(func() { s.Close() })
			return l.Addr().String()
		}},
		{"nethttp", func(b *testing.B) string {
			l := listen(b)
			s := &http.Server{Handler: helloHandler}
			go s.Serve(l)
			b.Cleanup(func() { s.Close() })
			return l.Addr().String()
		}},
	}
	for _, srv := range servers {
		b.Run(srv.name+"/seq", func(b *testing.B) {
			addr := srv.start(b)
			c := newBenchClient(b, addr)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				c.do(b)
			}
		})
		b.Run(srv.name+"/parallel", func(b *testing.B) {
			addr := srv.start(b)
			b.ReportAllocs()
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c := newBenchClient(b, addr)
				for pb.Next() {
					c.do(b)
				}
			})
		})
	}
}

func listen(b *testing.B) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// benchClient is a keep-alive HTTP/1.1 client that allocates nothing per request:
// it reads the status line and header section, and skips the Content-Length body.
type benchClient struct {
	c   net.Conn
	br  *bufio.Reader
	req []byte
}

func newBenchClient(b *testing.B, addr string) *benchClient {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return &benchClient{
		c:   c,
		br:  bufio.NewReaderSize(c, 4096),
		req: []byte("GET /hello HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"),
	}
}

var clPrefix = []byte("content-length:")

func (c *benchClient) do(b *testing.B) {
	if _, err := c.c.Write(c.req); err != nil {
		b.Fatal(err)
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil || !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		b.Fatalf("status line %q: %v", line, err)
	}
	n := -1
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			b.Fatal(err)
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > len(clPrefix) && bytes.EqualFold(line[:len(clPrefix)], clPrefix) {
			n, err = strconv.Atoi(string(bytes.TrimSpace(line[len(clPrefix):])))
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	if n != len(helloBody) {
		b.Fatalf("Content-Length %d", n)
	}
	if _, err := c.br.Discard(n); err != nil {
		b.Fatal(err)
	}
}

// TestExchangeSize: a request's exchange is one allocation, which BenchmarkServer's
// B/op shows: past 512 bytes it takes the next size class, 576.
func TestExchangeSize(t *testing.T) {
	if n := unsafe.Sizeof(exchange{}); n > 512 {
		t.Errorf("exchange is %d bytes, over the 512-byte size class", n)
	}
}
