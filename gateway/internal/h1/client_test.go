package h1

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"
)

// h1Transport is net/http's client, HTTP/1.1 only.
func h1Transport() *http.Transport {
	return &http.Transport{
		ForceAttemptHTTP2:   false,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxIdleConnsPerHost: 4,
	}
}

// hashHandler answers with the SHA-256 of the body, and the method.
var hashHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	tls := ""
	if r.TLS != nil {
		tls = " tls " + r.TLS.ServerName
	}
	fmt.Fprintf(w, "%s %d %s%s", r.Method, n, hex.EncodeToString(h.Sum(nil)), tls)
})

func TestNetHTTPClient(t *testing.T) {
	addr, _ := serve(t, hashHandler)
	tr := h1Transport()
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	var reused int
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if i.Reused {
			reused++
		}
	}}
	for i, size := range []int{0, 1, 4096, 100000, 2 << 20} {
		body := bytes.Repeat([]byte{byte('a' + i)}, size)
		sum := sha256.Sum256(body)
		for _, chunkedBody := range []bool{false, true} {
			var rd io.Reader = bytes.NewReader(body)
			if chunkedBody {
				rd = io.MultiReader(rd) // hides the length: the client chunks it
			}
			req, err := http.NewRequest("POST", "http://"+addr+"/", rd)
			if err != nil {
				t.Fatal(err)
			}
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("POST %d bytes (chunked %v): %v", size, chunkedBody, err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("POST %d %x", size, sum); string(got) != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		}
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasPrefix(string(got), "GET 0 ") || resp.ProtoMinor != 1 {
			t.Fatalf("GET: %q %s", got, resp.Proto)
		}
	}
	if reused == 0 {
		t.Fatal("the client never reused a connection")
	}
}

// selfSigned makes a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "h1 test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"h1.test"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
	s := &Server{Handler: hashHandler, ReadHeaderTimeout: 10 * time.Second}
	go s.Serve(tl)
	defer s.Close()

	tr := h1Transport()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, ServerName: "h1.test"}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	for range 2 {
		resp, err := client.Post("https://"+l.Addr().String()+"/", "text/plain", strings.NewReader("secret"))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		sum := sha256.Sum256([]byte("secret"))
		if want := fmt.Sprintf("POST 6 %x tls h1.test", sum); string(got) != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}

	// A client that never finishes its handshake does not hold the server.
	raw := dial(t, l.Addr().String())
	raw.Write([]byte{0x16, 0x03, 0x01})
	ctx, cancel := contextWithTimeout(10 * time.Second)
	defer cancel()
	raw.Close()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
