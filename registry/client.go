package registry

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	orasreg "oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/errcode"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// ClientOptions configure a Client. The zero value reads credentials from docker's
// config.json, verifies TLS with the system's roots, and reaches registries on loopback
// addresses over plain HTTP, as docker does.
type ClientOptions struct {
	// Username and Password, when set, are the credentials for every registry, instead
	// of docker's config.json.
	Username, Password string
	// NoDockerConfig leaves docker's config.json unread.
	NoDockerConfig bool
	// PlainHTTP reaches every registry over plain HTTP; Insecure lists the hosts
	// ("host:port" or "host") reached so besides loopback ones.
	PlainHTTP bool
	Insecure  []string
	// RootCAs verifies registries' certificates; nil: the system's.
	RootCAs *x509.CertPool
	// Timeout bounds each HTTP request to a registry (0: 5 minutes).
	Timeout time.Duration
	// Retry retries requests that met a 5xx, a 429 or a network error, backing off
	// exponentially (oras-go's retry policy, up to about 8s); callers with their own
	// policy (the gateway) leave it off.
	Retry bool
	// AllowLocal lets the client reach link-local and cloud-metadata addresses, which it
	// otherwise refuses to (a reference must not make the gateway fetch from them).
	AllowLocal bool
	// Credentials are per registry host ("host:port" as references name it); hosts
	// without get docker's config.json's, unless NoDockerConfig.
	Credentials map[string]Credential
	// Progress, when set, is told of the bytes of each blob as they move.
	Progress func(desc ocispec.Descriptor, done int64)
	// UserAgent is sent with every request; "plexus" by default.
	UserAgent string
}

// Client pushes, pulls and inspects filters in OCI registries, on oras-go.
type Client struct {
	o      ClientOptions
	auth   *auth.Client
	direct *http.Client // without auth or retries: probes

	mu    sync.Mutex
	plain map[string]bool // loopback hosts: plain HTTP (true) or TLS, as probed
}

