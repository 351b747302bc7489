// Command backend is the quickstart's demo upstream: it answers every request with a JSON
// echo of what it received, and which of its addresses received it.
//
//	go run ./examples/quickstart/backend 127.0.0.1:9000 127.0.0.1:9001
package main

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	addrs := os.Args[1:]
	if len(addrs) == 0 {
		addrs = []string{"127.0.0.1:9000"}
	}
	errs := make(chan error, len(addrs))
	for _, addr := range addrs {
		srv := &http.Server{Addr: addr, Handler: echo(addr), ReadHeaderTimeout: 10 * time.Second}
		go func() { errs <- srv.ListenAndServe() }()
		fmt.Printf("demo backend listening on %s\n", addr)
	}
	log.Fatal(<-errs)
}

func echo(addr string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		// /status/503 answers with that status, to try retries and errors.
		if rest, ok := strings.CutPrefix(r.URL.Path, "/status/"); ok {
			if code, err := strconv.Atoi(rest); err == nil && code >= 200 && code <= 599 {
				w.WriteHeader(code)
			}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]any{
			"backend": addr,
			"method":  r.Method,
			"path":    r.URL.Path,
			"query":   r.URL.RawQuery,
			"host":    r.Host,
			"proto":   r.Proto,
			"headers": r.Header,
		})
	})
}
