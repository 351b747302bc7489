package proxywasm

import (
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"net/url"
	"testing"
)

func TestCertProperty(t *testing.T) {
	u, _ := url.Parse("spiffe://cluster.local/ns/default/sa/web")
	c := &x509.Certificate{
		Raw:      []byte("der bytes"),
		Subject:  pkix.Name{CommonName: "web", Organization: []string{"Acme, Inc."}},
		DNSNames: []string{"web.default.svc", "web"},
		URIs:     []*url.URL{u},
	}
	sum := sha256.Sum256(c.Raw)
	for field, want := range map[string]string{
		"subject_peer_certificate":       `CN=web,O=Acme\, Inc.`, // RFC 2253, as Envoy
		"dns_san_peer_certificate":       "web.default.svc",
		"uri_san_peer_certificate":       "spiffe://cluster.local/ns/default/sa/web",
		"sha256_peer_certificate_digest": hex.EncodeToString(sum[:]),
	} {
		got, ok := certProperty(nil, c, field)
		if !ok || string(got) != want {
			t.Errorf("%s: %q (%v), want %q", field, got, ok, want)
		}
	}
	if _, ok := certProperty(nil, &x509.Certificate{}, "uri_san_local_certificate"); ok {
		t.Error("a certificate without URI names has a uri_san")
	}
	if _, ok := certProperty(nil, nil, "subject_local_certificate"); ok {
		t.Error("no certificate has a subject")
	}
}
