package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/bcrypt"

	"github.com/plexus-mesh/plexus/registry/internal/store"
)

// Server is an OCI registry: the HTTP API of the OCI Distribution Specification v1.1
// (https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md) over content
// kept on the filesystem. Pull, push (monolithic and chunked), cross-repository mount,
// tag listing, the referrers API, deletion; optional basic auth. It is an http.Handler.
type Server struct {
	store *store.Store
	users map[string][]byte // user -> bcrypt hash; nil: no auth
	log   *slog.Logger
}

// ServerOptions configure a Server. The zero value serves anyone, and logs nothing.
type ServerOptions struct {
	// Users maps user names to bcrypt hashes of their passwords (as htpasswd -B
	// writes them); when set, every request must carry basic auth of one of them.
	Users map[string][]byte
	// Logger logs failures the client cannot be told about; nil discards.
	Logger *slog.Logger
}

// NewServer opens (creating it when needed) the registry's storage under root.
func NewServer(root string, o ServerOptions) (*Server, error) {
	st, err := store.Open(root)
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{store: st, users: o.Users, log: log}, nil
}

// GC deletes blobs no manifest references, except those written within grace (an
// upload's blobs wait for their manifest), and returns how many it deleted.
func (s *Server) GC(grace time.Duration) (int, error) { return s.store.GC(grace) }

// ParseHtpasswd reads an htpasswd file's bcrypt entries ("user:$2y$..."), the only kind a
// registry should accept.
func ParseHtpasswd(data []byte) (map[string][]byte, error) {
	users := map[string][]byte{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("registry: htpasswd line %d: want user:bcrypt-hash", i+1)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("registry: htpasswd line %d (%s): not a bcrypt hash (htpasswd -B makes one): %v", i+1, user, err)
		}
		users[user] = []byte(hash)
	}
	return users, nil
}

// Error codes of the distribution spec.
const (
	codeBlobUnknown      = "BLOB_UNKNOWN"
	codeUploadInvalid    = "BLOB_UPLOAD_INVALID"
	codeUploadUnknown    = "BLOB_UPLOAD_UNKNOWN"
	codeDigestInvalid    = "DIGEST_INVALID"
	codeManifestBlob     = "MANIFEST_BLOB_UNKNOWN"
	codeManifestInvalid  = "MANIFEST_INVALID"
	codeManifestUnknown  = "MANIFEST_UNKNOWN"
	codeNameInvalid      = "NAME_INVALID"
	codeNameUnknown      = "NAME_UNKNOWN"
	codeSizeInvalid      = "SIZE_INVALID"
	codeUnauthorized     = "UNAUTHORIZED"
	codeUnsupported      = "UNSUPPORTED"
	codeRangeUnsatisfied = "BLOB_UPLOAD_INVALID" // with 416
)

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Errors []apiError `json:"errors"`
	}{[]apiError{{Code: code, Message: msg}}})
}

// fail answers err from the store with the spec's status and code.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code := http.StatusInternalServerError, ""
	for _, e := range []struct {
		err    error
		status int
		code   string
	}{
		{store.ErrBlobUnknown, http.StatusNotFound, codeBlobUnknown},
		{store.ErrUploadUnknown, http.StatusNotFound, codeUploadUnknown},
		{store.ErrUploadInvalid, http.StatusBadRequest, codeUploadInvalid},
		{store.ErrRangeInvalid, http.StatusRequestedRangeNotSatisfiable, codeRangeUnsatisfied},
		{store.ErrDigestInvalid, http.StatusBadRequest, codeDigestInvalid},
		{store.ErrManifestUnknown, http.StatusNotFound, codeManifestUnknown},
		{store.ErrManifestInvalid, http.StatusBadRequest, codeManifestInvalid},
		{store.ErrManifestBlob, http.StatusBadRequest, codeManifestBlob},
		{store.ErrNameInvalid, http.StatusBadRequest, codeNameInvalid},
		{store.ErrNameUnknown, http.StatusNotFound, codeNameUnknown},
		{store.ErrTagInvalid, http.StatusBadRequest, codeManifestInvalid},
		{store.ErrSizeInvalid, http.StatusBadRequest, codeSizeInvalid},
	} {
		if errors.Is(err, e.err) {
			status, code = e.status, e.code
			break
		}
	}
	if code == "" {
		s.log.Error("registry: request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		writeError(w, status, codeUnsupported, "internal error")
		return
	}
	writeError(w, status, code, err.Error())
}

// route is a request's place in the API: /v2/NAME/KIND/ARG.
type route struct {
	name, kind, arg string
}

