package registry

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/plexus-mesh/plexus/internal/atomicfile"
)

// Cache keeps pulled modules on disk by their manifest's digest, so that a digest
// reference never needs the registry again once pulled, and a tag's last digest is known
// when the registry cannot be reached. Every read is checked against the module's digest:
// a file changed on disk is a miss, never code that runs. The cache stays under a size by
// evicting the modules used least recently, except those the caller keeps (in use).
//
// Layout: DIR/sha256/HEX.wasm (the module) and DIR/sha256/HEX.json (its entry), HEX the
// manifest's digest; DIR/tags.json maps references to the digest they last resolved to.
type Cache struct {
	dir string // "" keeps everything in memory
	max int64

	mu   sync.Mutex
	mem  map[digest.Digest]*CachedModule // the entries read or written by this process
	tags map[string]digest.Digest
}

// CachedModule is a module in the cache.
type CachedModule struct {
	Manifest digest.Digest `json:"manifest"` // the manifest's digest: the cache's key
	Module   digest.Digest `json:"module"`   // sha256 of Wasm
	Ref      string        `json:"ref"`      // the reference it was pulled by
	Layout   string        `json:"layout"`
	Size     int64         `json:"size"`
	// The manifest's descriptor, to check its signatures again, and the keys (KeyID)
	// whose signatures were found good.
	ManifestSize int64    `json:"manifest_size"`
	MediaType    string   `json:"media_type"`
	VerifiedBy   []string `json:"verified_by,omitempty"`
	Wasm         []byte   `json:"-"`
	used         time.Time
}

// OpenCache opens the cache in dir (created when needed; "" for one in memory only),
// kept under max bytes (0: no bound).
func OpenCache(dir string, max int64) (*Cache, error) {
	c := &Cache{dir: dir, max: max, mem: map[digest.Digest]*CachedModule{}, tags: map[string]digest.Digest{}}
	if dir == "" {
		return c, nil
	}
	if err := os.MkdirAll(filepath.Join(dir, "sha256"), 0o755); err != nil {
		return nil, fmt.Errorf("registry: module cache %s: %w", dir, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "tags.json")); err == nil {
		json.Unmarshal(b, &c.tags) // a damaged file only loses what tags resolved to
	}
	return c, nil
}

func (c *Cache) path(d digest.Digest, ext string) string {
	return filepath.Join(c.dir, string(d.Algorithm()), d.Encoded()+ext)
}

// Get is the module whose manifest has digest d, if cached and intact.
func (c *Cache) Get(d digest.Digest) (*CachedModule, bool) {
	if d.Validate() != nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.mem[d]; m != nil {
		m.used = time.Now()
		c.touch(d)
		return m, true
	}
	if c.dir == "" {
		return nil, false
	}
	var m CachedModule
	b, err := os.ReadFile(c.path(d, ".json"))
	if err != nil || json.Unmarshal(b, &m) != nil || m.Manifest != d || m.Module.Validate() != nil {
		return nil, false
	}
	wasm, err := os.ReadFile(c.path(d, ".wasm"))
	if err != nil || m.Module.Algorithm().FromBytes(wasm) != m.Module {
		return nil, false // damaged, or changed under us: pulled again
	}
	m.Wasm, m.used = wasm, time.Now()
	c.mem[d] = &m
	c.touch(d)
	return &m, true
}

// touch marks d used now, for eviction's order.
func (c *Cache) touch(d digest.Digest) {
	if c.dir != "" {
		now := time.Now()
		os.Chtimes(c.path(d, ".json"), now, now)
	}
}

// Put caches a pulled module, then evicts the least recently used modules beyond the
// cache's size, sparing those keep reports in use.
func (c *Cache) Put(p *Pulled, keep func(digest.Digest) bool) (*CachedModule, error) {
	m := &CachedModule{Manifest: p.Desc.Digest, Module: digest.FromBytes(p.Wasm), Ref: p.Ref, Layout: p.Layout, Size: int64(len(p.Wasm)), Wasm: p.Wasm,
		ManifestSize: p.Desc.Size, MediaType: p.Desc.MediaType, VerifiedBy: p.VerifiedBy, used: time.Now()}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mem[m.Manifest] = m
	if c.dir == "" {
		return m, nil
	}
	j, _ := json.Marshal(m)
	// The module first, then its entry: an entry names only a module that is whole.
	if err := atomicfile.Write(c.path(m.Manifest, ".wasm"), p.Wasm); err != nil {
		return m, fmt.Errorf("registry: module cache: %w", err)
	}
	if err := atomicfile.Write(c.path(m.Manifest, ".json"), j); err != nil {
		return m, fmt.Errorf("registry: module cache: %w", err)
	}
	c.evict(func(d digest.Digest) bool { return d == m.Manifest || keep != nil && keep(d) })
	return m, nil
}

// Verified records that key (a KeyID) signed the cached module of manifest d.
func (c *Cache) Verified(d digest.Digest, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.mem[d]
	if m == nil || slices.Contains(m.VerifiedBy, key) {
		return
	}
	m.VerifiedBy = append(slices.Clip(m.VerifiedBy), key)
	if c.dir != "" {
		j, _ := json.Marshal(m)
		atomicfile.Write(c.path(d, ".json"), j)
	}
}

// evict removes the least recently used entries until the cache fits.
func (c *Cache) evict(keep func(digest.Digest) bool) {
	if c.max <= 0 {
		return
	}
	type entry struct {
		d    digest.Digest
		size int64
		used time.Time
	}
	var all []entry
	var total int64
	dir := filepath.Join(c.dir, "sha256")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		name := e.Name()
		if filepath.Ext(name) != ".json" {
			continue
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, name[:len(name)-len(".json")])
		ji, err1 := e.Info()
		wi, err2 := os.Stat(c.path(d, ".wasm"))
		if err1 != nil || err2 != nil {
			continue
		}
		all = append(all, entry{d, wi.Size() + ji.Size(), ji.ModTime()})
		total += wi.Size() + ji.Size()
	}
	slices.SortFunc(all, func(a, b entry) int { return a.used.Compare(b.used) })
	for _, e := range all {
		if total <= c.max {
			break
		}
		if keep(e.d) {
			continue
		}
		os.Remove(c.path(e.d, ".json"))
		os.Remove(c.path(e.d, ".wasm"))
		delete(c.mem, e.d)
		total -= e.size
	}
}

// Tag is the digest ref resolved to when last resolved, if known.
func (c *Cache) Tag(ref string) (digest.Digest, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.tags[ref]
	return d, ok
}

// SetTag records that ref resolved to d.
func (c *Cache) SetTag(ref string, d digest.Digest) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tags[ref] == d {
		return nil
	}
	c.tags[ref] = d
	if c.dir == "" {
		return nil
	}
	b, _ := json.Marshal(c.tags)
	return atomicfile.Write(filepath.Join(c.dir, "tags.json"), b)
}
