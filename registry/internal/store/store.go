// Package store keeps an OCI registry's content on the filesystem: blobs by digest,
// shared by every repository, and per repository the blobs it may serve, its manifests,
// tags, referrers and uploads in progress.
//
// Nothing half-written is ever visible: every file is written under a temporary name
// in the root's _tmp directory and renamed into place once complete (and, for blobs and
// manifests, once its digest is verified), and a manifest becomes reachable only after
// the blobs it references are.
//
// Layout under the root:
//
//	blobs/ALG/HEX                          the content, once
//	repos/NAME/_blobs/ALG/HEX              an empty file: NAME may serve the blob
//	repos/NAME/_manifests/ALG/HEX          the manifest's media type: NAME holds it
//	repos/NAME/_tags/TAG                   the digest the tag points to
//	repos/NAME/_referrers/ALG/HEX/ALG-HEX  a referrer's descriptor (JSON), by subject
//	_uploads/ID/{repo,data}                an upload in progress
//	_tmp/                                  files being written
package store

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Errors callers branch on; each maps to one of the distribution spec's error codes.
var (
	ErrBlobUnknown     = errors.New("registry: blob unknown")
	ErrUploadUnknown   = errors.New("registry: blob upload unknown")
	ErrUploadInvalid   = errors.New("registry: blob upload invalid")
	ErrRangeInvalid    = errors.New("registry: chunk out of order")
	ErrDigestInvalid   = errors.New("registry: digest invalid")
	ErrManifestUnknown = errors.New("registry: manifest unknown")
	ErrManifestInvalid = errors.New("registry: manifest invalid")
	ErrManifestBlob    = errors.New("registry: manifest references a blob the repository does not have")
	ErrNameInvalid     = errors.New("registry: invalid repository name")
	ErrNameUnknown     = errors.New("registry: repository unknown")
	ErrTagInvalid      = errors.New("registry: invalid tag")
	ErrSizeInvalid     = errors.New("registry: size invalid")
)

// MaxManifest bounds a manifest's size, as the distribution spec suggests registries do
// (4 MiB).
const MaxManifest = 4 << 20

// The distribution spec's grammar for repository names and tags.
var (
	nameRE = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRE  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// ValidName reports whether name is a repository name the spec allows.
func ValidName(name string) bool { return len(name) <= 255 && nameRE.MatchString(name) }

// ValidTag reports whether tag is a tag the spec allows.
func ValidTag(tag string) bool { return tagRE.MatchString(tag) }

// Store is a registry's content under one root directory. Its methods are safe for
// concurrent use, also by several processes sharing the root (every change is a rename).
type Store struct {
	root string

	mu      sync.Mutex
	uploads map[string]*sync.Mutex // one request at a time per upload
}

// Open opens (creating it when needed) the store under root.
func Open(root string) (*Store, error) {
	for _, d := range []string{"blobs", "repos", "_uploads", "_tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, fmt.Errorf("registry: storage %s: %w", root, err)
		}
	}
	return &Store{root: root, uploads: map[string]*sync.Mutex{}}, nil
}

func (s *Store) blobPath(d digest.Digest) string {
	return filepath.Join(s.root, "blobs", string(d.Algorithm()), d.Encoded())
}

func (s *Store) repoPath(name string, parts ...string) string {
	return filepath.Join(append([]string{s.root, "repos", filepath.FromSlash(name)}, parts...)...)
}

func linkPath(s *Store, name, kind string, d digest.Digest) string {
	return s.repoPath(name, kind, string(d.Algorithm()), d.Encoded())
}

// checkDigest parses a digest the store can verify (sha256, sha512).
func checkDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%w: %q: %v", ErrDigestInvalid, d, err)
	}
	return nil
}

// writeAtomic writes data to path through a temporary file renamed into place.
func (s *Store) writeAtomic(path string, data []byte) error {
	return s.writeFrom(path, bytes.NewReader(data), "")
}