// parseRoute splits a /v2/ path. Names may hold slashes, so the kind is found from the
// end: NAME/blobs/uploads/[ID], NAME/blobs/DIGEST, NAME/manifests/REF, NAME/tags/list,
// NAME/referrers/DIGEST.
func parseRoute(path string) (route, bool) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return route{}, false
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	switch {
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		return route{strings.Join(segs[:n-3], "/"), "uploads", segs[n-1]}, true
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		return route{strings.Join(segs[:n-2], "/"), "tags", ""}, true
	case n >= 3 && (segs[n-2] == "blobs" || segs[n-2] == "manifests" || segs[n-2] == "referrers"):
		return route{strings.Join(segs[:n-2], "/"), segs[n-2], segs[n-1]}, true
	}
	return route{}, false
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if s.users != nil && !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="plexus registry"`)
		writeError(w, http.StatusUnauthorized, codeUnauthorized, "authentication required")
		return
	}
	if r.URL.Path == "/v2/" || r.URL.Path == "/v2" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "GET /v2/ only")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "{}")
		return
	}
	rt, ok := parseRoute(r.URL.Path)
	if !ok {
		writeError(w, http.StatusNotFound, codeNameUnknown, "no such API endpoint: "+r.URL.Path)
		return
	}
	if !store.ValidName(rt.name) {
		writeError(w, http.StatusBadRequest, codeNameInvalid, fmt.Sprintf("invalid repository name %q", rt.name))
		return
	}
	switch rt.kind + " " + r.Method {
	case "blobs GET", "blobs HEAD":
		s.getBlob(w, r, rt)
	case "blobs DELETE":
		s.done(w, r, s.store.DeleteBlob(rt.name, digest.Digest(rt.arg)), http.StatusAccepted)
	case "uploads POST":
		s.startUpload(w, r, rt)
	case "uploads PATCH":
		s.patchUpload(w, r, rt)
	case "uploads PUT":
		s.finishUpload(w, r, rt)
	case "uploads GET":
		s.uploadStatus(w, r, rt)
	case "uploads DELETE":
		s.done(w, r, s.store.CancelUpload(rt.name, rt.arg), http.StatusNoContent)
	case "manifests GET", "manifests HEAD":
		s.getManifest(w, r, rt)
	case "manifests PUT":
		s.putManifest(w, r, rt)
	case "manifests DELETE":
		s.done(w, r, s.store.DeleteManifest(rt.name, rt.arg), http.StatusAccepted)
	case "tags GET":
		s.listTags(w, r, rt)
	case "referrers GET":
		s.referrers(w, r, rt)
	default:
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, r.Method+" is not supported here")
	}
}

func (s *Server) authorized(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	hash, known := s.users[user]
	if !known {
		// Compare anyway, so that timing does not tell which users exist.
		hash = []byte("$2a$10$invalidinvalidinvalidinvalidinvalidinvalidinvalidinva")
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(pass))
	return known && err == nil
}

func (s *Server) getBlob(w http.ResponseWriter, r *http.Request, rt route) {
	d := digest.Digest(rt.arg)
	f, err := s.store.OpenBlob(rt.name, d)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Docker-Content-Digest", string(d))
	w.Header().Set("ETag", `"`+string(d)+`"`)
	// Range requests, HEAD and Content-Length as net/http serves files.
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// done answers a request whose work is done: status, or the spec's error for err.
func (s *Server) done(w http.ResponseWriter, r *http.Request, err error, status int) {
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(status)
}

func uploadLocation(name, id string) string { return "/v2/" + name + "/blobs/uploads/" + id }

func blobLocation(name string, d digest.Digest) string { return "/v2/" + name + "/blobs/" + string(d) }

func (s *Server) blobCreated(w http.ResponseWriter, name string, d digest.Digest) {
	w.Header().Set("Location", blobLocation(name, d))
	w.Header().Set("Docker-Content-Digest", string(d))
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// uploadAccepted answers for an upload that goes on: where to send the rest, and what
// has arrived (Range is inclusive; "0-0" for none, as registries say it).
func uploadAccepted(w http.ResponseWriter, status int, name, id string, size int64) {
	w.Header().Set("Location", uploadLocation(name, id))
	w.Header().Set("Docker-Upload-UUID", id)
	w.Header().Set("Range", fmt.Sprintf("0-%d", max(size-1, 0)))
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(status)
}

func (s *Server) startUpload(w http.ResponseWriter, r *http.Request, rt route) {
	if rt.arg != "" {
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "POST to /blobs/uploads/ to start an upload")
		return
	}
	q := r.URL.Query()
	if m := q.Get("mount"); m != "" {
		d := digest.Digest(m)
		if from := q.Get("from"); from != "" && store.ValidName(from) {
			if err := s.store.Mount(rt.name, from, d); err == nil {
				s.blobCreated(w, rt.name, d)
				return
			}
		}
		// Not mountable: an upload session instead, as the spec says.
	}
	if dg := q.Get("digest"); dg != "" {
		// A monolithic upload in one POST.
		d := digest.Digest(dg)
		if err := s.store.PutBlob(rt.name, d, r.Body); err != nil {
			s.fail(w, r, err)
			return
		}
		s.blobCreated(w, rt.name, d)
		return
	}
	id, err := s.store.StartUpload(rt.name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	uploadAccepted(w, http.StatusAccepted, rt.name, id, 0)
}

// chunkStart is where a chunk's Content-Range ("START-END", inclusive) says it begins,
// -1 without one; ok is false for one that is malformed or disagrees with its length.
func chunkStart(r *http.Request) (int64, bool) {
	cr := r.Header.Get("Content-Range")
	if cr == "" {
		return -1, true
	}
	cr = strings.TrimPrefix(cr, "bytes ")
	a, b, ok := strings.Cut(cr, "-")
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || start < 0 || end < start-1 {
		return 0, false
	}
	if r.ContentLength >= 0 && r.ContentLength != end-start+1 {
		return 0, false
	}
	return start, true
}

func (s *Server) patchUpload(w http.ResponseWriter, r *http.Request, rt route) {
	start, ok := chunkStart(r)
	if !ok {
		s.rangeError(w, r, rt, "malformed Content-Range")
		return
	}
	size, err := s.store.AppendUpload(rt.name, rt.arg, start, r.Body)
	if errors.Is(err, store.ErrRangeInvalid) {
		s.rangeError(w, r, rt, err.Error())
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	uploadAccepted(w, http.StatusAccepted, rt.name, rt.arg, size)
}

// rangeError is the spec's 416 for a chunk out of order, with where the upload stands.
func (s *Server) rangeError(w http.ResponseWriter, r *http.Request, rt route, msg string) {
	size, err := s.store.UploadOffset(rt.name, rt.arg)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", uploadLocation(rt.name, rt.arg))
	w.Header().Set("Range", fmt.Sprintf("0-%d", max(size-1, 0)))
	writeError(w, http.StatusRequestedRangeNotSatisfiable, codeRangeUnsatisfied, msg)
}

func (s *Server) finishUpload(w http.ResponseWriter, r *http.Request, rt route) {
	d := digest.Digest(r.URL.Query().Get("digest"))
	if d == "" {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, "PUT that ends an upload needs ?digest=")
		return
	}
	start, ok := chunkStart(r)
	if !ok {
		s.rangeError(w, r, rt, "malformed Content-Range")
		return
	}
	err := s.store.FinishUpload(rt.name, rt.arg, d, start, r.Body)
	if errors.Is(err, store.ErrRangeInvalid) {
		s.rangeError(w, r, rt, err.Error())
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.blobCreated(w, rt.name, d)
}

func (s *Server) uploadStatus(w http.ResponseWriter, r *http.Request, rt route) {
	size, err := s.store.UploadOffset(rt.name, rt.arg)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	uploadAccepted(w, http.StatusNoContent, rt.name, rt.arg, size)
}

func (s *Server) getManifest(w http.ResponseWriter, r *http.Request, rt route) {
	body, mt, d, err := s.store.GetManifest(rt.name, rt.arg)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", mt)
	w.Header().Set("Docker-Content-Digest", string(d))
	w.Header().Set("ETag", `"`+string(d)+`"`)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(body)
}

func (s *Server) putManifest(w http.ResponseWriter, r *http.Request, rt route) {
	body, err := io.ReadAll(io.LimitReader(r.Body, store.MaxManifest+1))
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: %v", store.ErrManifestInvalid, err))
		return
	}
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	d, subject, err := s.store.PutManifest(rt.name, rt.arg, strings.TrimSpace(ct), body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if subject != nil {
		w.Header().Set("OCI-Subject", string(subject.Digest))
	}
	w.Header().Set("Location", "/v2/"+rt.name+"/manifests/"+string(d))
	w.Header().Set("Docker-Content-Digest", string(d))
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) listTags(w http.ResponseWriter, r *http.Request, rt route) {
	tags, err := s.store.Tags(rt.name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	if last := q.Get("last"); last != "" {
		i := 0
		for i < len(tags) && tags[i] <= last {
			i++
		}
		tags = tags[i:]
	}
	if ns := q.Get("n"); ns != "" {
		n, err := strconv.Atoi(ns)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, codeUnsupported, fmt.Sprintf("n=%q: want a count", ns))
			return
		}
		if n < len(tags) {
			tags = tags[:n]
			if n > 0 {
				next := url.Values{"n": {ns}, "last": {tags[n-1]}}
				w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?%s>; rel="next"`, rt.name, next.Encode()))
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{rt.name, tags})
}

func (s *Server) referrers(w http.ResponseWriter, r *http.Request, rt route) {
	d := digest.Digest(rt.arg)
	at := r.URL.Query().Get("artifactType")
	descs, err := s.store.Referrers(rt.name, d, at)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if at != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: descs}
	idx.SchemaVersion = 2
	var buf bytes.Buffer
	json.NewEncoder(&buf).Encode(idx)
	w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
	w.Write(buf.Bytes())
}
