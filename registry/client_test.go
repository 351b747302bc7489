package registry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
)

// testModule is a module's bytes: the Wasm header, then n random bytes (the client
// checks the magic, not what follows).
func testModule(n int) []byte {
	b := make([]byte, 8+n)
	copy(b, "\x00asm\x01\x00\x00\x00")
	rand.Read(b[8:])
	return b
}

func testClient(t *testing.T) *Client {
	t.Helper()
	c, err := NewClient(ClientOptions{NoDockerConfig: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startPlexusRegistry serves a plexus registry on loopback; it returns host:port.
func startPlexusRegistry(t *testing.T) string {
	t.Helper()
	_, ts, _ := newTestServer(t, ServerOptions{})
	return strings.TrimPrefix(ts.URL, "http://")
}

// startDistribution starts the CNCF distribution registry (Debian's docker-registry) on a
// loopback port; it returns host:port.
func startDistribution(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Fatal("docker-registry is not installed (scripts/deps.sh installs it)")
	}
	dir := t.TempDir()
	for attempt := 0; ; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		conf := filepath.Join(dir, "config.yml")
		os.WriteFile(conf, fmt.Appendf(nil, "version: 0.1\nlog: {level: error}\nstorage:\n  filesystem: {rootdirectory: %s}\n  delete: {enabled: true}\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr), 0o644)
		cmd := exec.Command(bin, "serve", conf)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-exited })
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-exited:
				if attempt < 3 {
					goto again // the port went to someone else meanwhile
				}
				t.Fatal("docker-registry exited")
			default:
			}
			if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
				resp.Body.Close()
				return addr
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("docker-registry did not answer within 30s")
	again:
	}
}

// TestPushPull: plexus pushes a filter to its own registry and to the CNCF distribution
// registry, over plain HTTP without being told (loopback); pulls it back byte for byte;
// and oras-go, reading the same manifest directly, sees the CNCF Wasm artifact layout.
func TestPushPull(t *testing.T) {
	c := testClient(t)
	ctx := context.Background()
	wasm := testModule(3 << 20)
	for name, host := range map[string]string{"plexus": startPlexusRegistry(t), "distribution": startDistribution(t)} {
		t.Run(name, func(t *testing.T) {
			ref := host + "/filters/auth:1.0"
			desc, err := c.Push(ctx, ref, wasm, Meta{Description: "auth filter", ConfigSchema: []byte(`{"type":"object"}`)})
			if err != nil {
				t.Fatal(err)
			}
			p, err := c.Pull(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p.Wasm, wasm) || p.Desc.Digest != desc.Digest || p.Layout != "cncf" {
				t.Errorf("pulled %d bytes, digest %s, layout %s; want the %d pushed, %s, cncf", len(p.Wasm), p.Desc.Digest, p.Layout, len(wasm), desc.Digest)
			}
			// By digest, too.
			if p, err := c.Pull(ctx, host+"/filters/auth@"+string(desc.Digest)); err != nil || !bytes.Equal(p.Wasm, wasm) {
				t.Errorf("pull by digest: %v", err)
			}
			// oras-go directly.
			repo, err := remote.NewRepository(host + "/filters/auth")
			if err != nil {
				t.Fatal(err)
			}
			repo.PlainHTTP = true
			md, err := repo.Resolve(ctx, "1.0")
			if err != nil {
				t.Fatal(err)
			}
			mb, err := content.FetchAll(ctx, repo, md)
			if err != nil {
				t.Fatal(err)
			}
			var m ocispec.Manifest
			json.Unmarshal(mb, &m)
			if m.Config.MediaType != MediaTypeWasmConfig || len(m.Layers) != 1 || m.Layers[0].MediaType != MediaTypeWasm ||
				m.Annotations[AnnotationDescription] != "auth filter" || m.Annotations[AnnotationConfigSchema] != `{"type":"object"}` || m.Annotations[AnnotationABI] != "proxy-wasm/0.2.1" {
				t.Errorf("oras-go reads the manifest as %s", mb)
			}
			layer, err := content.FetchAll(ctx, repo, m.Layers[0])
			if err != nil || !bytes.Equal(layer, wasm) {
				t.Errorf("oras-go's layer: %d bytes, %v", len(layer), err)
			}
			var cfg map[string]any
			cb, _ := content.FetchAll(ctx, repo, m.Config)
			json.Unmarshal(cb, &cfg)
			if cfg["architecture"] != "wasm" || cfg["os"] != "wasip1" {
				t.Errorf("the config: %s", cb)
			}
			in, err := c.Inspect(ctx, ref)
			if err != nil || in.Desc.Digest != desc.Digest || in.Layer.Size != int64(len(wasm)) {
				t.Errorf("inspect: %+v, %v", in, err)
			}
		})
	}
}

