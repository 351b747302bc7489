package gateway

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.opentelemetry.io/otel/attribute"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/gateway/internal/telemetry"
	"github.com/plexus-mesh/plexus/registry"
)

// A moduleSource is where filters' modules come from: file: paths (fileSource) and
// oci:// references (ociSource) implement it. fetch returns the module of fc, checked as
// its source can check it; it must not run for long without the network being at fault.
type moduleSource interface {
	fetch(ctx context.Context, cfg *config.Config, fc *config.Filter) (*module, error)
}

// module is a filter's module as a source handed it over.
type module struct {
	wasm   []byte
	source string // where it came from, as /filters shows it: the file, or ref@digest
	digest string // the manifest's digest for an oci:// module; "" for a file
}

// sourceFor is the source of a filter's module.
func (g *Gateway) sourceFor(fc *config.Filter) moduleSource {
	if strings.HasPrefix(fc.Module, "oci://") {
		return g.oci
	}
	return fileSource{}
}

type fileSource struct{}

func (fileSource) fetch(_ context.Context, cfg *config.Config, fc *config.Filter) (*module, error) {
	path := cfg.Path(strings.TrimPrefix(fc.Module, "file:"))
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return &module{wasm: b, source: path}, nil
}

// ociSource pulls modules from registries through a digest-addressed cache: a digest
// reference, or a tag under pull_policy IfNotPresent whose digest is known, never needs
// the network once cached; a tag under Always is held at the digest it last resolved to
// (the refresher resolves it again). What a registry sends is checked against digests
// (oras-go's content.ReadAll) and the Wasm magic before it is cached.
type ociSource struct {
	log  *slog.Logger
	inst *telemetry.Instruments // nil with metrics off
	dir  string                 // Options.ModuleCacheDir
	keep func(digest.Digest) bool

	mu        sync.Mutex
	clientKey string // the registry config the client was made for
	client    *registry.Client
	mirrors   map[string][]string
	policies  []policy // registry.verify
	cache     *registry.Cache
	cacheKey  string
	current   map[string]digest.Digest // what each tag of an Always filter is held at
	bad       map[string]digest.Digest // a tag's digest that did not load
}

func newOCISource(log *slog.Logger, inst *telemetry.Instruments, dir string, keep func(digest.Digest) bool) *ociSource {
	return &ociSource{log: log, inst: inst, dir: dir, keep: keep, current: map[string]digest.Digest{}, bad: map[string]digest.Digest{}}
}

// setup makes the client and cache for cfg's registry section, again only when it changed.
func (s *ociSource) setup(cfg *config.Config) (*registry.Client, *registry.Cache, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := cfg.Registry
	key, _ := json.Marshal(r)
	if s.client == nil || s.clientKey != string(key) {
		o := registry.ClientOptions{Insecure: r.Insecure, Timeout: r.PullTimeout}
		creds := map[string]registry.Credential{}
		for _, c := range r.Credentials {
			pass := c.Password
			if c.PasswordFile != "" {
				b, err := os.ReadFile(cfg.Path(c.PasswordFile))
				if err != nil {
					return nil, nil, fmt.Errorf("registry %s: %w", c.Host, err)
				}
				pass = strings.TrimRight(string(b), "\r\n")
			}
			creds[c.Host] = registry.Credential{Username: c.Username, Password: pass}
		}
		if len(r.CA) > 0 {
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			for _, f := range r.CA {
				pem, err := os.ReadFile(cfg.Path(f))
				if err != nil {
					return nil, nil, fmt.Errorf("registry CA: %w", err)
				}
				if !pool.AppendCertsFromPEM(pem) {
					return nil, nil, fmt.Errorf("registry CA %s: no PEM certificate in it", f)
				}
			}
			o.RootCAs = pool
		}
		o.Credentials = creds
		c, err := registry.NewClient(o)
		if err != nil {
			return nil, nil, err
		}
		var pols []policy
		for _, vp := range r.Verify {
			p := policy{match: vp.Match}
			for _, f := range vp.Keys {
				b, err := os.ReadFile(cfg.Path(f))
				if err != nil {
					return nil, nil, fmt.Errorf("registry.verify %s: %w", vp.Match, err)
				}
				k, err := registry.LoadPublicKey(b)
				if err != nil {
					return nil, nil, fmt.Errorf("registry.verify %s: %s: %w", vp.Match, f, err)
				}
				p.keys, p.ids = append(p.keys, k), append(p.ids, registry.KeyID(k))
			}
			pols = append(pols, p)
		}
		s.client, s.clientKey, s.mirrors, s.policies = c, string(key), r.Mirrors, pols
	}
	dir := s.dir
	if r.Cache.Dir != "" {
		dir = cfg.Path(r.Cache.Dir)
	}
	ck := fmt.Sprintf("%s|%d", dir, r.Cache.MaxSize)
	if s.cache == nil || s.cacheKey != ck {
		c, err := registry.OpenCache(dir, int64(r.Cache.MaxSize))
		if err != nil {
			return nil, nil, err
		}
		s.cache, s.cacheKey = c, ck
	}
	return s.client, s.cache, nil
}

