package httpnorm_test

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"

	"github.com/plexus-mesh/plexus/gateway/internal/httpnorm"
)

func ExampleNormalizePath() {
	pol := httpnorm.Policy{Normalize: true, MergeSlashes: true, EscapedSlashes: httpnorm.EscapedSlashesKeep}
	for _, target := range []string{
		"/api/v1/users/42",
		"/public/%2e%2e//admin?x=1",
		"/public/..%2Fadmin",
		`/%7Euser/a%2fb\c`,
	} {
		u, _ := url.ParseRequestURI(target) // as net/http does
		p, err := httpnorm.NormalizePath(httpnorm.RawPath(u), pol)
		fmt.Printf("%-26s %q %v\n", target, p, err)
	}
	_, err := httpnorm.NormalizePath("/a%zz", pol)
	fmt.Println(err)
	// Output:
	// /api/v1/users/42           "/api/v1/users/42" <nil>
	// /public/%2e%2e//admin?x=1  "/admin" <nil>
	// /public/..%2Fadmin         "/public/..%2Fadmin" <nil>
	// /%7Euser/a%2fb\c           "/~user/a%2Fb/c" <nil>
	// httpnorm: invalid percent-encoding in path (at offset 2)
}

func ExampleSetForwarded() {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}

	// A load balancer in trusted passes on what it saw.
	h := http.Header{"X-Forwarded-For": {"198.51.100.9"}, "X-Forwarded-Proto": {"https"}}
	client := httpnorm.SetForwarded(h, httpnorm.Conn{RemoteAddr: "10.1.2.3:40000", Host: "shop.example.com"}, trusted)
	fmt.Println(client, h["X-Forwarded-For"], h["X-Forwarded-Proto"], h["X-Forwarded-Host"])

	// Anyone else gets no say.
	h = http.Header{"X-Forwarded-For": {"10.0.0.1"}, "X-Forwarded-Proto": {"https"}}
	client = httpnorm.SetForwarded(h, httpnorm.Conn{RemoteAddr: "203.0.113.7:5555", Host: "shop.example.com"}, trusted)
	fmt.Println(client, h["X-Forwarded-For"], h["X-Forwarded-Proto"], h["X-Forwarded-Host"])
	// Output:
	// 198.51.100.9 [198.51.100.9, 10.1.2.3] [https] [shop.example.com]
	// 203.0.113.7 [203.0.113.7] [http] [shop.example.com]
}