// writeFrom copies r to path through a temporary file; with want set, the content must
// have that digest, or nothing is written.
func (s *Store) writeFrom(path string, r io.Reader, want digest.Digest) error {
	tmp, err := os.CreateTemp(filepath.Join(s.root, "_tmp"), "w-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	var dg digest.Digester
	w := io.Writer(tmp)
	if want != "" {
		dg = want.Algorithm().Digester()
		w = io.MultiWriter(tmp, dg.Hash())
	}
	_, err = io.Copy(w, r)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if dg != nil && dg.Digest() != want {
		return fmt.Errorf("%w: the content's digest is %s, not %s", ErrDigestInvalid, dg.Digest(), want)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// link marks that repository name holds d (a blob, or a manifest with its media type).
func (s *Store) link(name, kind string, d digest.Digest, content string) error {
	return s.writeAtomic(linkPath(s, name, kind, d), []byte(content))
}

// StatBlob is the size of blob d, when repository name may serve it.
func (s *Store) StatBlob(name string, d digest.Digest) (int64, error) {
	if err := checkDigest(d); err != nil {
		return 0, err
	}
	if _, err := os.Stat(linkPath(s, name, "_blobs", d)); err != nil {
		return 0, ErrBlobUnknown
	}
	fi, err := os.Stat(s.blobPath(d))
	if err != nil {
		return 0, ErrBlobUnknown
	}
	return fi.Size(), nil
}

// OpenBlob opens blob d for reading, when repository name may serve it.
func (s *Store) OpenBlob(name string, d digest.Digest) (*os.File, error) {
	if _, err := s.StatBlob(name, d); err != nil {
		return nil, err
	}
	f, err := os.Open(s.blobPath(d))
	if err != nil {
		return nil, ErrBlobUnknown
	}
	return f, nil
}

// DeleteBlob takes blob d out of repository name; the content goes at the next garbage
// collection, if no repository holds it then.
func (s *Store) DeleteBlob(name string, d digest.Digest) error {
	if _, err := s.StatBlob(name, d); err != nil {
		return err
	}
	return os.Remove(linkPath(s, name, "_blobs", d))
}

// Mount lets repository name serve blob d of repository from, without a copy.
func (s *Store) Mount(name, from string, d digest.Digest) error {
	if _, err := s.StatBlob(from, d); err != nil {
		return err
	}
	return s.link(name, "_blobs", d, "")
}

// PutBlob stores r as blob d of repository name, in one go.
func (s *Store) PutBlob(name string, d digest.Digest, r io.Reader) error {
	if err := checkDigest(d); err != nil {
		return err
	}
	if err := s.writeFrom(s.blobPath(d), r, d); err != nil {
		return err
	}
	return s.link(name, "_blobs", d, "")
}

// StartUpload begins an upload to repository name and returns its id.
func (s *Store) StartUpload(name string) (string, error) {
	var b [16]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	dir := filepath.Join(s.root, "_uploads", id)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "data"), nil, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "repo"), []byte(name), 0o644); err != nil {
		return "", err
	}
	return id, nil
}

// upload locks upload id of repository name and returns its data file's path.
func (s *Store) upload(name, id string) (string, func(), error) {
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return "", nil, ErrUploadUnknown
	}
	dir := filepath.Join(s.root, "_uploads", id)
	repo, err := os.ReadFile(filepath.Join(dir, "repo"))
	if err != nil || string(repo) != name {
		return "", nil, ErrUploadUnknown
	}
	s.mu.Lock()
	m := s.uploads[id]
	if m == nil {
		m = &sync.Mutex{}
		s.uploads[id] = m
	}
	s.mu.Unlock()
	m.Lock()
	return filepath.Join(dir, "data"), m.Unlock, nil
}

// UploadOffset is how many bytes upload id has received.
func (s *Store) UploadOffset(name, id string) (int64, error) {
	path, unlock, err := s.upload(name, id)
	if err != nil {
		return 0, err
	}
	defer unlock()
	fi, err := os.Stat(path)
	if err != nil {
		return 0, ErrUploadUnknown
	}
	return fi.Size(), nil
}

// AppendUpload adds r to upload id. With start >= 0 (a chunk's Content-Range), the
// chunk must begin where the upload ends, or ErrRangeInvalid. It returns the new size.
func (s *Store) AppendUpload(name, id string, start int64, r io.Reader) (int64, error) {
	path, unlock, err := s.upload(name, id)
	if err != nil {
		return 0, err
	}
	defer unlock()
	return appendTo(path, start, r)
}