func (s *ociSource) fetch(ctx context.Context, cfg *config.Config, fc *config.Filter) (*module, error) {
	client, cache, err := s.setup(cfg)
	if err != nil {
		return nil, err
	}
	ref := strings.TrimPrefix(fc.Module, "oci://")
	r, err := registry.ParseReference(ref) // checked by config
	if err != nil {
		return nil, err
	}
	// cached is the module of manifest d from the cache, if there and (under a signature
	// policy) signed by one of its keys.
	cached := func(d digest.Digest) (*module, bool) {
		cm, ok := cache.Get(d)
		if !ok {
			return nil, false
		}
		if err := s.admit(ctx, client, cache, ref, cm); err != nil {
			s.log.Warn("registry: a cached module is not signed as the policy now asks; pulled again", "filter", fc.Name, "ref", ref, "digest", d, "error", err)
			return nil, false
		}
		return s.module(ref, cm), true
	}
	if d, err := r.Digest(); err == nil {
		if m, ok := cached(d); ok {
			s.record(fc.Name, "cached", 0, 0)
			return m, nil
		}
		return s.pull(ctx, cfg, fc, client, cache, ref)
	}
	s.mu.Lock()
	held, isHeld := s.current[ref]
	s.mu.Unlock()
	if fc.PullPolicy == config.PullAlways && isHeld {
		if m, ok := cached(held); ok {
			return m, nil
		}
	}
	if fc.PullPolicy == config.PullIfNotPresent {
		if d, ok := cache.Tag(ref); ok {
			if m, ok := cached(d); ok {
				s.record(fc.Name, "cached", 0, 0)
				return m, nil
			}
		}
	}
	m, err := s.pull(ctx, cfg, fc, client, cache, ref)
	if err != nil && fc.PullPolicy == config.PullAlways {
		// The registry is out of reach, or its new digest refused: the tag's last good
		// digest, if cached, serves.
		if d, ok := cache.Tag(ref); ok {
			if cm, ok := cached(d); ok {
				s.log.Warn("registry: pull failed; the tag's last pulled digest serves meanwhile",
					"filter", fc.Name, "ref", ref, "digest", d, "error", err)
				return cm, nil
			}
		}
	}
	return m, err
}

// policy is a registry.verify entry, its keys read.
type policy struct {
	match string
	keys  []crypto.PublicKey
	ids   []string // KeyID of each
}

// policyFor is the most specific signature policy that ref (host/repository:tag or
// @digest) falls under, nil for none.
func (s *ociSource) policyFor(ref string) *policy {
	r, err := registry.ParseReference(ref)
	if err != nil {
		return nil
	}
	repo := r.Registry + "/" + r.Repository
	s.mu.Lock()
	defer s.mu.Unlock()
	var best *policy
	for i := range s.policies {
		p := &s.policies[i]
		m := strings.TrimSuffix(p.match, "/")
		ok := m == r.Registry || m == repo ||
			strings.HasSuffix(m, "/*") && strings.HasPrefix(repo, strings.TrimSuffix(m, "*"))
		if ok && (best == nil || len(m) > len(best.match)) {
			best = p
		}
	}
	return best
}

// admit checks a cached module against the signature policy of ref: signed by a key the
// policy trusts, as found when it was pulled, or as its signatures say now.
func (s *ociSource) admit(ctx context.Context, client *registry.Client, cache *registry.Cache, ref string, cm *registry.CachedModule) error {
	pol := s.policyFor(ref)
	if pol == nil {
		return nil
	}
	for _, id := range cm.VerifiedBy {
		if slices.Contains(pol.ids, id) {
			return nil
		}
	}
	desc := ocispec.Descriptor{MediaType: cm.MediaType, Digest: cm.Manifest, Size: cm.ManifestSize}
	k, err := client.Verify(ctx, ref, desc, pol.keys)
	if err != nil {
		return err
	}
	cache.Verified(cm.Manifest, pol.ids[k])
	return nil
}

func (s *ociSource) module(ref string, m *registry.CachedModule) *module {
	src := ref
	if !strings.Contains(ref, "@") {
		src = ref + "@" + string(m.Manifest)
	}
	return &module{wasm: m.Wasm, source: "oci://" + src, digest: string(m.Manifest)}
}

