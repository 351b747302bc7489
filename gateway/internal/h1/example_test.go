package h1_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/plexus-mesh/plexus/gateway/internal/h1"
)

func ExampleServer() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	s := &h1.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %q", r.Method, r.URL.Path, body)
	})}
	go s.Serve(l)
	defer s.Close()

	resp, err := http.Post("http://"+l.Addr().String()+"/echo", "text/plain", strings.NewReader("hi"))
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, string(b))
	// Output: 200 OK POST /echo "hi"
}