// pushRaw pushes a manifest of the given layer and config types with oras-go, as another
// tool would have published a module.
func pushRaw(t *testing.T, host, repoName, tag, configType string, layers map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	repo, err := remote.NewRepository(host + "/" + repoName)
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	cfg := []byte("{}")
	cdesc := ocispec.Descriptor{MediaType: configType, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	if err := repo.Push(ctx, cdesc, bytes.NewReader(cfg)); err != nil {
		t.Fatal(err)
	}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cdesc}
	m.SchemaVersion = 2
	for mt, b := range layers {
		d := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
		if err := repo.Push(ctx, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		m.Layers = append(m.Layers, d)
	}
	mb, _ := json.Marshal(m)
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	if err := repo.PushReference(ctx, md, bytes.NewReader(mb), tag); err != nil {
		t.Fatal(err)
	}
}

func tarGz(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, b := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
		tw.Write(b)
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

// TestPullLayouts: modules published for Istio (its oci and compat variants) and with
// wasm-to-oci load; what is not a module, or not one module, is refused with why.
func TestPullLayouts(t *testing.T) {
	host := startPlexusRegistry(t)
	c := testClient(t)
	wasm := testModule(1000)
	pushRaw(t, host, "istio/oci", "1", MediaTypeIstioConfig, map[string][]byte{MediaTypeIstioLayer: wasm})
	pushRaw(t, host, "istio/compat", "1", "application/vnd.oci.image.config.v1+json", map[string][]byte{mediaTypeOCITarGzip: tarGz(t, map[string][]byte{"plugin.wasm": wasm, "README": []byte("hi")})})
	pushRaw(t, host, "wasm-to-oci", "1", "application/vnd.wasm.config.v1+json", map[string][]byte{MediaTypeWasmToOCI: wasm})
	pushRaw(t, host, "bad/magic", "1", MediaTypeWasmConfig, map[string][]byte{MediaTypeWasm: []byte("#!/bin/sh\necho not wasm\n")})
	pushRaw(t, host, "bad/image", "1", "application/vnd.oci.image.config.v1+json", map[string][]byte{"application/vnd.oci.image.layer.v1.tar": []byte("x")})
	pushRaw(t, host, "bad/compat", "1", "application/vnd.oci.image.config.v1+json", map[string][]byte{mediaTypeOCITarGzip: tarGz(t, map[string][]byte{"a.wasm": wasm, "b.wasm": wasm})})
	// A manifest that says its module is larger than plexus takes: refused before a byte
	// of it is fetched.
	{
		ctx := context.Background()
		repo, _ := remote.NewRepository(host + "/bad/huge")
		repo.PlainHTTP = true
		small := testModule(10)
		ld := ocispec.Descriptor{MediaType: MediaTypeWasm, Digest: digest.FromBytes(small), Size: int64(len(small))}
		repo.Push(ctx, ld, bytes.NewReader(small))
		cfg := []byte("{}")
		cd := ocispec.Descriptor{MediaType: MediaTypeWasmConfig, Digest: digest.FromBytes(cfg), Size: 2}
		repo.Push(ctx, cd, bytes.NewReader(cfg))
		ld.Size = MaxModuleSize + 1
		m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: []ocispec.Descriptor{ld}}
		m.SchemaVersion = 2
		mb, _ := json.Marshal(m)
		md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
		if err := repo.PushReference(ctx, md, bytes.NewReader(mb), "1"); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ repo, layout, err string }{
		{"bad/huge", "", "more than the 67108864 allowed"},
		{"istio/oci", "istio-oci", ""},
		{"istio/compat", "istio-compat", ""},
		{"wasm-to-oci", "wasm-to-oci", ""},
		{"bad/magic", "", "not a WebAssembly module"},
		{"bad/image", "", "want one Wasm layer"},
		{"bad/compat", "", "no plugin.wasm and 2 other .wasm files"},
	} {
		p, err := c.Pull(context.Background(), host+"/"+tc.repo+":1")
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: %v; want an error that says %q", tc.repo, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.repo, err)
		case tc.err == "" && (!bytes.Equal(p.Wasm, wasm) || p.Layout != tc.layout):
			t.Errorf("%s: %d bytes, layout %s; want the module, %s", tc.repo, len(p.Wasm), p.Layout, tc.layout)
		}
	}
}