func appendTo(path string, start int64, r io.Reader) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return 0, ErrUploadUnknown
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if start >= 0 && start != fi.Size() {
		return fi.Size(), fmt.Errorf("%w: the chunk starts at %d, the upload has %d bytes", ErrRangeInvalid, start, fi.Size())
	}
	n, err := io.Copy(f, r)
	if err != nil {
		// What arrived of a broken chunk is cut off: the client resends it whole.
		f.Truncate(fi.Size())
		return fi.Size(), fmt.Errorf("%w: %v", ErrUploadInvalid, err)
	}
	return fi.Size() + n, nil
}

// FinishUpload adds r (the last chunk, perhaps empty) to upload id, checks that the
// whole has digest d, and makes it blob d of repository name. The upload is gone
// afterwards, whether it succeeded or its digest was wrong.
func (s *Store) FinishUpload(name, id string, d digest.Digest, start int64, r io.Reader) error {
	if err := checkDigest(d); err != nil {
		return err
	}
	path, unlock, err := s.upload(name, id)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := appendTo(path, start, r); err != nil {
		return err
	}
	defer s.dropUpload(id)
	f, err := os.Open(path)
	if err != nil {
		return ErrUploadUnknown
	}
	defer f.Close()
	if err := s.writeFrom(s.blobPath(d), f, d); err != nil {
		return err
	}
	return s.link(name, "_blobs", d, "")
}

// CancelUpload drops upload id.
func (s *Store) CancelUpload(name, id string) error {
	_, unlock, err := s.upload(name, id)
	if err != nil {
		return err
	}
	defer unlock()
	s.dropUpload(id)
	return nil
}

func (s *Store) dropUpload(id string) {
	os.RemoveAll(filepath.Join(s.root, "_uploads", id))
	s.mu.Lock()
	delete(s.uploads, id)
	s.mu.Unlock()
}