// pull fetches ref (from its mirrors first), with retries backing off from 1s, all
// within the registry's pull_timeout; what arrives is cached, and a tag is held at it.
func (s *ociSource) pull(ctx context.Context, cfg *config.Config, fc *config.Filter, client *registry.Client, cache *registry.Cache, ref string) (*module, error) {
	r, _ := registry.ParseReference(ref)
	ctx, cancel := context.WithTimeout(ctx, cfg.Registry.PullTimeout)
	defer cancel()
	start := time.Now()
	var p *registry.Pulled
	var err error
	var src string // where it came from: ref, or a mirror's copy of it
	backoff := time.Second
	for attempt := 0; ; attempt++ {
		for _, from := range slices.Concat(s.mirrorsOf(r.Registry), []string{r.Registry}) {
			src = ref
			if from != r.Registry {
				src = from + "/" + r.Repository + refSuffix(r)
			}
			if p, err = client.Pull(ctx, src); err == nil {
				break
			}
			if from != r.Registry {
				s.log.Debug("registry: mirror failed", "filter", fc.Name, "mirror", from, "error", err)
			}
		}
		if err == nil || attempt >= *cfg.Registry.PullRetries || ctx.Err() != nil || registry.Permanent(err) {
			break
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff *= 2
	}
	took := time.Since(start)
	if err != nil {
		result := "failed"
		if registry.Permanent(err) {
			result = "refused"
		}
		s.record(fc.Name, result, took, 0)
		s.log.Error("registry: pull failed", "filter", fc.Name, "ref", ref, "duration", took, "result", result, "error", err)
		return nil, err
	}
	p.Ref = ref
	if pol := s.policyFor(ref); pol != nil {
		// Nothing unsigned is cached, let alone run.
		k, verr := client.Verify(ctx, src, p.Desc, pol.keys) // a mirror holds the signatures too
		if verr != nil {
			s.record(fc.Name, "refused", took, 0)
			s.log.Error("registry: pull refused: not signed by a key the policy trusts", "filter", fc.Name, "ref", ref, "digest", p.Desc.Digest, "policy", pol.match, "error", verr)
			return nil, verr
		}
		p.VerifiedBy = []string{pol.ids[k]}
		s.log.Info("registry: signature verified", "filter", fc.Name, "ref", ref, "digest", p.Desc.Digest, "key", pol.ids[k])
	}
	cm, err := cache.Put(p, s.keep)
	if err != nil {
		s.log.Warn("registry: module not cached", "filter", fc.Name, "ref", ref, "error", err)
	}
	if r.Reference != "" && !strings.Contains(r.Reference, ":") {
		cache.SetTag(ref, p.Desc.Digest)
		s.mu.Lock()
		s.current[ref] = p.Desc.Digest
		s.mu.Unlock()
	}
	s.record(fc.Name, "ok", took, len(p.Wasm))
	s.log.Info("registry: pulled", "filter", fc.Name, "ref", ref, "digest", p.Desc.Digest, "bytes", len(p.Wasm), "layout", p.Layout, "duration", took)
	return s.module(ref, cm), nil
}

// resolve is the digest ref (a tag) names in its registry now.
func (s *ociSource) resolve(ctx context.Context, cfg *config.Config, ref string) (digest.Digest, error) {
	client, _, err := s.setup(cfg)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Registry.PullTimeout)
	defer cancel()
	d, err := client.Resolve(ctx, ref)
	return d.Digest, err
}

// hold holds a tag at d.
func (s *ociSource) hold(ref string, d digest.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current[ref] = d
}

// markBad remembers that ref's digest d did not load, so that the refresher does not try
// it again until the tag moves on.
func (s *ociSource) markBad(ref string, d digest.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bad[ref] = d
}

func (s *ociSource) isBad(ref string, d digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bad[ref] == d
}

// release lets a tag be resolved again at its next fetch.
func (s *ociSource) release(ref string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.current, ref)
}

func (s *ociSource) mirrorsOf(host string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mirrors[host]
}

func refSuffix(r registry.Reference) string {
	if strings.Contains(r.Reference, ":") {
		return "@" + r.Reference
	}
	return ":" + r.Reference
}

func (s *ociSource) record(filter, result string, took time.Duration, bytes int) {
	if s.inst == nil {
		return
	}
	s.inst.Pulls.With(telemetry.Key{A: filter, B: result}, pullAttrs).Record(int64(took))
	if bytes > 0 {
		s.inst.PullBytes.With(telemetry.Key{A: filter}, filterAttrs).Add(int64(bytes))
	}
}

func pullAttrs(k telemetry.Key) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String("plexus.filter", k.A), attribute.String("plexus.result", k.B)}
}

func filterAttrs(k telemetry.Key) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String("plexus.filter", k.A)}
}