// NewClient makes a client. Docker's config.json is read when it is first needed.
func NewClient(o ClientOptions) (*Client, error) {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.UserAgent == "" {
		o.UserAgent = "plexus"
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	if !o.AllowLocal {
		dialer.Control = refuseLocal
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer.DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 30 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	var rt http.RoundTripper = tr
	if o.Retry {
		rt = retry.NewTransport(tr)
	}
	hc := &http.Client{Transport: rt, Timeout: o.Timeout}
	ac := &auth.Client{Client: hc, Cache: auth.NewCache(), Header: http.Header{"User-Agent": {o.UserAgent}}}
	var docker auth.CredentialFunc
	if !o.NoDockerConfig && o.Username == "" && o.Password == "" {
		store, err := credentials.NewStoreFromDocker(credentials.StoreOptions{})
		if err != nil {
			return nil, fmt.Errorf("registry: docker's config.json: %w", err)
		}
		docker = credentials.Credential(store)
	}
	ac.Credential = func(ctx context.Context, host string) (auth.Credential, error) {
		if o.Username != "" || o.Password != "" {
			return auth.Credential{Username: o.Username, Password: o.Password}, nil
		}
		if c, ok := o.Credentials[host]; ok {
			return auth.Credential{Username: c.Username, Password: c.Password}, nil
		}
		if docker != nil {
			return docker(ctx, host)
		}
		return auth.EmptyCredential, nil
	}
	return &Client{o: o, auth: ac, direct: &http.Client{Transport: tr, Timeout: 10 * time.Second}, plain: map[string]bool{}}, nil
}

// ErrUnauthorized is a registry that wants credentials the client does not have, or
// refused those it has.
var ErrUnauthorized = errors.New("registry: unauthorized")

// explain makes oras-go's errors say what to do.
func explain(err error) error {
	var er *errcode.ErrorResponse
	switch {
	case err == nil:
		return nil
	case errors.Is(err, auth.ErrBasicCredentialNotFound):
		return fmt.Errorf("%w: the registry asks for credentials: docker login, or --username with --password-stdin (registry.credentials in a config): %v", ErrUnauthorized, err)
	case errors.As(err, &er) && (er.StatusCode == http.StatusUnauthorized || er.StatusCode == http.StatusForbidden):
		return fmt.Errorf("%w: the registry refused the credentials (%d): %v", ErrUnauthorized, er.StatusCode, err)
	}
	return err
}

// Credential is a user name and password (or token) for a registry.
type Credential struct{ Username, Password string }

// ErrRefused is a pull plexus will not make, or whose answer it will not take: from a
// link-local or cloud-metadata address, or a registry that answered a digest with another.
var ErrRefused = errors.New("registry: refused")

// Permanent reports a failure that trying again cannot mend: a refused pull, content
// whose digest or size is not the one its descriptor says, what is not a filter.
func Permanent(err error) bool {
	for _, e := range []error{ErrRefused, ErrUnsigned, ErrUnauthorized, ErrNotWasm, ErrNotFilter, content.ErrMismatchedDigest, content.ErrTrailingData, content.ErrInvalidDescriptorSize} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// refuseLocal is the dialer's check: no link-local address (169.254.0.0/16, where cloud
// metadata services answer, fe80::/10) and no cloud metadata address of other ranges.
func refuseLocal(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil
	}
	a := ap.Addr().Unmap()
	if a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a == netip.MustParseAddr("fd00:ec2::254") {
		return fmt.Errorf("%w: %s is a link-local or cloud-metadata address; plexus does not fetch from it", ErrRefused, a)
	}
	return nil
}

// IsLoopbackHost reports whether host ("host" or "host:port") is localhost or a loopback
// address: a registry there is reached over plain HTTP unless told otherwise, as docker
// treats 127.0.0.0/8.
func IsLoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && a.IsLoopback()
}

// Reference is a parsed REF: host[:port]/repository, then :tag or @digest.
type Reference = orasreg.Reference

// ParseReference parses a filter's reference (without the oci:// scheme).
func ParseReference(ref string) (Reference, error) {
	r, err := orasreg.ParseReference(ref)
	if err != nil {
		return r, fmt.Errorf("registry: reference %q: %w (want host[:port]/repository:tag or @sha256:...)", ref, err)
	}
	if r.Reference == "" {
		return r, fmt.Errorf("registry: reference %q names no tag or digest (want host[:port]/repository:tag or @sha256:...)", ref)
	}
	return r, nil
}

func (c *Client) repository(ctx context.Context, ref Reference) *remote.Repository {
	return &remote.Repository{Reference: ref, Client: c.auth, PlainHTTP: c.plainHTTP(ctx, ref.Registry)}
}

// plainHTTP reports whether host is reached over plain HTTP: when told (PlainHTTP,
// Insecure), and for a loopback host unless it answers TLS, as docker treats
// 127.0.0.0/8: it asks for /v2/ over HTTPS once, and takes plain HTTP if the answer is
// not TLS.
func (c *Client) plainHTTP(ctx context.Context, host string) bool {
	name, _, err := net.SplitHostPort(host)
	if err != nil {
		name = host
	}
	if c.o.PlainHTTP || slices.Contains(c.o.Insecure, host) || slices.Contains(c.o.Insecure, name) {
		return true
	}
	if !IsLoopbackHost(host) {
		return false
	}
	c.mu.Lock()
	plain, known := c.plain[host]
	c.mu.Unlock()
	if known {
		return plain
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/v2/", nil)
	resp, err := c.direct.Do(req)
	var rh tls.RecordHeaderError
	switch {
	case err == nil:
		resp.Body.Close()
		plain = false
	case errors.As(err, &rh):
		plain = true // it speaks HTTP
	default:
		// Unreachable, or TLS with a certificate not trusted: plain HTTP is the loopback
		// default, and an untrusted certificate must not be mistaken for no TLS.
		var ce *tls.CertificateVerificationError
		if errors.As(err, &ce) {
			return false
		}
		return true
	}
	c.mu.Lock()
	c.plain[host] = plain
	c.mu.Unlock()
	return plain
}

// Push pushes the module wasm to ref as the CNCF Wasm artifact, and returns its
// manifest's descriptor. ref names a tag (or the manifest's own digest).
func (c *Client) Push(ctx context.Context, ref string, wasm []byte, m Meta) (ocispec.Descriptor, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	a, err := Pack(wasm, m)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	repo := c.repository(ctx, r)
	for _, b := range []struct {
		desc ocispec.Descriptor
		data []byte
	}{{a.LayerDesc, a.Layer}, {a.ConfigDesc, a.Config}} {
		if err := c.pushBlob(ctx, repo, b.desc, b.data); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("registry: push %s: %w", ref, explain(err))
		}
	}
	if err := repo.PushReference(ctx, a.ManifestDesc, bytes.NewReader(a.Manifest), r.Reference); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("registry: push %s: manifest: %w", ref, explain(err))
	}
	return a.ManifestDesc, nil
}

func (c *Client) pushBlob(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor, data []byte) error {
	if ok, err := repo.Exists(ctx, desc); err == nil && ok {
		c.progress(desc, desc.Size)
		return nil
	}
	var rd io.Reader = bytes.NewReader(data)
	if c.o.Progress != nil {
		rd = &progressReader{r: rd, desc: desc, report: c.o.Progress}
	}
	err := repo.Push(ctx, desc, rd)
	if errors.Is(err, errdef.ErrAlreadyExists) {
		err = nil
	}
	return err
}

func (c *Client) progress(desc ocispec.Descriptor, n int64) {
	if c.o.Progress != nil {
		c.o.Progress(desc, n)
	}
}