// manifestDoc is what the store reads of a manifest: an image manifest's or an index's
// fields, whichever it is.
type manifestDoc struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	ArtifactType  string               `json:"artifactType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Manifests     []ocispec.Descriptor `json:"manifests"`
	Subject       *ocispec.Descriptor  `json:"subject"`
	Annotations   map[string]string    `json:"annotations"`
}

// Manifest media types the store accepts.
const (
	dockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

func isIndex(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageIndex || mediaType == dockerManifestList
}

// parseManifest checks a manifest pushed with Content-Type contentType and returns it
// with its media type.
func parseManifest(contentType string, body []byte) (*manifestDoc, string, error) {
	var m manifestDoc
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, "", fmt.Errorf("%w: not JSON: %v", ErrManifestInvalid, err)
	}
	if m.SchemaVersion != 2 {
		return nil, "", fmt.Errorf("%w: schemaVersion %d, want 2", ErrManifestInvalid, m.SchemaVersion)
	}
	mt := m.MediaType
	if mt == "" {
		mt = contentType
	} else if contentType != "" && contentType != mt {
		return nil, "", fmt.Errorf("%w: Content-Type %q, but the manifest's mediaType is %q", ErrManifestInvalid, contentType, mt)
	}
	switch mt {
	case ocispec.MediaTypeImageManifest, dockerManifest:
		if m.Config == nil {
			return nil, "", fmt.Errorf("%w: an image manifest needs a config", ErrManifestInvalid)
		}
	case ocispec.MediaTypeImageIndex, dockerManifestList:
	default:
		return nil, "", fmt.Errorf("%w: media type %q is not an image manifest or index", ErrManifestInvalid, mt)
	}
	for _, d := range m.descriptors() {
		if err := checkDigest(d.Digest); err != nil {
			return nil, "", fmt.Errorf("%w: %v", ErrManifestInvalid, err)
		}
	}
	return &m, mt, nil
}

// descriptors is everything the manifest references.
func (m *manifestDoc) descriptors() []ocispec.Descriptor {
	var out []ocispec.Descriptor
	if m.Config != nil {
		out = append(out, *m.Config)
	}
	out = append(out, m.Layers...)
	return append(out, m.Manifests...)
}

// PutManifest stores a manifest under reference (a tag, or its digest) in repository
// name, and returns its digest. The blobs an image manifest references must be in the
// repository already (those with urls, which live elsewhere, excepted); an index's
// manifests need not be. A manifest with a subject becomes one of its referrers.
func (s *Store) PutManifest(name, reference, contentType string, body []byte) (digest.Digest, *ocispec.Descriptor, error) {
	if len(body) > MaxManifest {
		return "", nil, fmt.Errorf("%w: %d bytes, more than %d", ErrSizeInvalid, len(body), MaxManifest)
	}
	m, mt, err := parseManifest(contentType, body)
	if err != nil {
		return "", nil, err
	}
	d := digest.FromBytes(body)
	tag := ""
	if strings.Contains(reference, ":") {
		want := digest.Digest(reference)
		if err := checkDigest(want); err != nil {
			return "", nil, err
		}
		if want.Algorithm() != d.Algorithm() {
			d = want.Algorithm().FromBytes(body)
		}
		if d != want {
			return "", nil, fmt.Errorf("%w: the manifest's digest is %s, not %s", ErrDigestInvalid, d, want)
		}
	} else if !ValidTag(reference) {
		return "", nil, fmt.Errorf("%w: %q", ErrTagInvalid, reference)
	} else {
		tag = reference
	}
	if !isIndex(mt) {
		for _, b := range m.descriptors() {
			if len(b.URLs) > 0 {
				continue
			}
			if _, err := s.StatBlob(name, b.Digest); err != nil {
				return "", nil, fmt.Errorf("%w: %s", ErrManifestBlob, b.Digest)
			}
		}
	}
	if err := s.writeFrom(s.blobPath(d), bytes.NewReader(body), d); err != nil {
		return "", nil, err
	}
	if err := s.link(name, "_manifests", d, mt); err != nil {
		return "", nil, err
	}
	if m.Subject != nil {
		desc := ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(body)), ArtifactType: m.ArtifactType, Annotations: m.Annotations}
		if desc.ArtifactType == "" && m.Config != nil {
			desc.ArtifactType = m.Config.MediaType // as the spec says the referrers list shows it
		}
		j, _ := json.Marshal(desc)
		sub := m.Subject.Digest
		path := s.repoPath(name, "_referrers", string(sub.Algorithm()), sub.Encoded(), string(d.Algorithm())+"-"+d.Encoded())
		if err := s.writeAtomic(path, j); err != nil {
			return "", nil, err
		}
	}
	if tag != "" {
		if err := s.writeAtomic(s.repoPath(name, "_tags", tag), []byte(d)); err != nil {
			return "", nil, err
		}
	}
	return d, m.Subject, nil
}

// Resolve is the digest reference (a tag, or a digest) names in repository name.
func (s *Store) Resolve(name, reference string) (digest.Digest, error) {
	if !strings.Contains(reference, ":") {
		if !ValidTag(reference) {
			return "", fmt.Errorf("%w: %q", ErrTagInvalid, reference)
		}
		b, err := os.ReadFile(s.repoPath(name, "_tags", reference))
		if err != nil {
			return "", ErrManifestUnknown
		}
		reference = string(b)
	}
	d := digest.Digest(reference)
	if err := checkDigest(d); err != nil {
		return "", err
	}
	if _, err := os.Stat(linkPath(s, name, "_manifests", d)); err != nil {
		return "", ErrManifestUnknown
	}
	return d, nil
}

// GetManifest is the manifest reference names in repository name, with its media type
// and digest.
func (s *Store) GetManifest(name, reference string) ([]byte, string, digest.Digest, error) {
	d, err := s.Resolve(name, reference)
	if err != nil {
		return nil, "", "", err
	}
	mt, err := os.ReadFile(linkPath(s, name, "_manifests", d))
	if err != nil {
		return nil, "", "", ErrManifestUnknown
	}
	body, err := os.ReadFile(s.blobPath(d))
	if err != nil {
		return nil, "", "", ErrManifestUnknown
	}
	return body, string(mt), d, nil
}

// DeleteManifest deletes a tag (the manifest stays), or a manifest by its digest (with
// the tags that point to it, and its place among its subject's referrers).
func (s *Store) DeleteManifest(name, reference string) error {
	if !strings.Contains(reference, ":") {
		if _, err := s.Resolve(name, reference); err != nil {
			return err
		}
		return os.Remove(s.repoPath(name, "_tags", reference))
	}
	body, mt, d, err := s.GetManifest(name, reference)
	if err != nil {
		return err
	}
	if err := os.Remove(linkPath(s, name, "_manifests", d)); err != nil {
		return err
	}
	tags, _ := s.Tags(name)
	for _, t := range tags {
		if b, err := os.ReadFile(s.repoPath(name, "_tags", t)); err == nil && digest.Digest(b) == d {
			os.Remove(s.repoPath(name, "_tags", t))
		}
	}
	if m, _, err := parseManifest(mt, body); err == nil && m.Subject != nil {
		sub := m.Subject.Digest
		os.Remove(s.repoPath(name, "_referrers", string(sub.Algorithm()), sub.Encoded(), string(d.Algorithm())+"-"+d.Encoded()))
	}
	return nil
}

// Exists reports whether repository name holds anything.
func (s *Store) Exists(name string) bool {
	_, err := os.Stat(s.repoPath(name))
	return err == nil
}

// Tags are repository name's tags in lexical order.
func (s *Store) Tags(name string) ([]string, error) {
	if !s.Exists(name) {
		return nil, ErrNameUnknown
	}
	ents, err := os.ReadDir(s.repoPath(name, "_tags"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	tags := make([]string, 0, len(ents))
	for _, e := range ents {
		tags = append(tags, e.Name())
	}
	slices.Sort(tags)
	return tags, nil
}

// Referrers are the manifests of repository name whose subject is d, those of
// artifactType only when it is not empty, in digest order.
func (s *Store) Referrers(name string, d digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	if err := checkDigest(d); err != nil {
		return nil, err
	}
	dir := s.repoPath(name, "_referrers", string(d.Algorithm()), d.Encoded())
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	out := []ocispec.Descriptor{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // deleted meanwhile
		}
		var desc ocispec.Descriptor
		if json.Unmarshal(b, &desc) != nil {
			continue
		}
		if artifactType != "" && desc.ArtifactType != artifactType {
			continue
		}
		out = append(out, desc)
	}
	return out, nil
}

// repos lists every repository name.
func (s *Store) repos() ([]string, error) {
	base := filepath.Join(s.root, "repos")
	var names []string
	err := filepath.WalkDir(base, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && strings.HasPrefix(e.Name(), "_") {
			rel, _ := filepath.Rel(base, filepath.Dir(path))
			names = append(names, filepath.ToSlash(rel))
			return fs.SkipDir
		}
		return nil
	})
	slices.Sort(names)
	return slices.Compact(names), err
}

// GC deletes the blobs no manifest of any repository references (the manifests
// themselves included), except those younger than grace: an upload's blobs wait for
// their manifest. It returns how many blobs it deleted.
func (s *Store) GC(grace time.Duration) (int, error) {
	names, err := s.repos()
	if err != nil {
		return 0, err
	}
	live := map[digest.Digest]bool{}
	for _, name := range names {
		dir := s.repoPath(name, "_manifests")
		filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return nil
			}
			alg := filepath.Base(filepath.Dir(path))
			d := digest.NewDigestFromEncoded(digest.Algorithm(alg), e.Name())
			live[d] = true
			mt, _ := os.ReadFile(path)
			body, err := os.ReadFile(s.blobPath(d))
			if err != nil {
				return nil
			}
			if m, _, err := parseManifest(string(mt), body); err == nil {
				for _, b := range m.descriptors() {
					live[b.Digest] = true
				}
			}
			return nil
		})
	}
	cutoff := time.Now().Add(-grace)
	removed := 0
	filepath.WalkDir(filepath.Join(s.root, "blobs"), func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		d := digest.NewDigestFromEncoded(digest.Algorithm(filepath.Base(filepath.Dir(path))), e.Name())
		if live[d] {
			return nil
		}
		if fi, err := e.Info(); err != nil || fi.ModTime().After(cutoff) {
			return nil
		}
		if os.Remove(path) == nil {
			removed++
			for _, name := range names {
				os.Remove(linkPath(s, name, "_blobs", d))
			}
		}
		return nil
	})
	// Uploads abandoned for a day go too.
	if ents, err := os.ReadDir(filepath.Join(s.root, "_uploads")); err == nil {
		for _, e := range ents {
			data := filepath.Join(s.root, "_uploads", e.Name(), "data")
			if fi, err := os.Stat(data); err == nil && fi.ModTime().Before(time.Now().Add(-24*time.Hour)) {
				os.RemoveAll(filepath.Join(s.root, "_uploads", e.Name()))
			}
		}
	}
	return removed, nil
}
