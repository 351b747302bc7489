// Command backend is the benchmarks' upstream: the smallest useful answer, over HTTP/1.1
// and h2c, so that what is measured is the proxy in front of it.
package main

import (
	"log"
	"net/http"
	"os"
)

func main() {
	addr := "127.0.0.1:18000"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	body := []byte("hello, world\n")
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Addr:      addr,
		Protocols: p,
		HTTP2:     &http.HTTP2Config{MaxConcurrentStreams: 1000},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h["Content-Type"] = []string{"text/plain"}
			h["Content-Length"] = []string{"13"}
			w.Write(body)
		}),
	}
	log.Fatal(srv.ListenAndServe())
}