type progressReader struct {
	r      io.Reader
	desc   ocispec.Descriptor
	done   int64
	report func(ocispec.Descriptor, int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	p.report(p.desc, p.done)
	return n, err
}

// Pulled is a filter fetched from a registry, verified against its digests.
type Pulled struct {
	Ref      string             // as asked for
	Desc     ocispec.Descriptor // the manifest's
	Manifest ocispec.Manifest
	Wasm     []byte
	Layout   string // "cncf", "istio-oci", "wasm-to-oci" or "istio-compat"
	// VerifiedBy are the keys (KeyID) whose signatures of it were found good, by the
	// caller: Pull checks no signature.
	VerifiedBy []string
}

// Resolve is the descriptor of the manifest ref names now.
func (c *Client) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc, err := c.repository(ctx, r).Resolve(ctx, r.Reference)
	if err != nil {
		return desc, fmt.Errorf("registry: resolve %s: %w", ref, explain(err))
	}
	if err := checkPinned(r, desc.Digest); err != nil {
		return desc, err
	}
	return desc, nil
}

// checkPinned refuses a registry that answers a digest reference with another digest.
func checkPinned(r Reference, got digest.Digest) error {
	if want, err := r.Digest(); err == nil && want != got {
		return fmt.Errorf("%w: %s answered %s for %s", ErrRefused, r.Registry, got, want)
	}
	return nil
}

// Pull fetches the filter ref names: its manifest, then the module, each checked against
// its digest and size, the module against the Wasm magic.
func (c *Client) Pull(ctx context.Context, ref string) (*Pulled, error) {
	desc, err := c.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	return c.PullDesc(ctx, ref, desc)
}

// PullDesc fetches the filter whose manifest desc describes, in the repository of ref.
func (c *Client) PullDesc(ctx context.Context, ref string, desc ocispec.Descriptor) (*Pulled, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	repo := c.repository(ctx, r)
	if desc.Size > 4<<20 {
		return nil, fmt.Errorf("registry: pull %s: the manifest is %d bytes; a filter's is a few hundred", ref, desc.Size)
	}
	mb, err := content.FetchAll(ctx, repo, desc) // verifies size and digest
	if err != nil {
		return nil, fmt.Errorf("registry: pull %s: manifest %s: %w", ref, desc.Digest, err)
	}
	m, layer, compat, err := ParseManifest(mb)
	if err != nil {
		return nil, fmt.Errorf("pull %s (%s): %w", ref, desc.Digest, err)
	}
	var rd io.ReadCloser
	if rd, err = repo.Fetch(ctx, layer); err == nil {
		var src io.Reader = rd
		if c.o.Progress != nil {
			src = &progressReader{r: rd, desc: layer, report: c.o.Progress}
		}
		var data []byte
		data, err = content.ReadAll(src, layer) // verifies size and digest
		rd.Close()
		if err == nil && compat {
			data, err = Unpack(data)
		}
		if err == nil {
			err = CheckWasm(data)
		}
		if err == nil {
			return &Pulled{Ref: ref, Desc: desc, Manifest: m, Wasm: data, Layout: layoutOf(m, layer, compat)}, nil
		}
	}
	return nil, fmt.Errorf("registry: pull %s (%s): layer %s: %w", ref, desc.Digest, layer.Digest, err)
}

func layoutOf(m ocispec.Manifest, layer ocispec.Descriptor, compat bool) string {
	switch {
	case compat:
		return "istio-compat"
	case layer.MediaType == MediaTypeIstioLayer:
		return "istio-oci"
	case layer.MediaType == MediaTypeWasmToOCI:
		return "wasm-to-oci"
	}
	return "cncf"
}

// Inspection is what inspect shows of a filter.
type Inspection struct {
	Ref          string
	Desc         ocispec.Descriptor
	Manifest     []byte
	Parsed       ocispec.Manifest
	Layer        ocispec.Descriptor
	Layout       string
	Referrers    []ocispec.Descriptor // signatures and other artifacts about it
	ReferrersErr error                // why the referrers could not be listed, if they could not
}

// Inspect fetches ref's manifest and lists what refers to it (signatures), without the
// module itself.
func (c *Client) Inspect(ctx context.Context, ref string) (*Inspection, error) {
	desc, err := c.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	r, _ := ParseReference(ref) // parsed by Resolve
	repo := c.repository(ctx, r)
	mb, err := content.FetchAll(ctx, repo, desc)
	if err != nil {
		return nil, fmt.Errorf("registry: inspect %s: %w", ref, err)
	}
	m, layer, compat, err := ParseManifest(mb)
	if err != nil {
		return nil, fmt.Errorf("inspect %s (%s): %w", ref, desc.Digest, err)
	}
	in := &Inspection{Ref: ref, Desc: desc, Manifest: mb, Parsed: m, Layer: layer, Layout: layoutOf(m, layer, compat)}
	in.ReferrersErr = repo.Referrers(ctx, desc, "", func(rs []ocispec.Descriptor) error {
		in.Referrers = append(in.Referrers, rs...)
		return nil
	})
	return in, nil
}