// TestLyingRegistry: a registry that serves other bytes than the digests say, or answers
// a digest reference with another manifest, is caught; nothing it sent is returned.
func TestLyingRegistry(t *testing.T) {
	srv, err := NewServer(t.TempDir(), ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var lie string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if lie == "layer" && strings.Contains(r.URL.Path, "/blobs/") && r.Method == "GET" {
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, r)
			b := rec.Body.Bytes()
			if len(b) > 100 {
				b[100] ^= 0xff // one byte flipped
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(b)
			return
		}
		if lie != "" && strings.HasSuffix(r.URL.Path, "/manifests/"+lie) {
			// Asked for one manifest by its digest, it serves another.
			r.URL.Path = strings.TrimSuffix(r.URL.Path, lie) + "2"
		}
		srv.ServeHTTP(w, r)
	}))
	defer ts.Close()
	host := strings.TrimPrefix(ts.URL, "http://")
	c := testClient(t)
	ctx := context.Background()
	v1, err := c.Push(ctx, host+"/f/x:1", testModule(1000), Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(ctx, host+"/f/x:2", testModule(1000), Meta{}); err != nil {
		t.Fatal(err)
	}
	lie = "layer"
	if p, err := c.Pull(ctx, host+"/f/x:1"); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("a layer whose bytes differ from its digest: %v, %v; want a digest error", p != nil, err)
	}
	lie = string(v1.Digest)
	if p, err := c.Pull(ctx, host+"/f/x@"+string(v1.Digest)); err == nil {
		t.Errorf("asked for %s, the client took %s", v1.Digest, p.Desc.Digest)
	}
	lie = ""
	if _, err := c.Pull(ctx, host+"/f/x@"+string(v1.Digest)); err != nil {
		t.Errorf("pull by digest from an honest registry: %v", err)
	}
}

// TestRefusesLinkLocal: a reference to a link-local (cloud metadata) address is never
// fetched.
func TestRefusesLinkLocal(t *testing.T) {
	c := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Pull(ctx, "169.254.169.254:80/latest/meta-data:1")
	if err == nil || !strings.Contains(err.Error(), "link-local") {
		t.Errorf("pulling from 169.254.169.254: %v; want it refused as link-local", err)
	}
}

// TestBearerAuth: a registry that hands out bearer tokens (the distribution spec's token
// flow, as Docker Hub and most cloud registries) for basic credentials: the client gets
// one with the user's password, from the credentials given or from docker's
// config.json, and fails without them.
func TestBearerAuth(t *testing.T) {
	srv, err := NewServer(t.TempDir(), ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var host string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			if u, p, ok := r.BasicAuth(); !ok || u != "ci" || p != "s3cret" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			fmt.Fprint(w, `{"token":"tok-123"}`)
			return
		}
		if r.Header.Get("Authorization") != "Bearer tok-123" {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="plexus-test"`, host))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		srv.ServeHTTP(w, r)
	}))
	defer ts.Close()
	host = strings.TrimPrefix(ts.URL, "http://")
	ctx := context.Background()
	ref := host + "/private/f:1"
	anon := testClient(t)
	if _, err := anon.Push(ctx, ref, testModule(100), Meta{}); err == nil {
		t.Fatal("pushed without credentials")
	}
	c, err := NewClient(ClientOptions{Credentials: map[string]Credential{host: {"ci", "s3cret"}}, NoDockerConfig: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(ctx, ref, testModule(100), Meta{}); err != nil {
		t.Fatalf("push with a token: %v", err)
	}
	// docker's config.json, as `docker login` leaves it.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.json"), fmt.Appendf(nil, `{"auths":{%q:{"auth":"Y2k6czNjcmV0"}}}`, host), 0o600) // ci:s3cret
	t.Setenv("DOCKER_CONFIG", dir)
	dc, err := NewClient(ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dc.Pull(ctx, ref); err != nil {
		t.Errorf("pull with docker's config.json: %v", err)
	}
}
