package accesslog_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/plexus-mesh/plexus/gateway/internal/accesslog"
)

func ExampleNew() {
	dir, _ := os.MkdirTemp("", "accesslog")
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "access.log") // or "stdout"
	l, err := accesslog.New(accesslog.Options{Path: file, Format: "text", Status: []string{"4xx", "5xx"}})
	if err != nil {
		panic(err)
	}
	for _, status := range []int{200, 503} {
		if !l.Wants(status) { // a cheap test before building the record
			continue
		}
		l.Log(&accesslog.Record{
			Start:        time.Date(2024, 5, 1, 10, 30, 45, 123e6, time.UTC),
			Duration:     5 * time.Millisecond,
			Method:       "GET",
			Path:         "/orders",
			Protocol:     "HTTP/2",
			Authority:    "shop.example.com",
			Status:       status,
			Flags:        accesslog.NoHealthyUpstream,
			UpstreamTime: -1, // no upstream answered
			Request:      http.Header{"User-Agent": {"curl/8.5.0"}},
		})
	}
	l.Close() // writes what is buffered
	lines, _ := os.ReadFile(file)
	fmt.Print(string(lines))
	accesslog.NoHealthyUpstream.Each(func(code, name string) { fmt.Println(code, name) })
	// Output:
	// [2024-05-01T10:30:45.123Z] "GET /orders HTTP/2" 503 UH 0 0 5 - "-" "curl/8.5.0" "-" "shop.example.com" "-"
	// UH no_healthy_upstream
}
