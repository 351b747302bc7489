// Command load is the benchmarks' load generator for what h2load cannot do here (Debian's
// has no HTTP/3): N clients, each one request at a time, for a while, against one URL,
// over h2 or h3 (TLS, certificate checks off: the benchmarks' certificates are their own).
// It prints "rps p50_ms p99_ms" on one line, as bench/compare.sh reads it.
//
//	load -proto h3 -c 64 -d 5s https://127.0.0.1:18443/
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go/http3"
)

func main() {
	proto := flag.String("proto", "h3", "h2 or h3")
	clients := flag.Int("c", 64, "clients, each with one request in flight")
	conns := flag.Int("conns", 0, "connections the clients share; 0: one per client")
	dur := flag.Duration("d", 5*time.Second, "how long to run")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: load [-proto h2|h3] [-c N] [-d 5s] URL")
		os.Exit(2)
	}
	url := flag.Arg(0)
	tlsConf := &tls.Config{InsecureSkipVerify: true}
	newTransport := func() http.RoundTripper {
		if *proto == "h3" {
			return &http3.Transport{TLSClientConfig: tlsConf}
		}
		p := new(http.Protocols)
		p.SetHTTP2(true)
		return &http.Transport{TLSClientConfig: tlsConf, Protocols: p, ForceAttemptHTTP2: true}
	}
	n := *conns
	if n <= 0 || n > *clients {
		n = *clients
	}
	transports := make([]http.RoundTripper, n)
	for i := range transports {
		transports[i] = newTransport()
	}

	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	var failed int
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < *clients; i++ {
		c := &http.Client{Transport: transports[i%n]}
		wg.Go(func() {
			var mine []time.Duration
			bad := 0
			for ctx.Err() == nil {
				t := time.Now()
				resp, err := c.Get(url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					bad++
					continue
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			failed += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(lat) == 0 {
		log.Fatalf("no request succeeded (%d failed)", failed)
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "load: %d requests failed\n", failed)
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
	fmt.Printf("%.0f %.3f %.3f\n", float64(len(lat))/elapsed.Seconds(), q(0.50), q(0.99))
}
