package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"
)

func newTestServer(t *testing.T, o ServerOptions) (*Server, *httptest.Server, string) {
	t.Helper()
	root := t.TempDir()
	srv, err := NewServer(root, o)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return srv, ts, root
}

func call(t *testing.T, method, url string, body []byte, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// errCode is the first error code of a distribution spec error body.
func errCode(b []byte) string {
	var e struct{ Errors []struct{ Code string } }
	if json.Unmarshal(b, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}

// TestChunkedUpload: chunks must come in order (416, with where the upload stands,
// otherwise); a blob whose digest is not the one claimed is never served.
func TestChunkedUpload(t *testing.T) {
	_, ts, _ := newTestServer(t, ServerOptions{})
	blob := []byte("0123456789abcdef")
	d := digest.FromBytes(blob)
	resp, _ := call(t, "POST", ts.URL+"/v2/filters/auth/blobs/uploads/", nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST uploads: %d", resp.StatusCode)
	}
	loc := ts.URL + resp.Header.Get("Location")
	resp, _ = call(t, "PATCH", loc, blob[:8], "Content-Range", "0-7", "Content-Type", "application/octet-stream")
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Range") != "0-7" {
		t.Fatalf("first chunk: %d, Range %q; want 202, 0-7", resp.StatusCode, resp.Header.Get("Range"))
	}
	resp, b := call(t, "PATCH", loc, blob[10:], "Content-Range", "10-15")
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || resp.Header.Get("Range") != "0-7" {
		t.Errorf("a chunk that skips bytes: %d, Range %q (%s); want 416, 0-7", resp.StatusCode, resp.Header.Get("Range"), b)
	}
	resp, _ = call(t, "GET", loc, nil)
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Range") != "0-7" {
		t.Errorf("upload status: %d, Range %q; want 204, 0-7", resp.StatusCode, resp.Header.Get("Range"))
	}
	wrong := digest.FromString("something else")
	resp, b = call(t, "PUT", loc+"?digest="+string(wrong), blob[8:], "Content-Range", "8-15")
	if resp.StatusCode != http.StatusBadRequest || errCode(b) != "DIGEST_INVALID" {
		t.Errorf("closing with the wrong digest: %d %s; want 400 DIGEST_INVALID", resp.StatusCode, b)
	}
	for _, dd := range []digest.Digest{wrong, d} {
		if resp, _ := call(t, "HEAD", ts.URL+"/v2/filters/auth/blobs/"+string(dd), nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("after a failed upload, %s is served (%d)", dd, resp.StatusCode)
		}
	}
	// Again, in order, to the end.
	resp, _ = call(t, "POST", ts.URL+"/v2/filters/auth/blobs/uploads/", nil)
	loc = ts.URL + resp.Header.Get("Location")
	call(t, "PATCH", loc, blob[:8], "Content-Range", "0-7")
	resp, _ = call(t, "PUT", loc+"?digest="+string(d), blob[8:], "Content-Range", "8-15")
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != string(d) {
		t.Fatalf("closing the upload: %d; want 201", resp.StatusCode)
	}
	resp, b = call(t, "GET", ts.URL+"/v2/filters/auth/blobs/"+string(d), nil)
	if resp.StatusCode != 200 || !bytes.Equal(b, blob) {
		t.Errorf("the blob: %d %q", resp.StatusCode, b)
	}
	if resp, _ := call(t, "GET", ts.URL+"/v2/filters/other/blobs/"+string(d), nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("another repository serves the blob without a mount: %d", resp.StatusCode)
	}
}

// TestTagsPagination: tags in lexical order, n at a time, with a Link to the rest.
func TestTagsPagination(t *testing.T) {
	_, ts, _ := newTestServer(t, ServerOptions{})
	config := []byte("{}")
	cd := digest.FromBytes(config)
	call(t, "POST", ts.URL+"/v2/f/blobs/uploads/?digest="+string(cd), config)
	manifest := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[]}`, cd)
	for _, tag := range []string{"v2", "v10", "latest", "v1"} {
		resp, b := call(t, "PUT", ts.URL+"/v2/f/manifests/"+tag, manifest, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s", tag, resp.StatusCode, b)
		}
	}
	var got []string
	next := "/v2/f/tags/list?n=3"
	for next != "" {
		resp, b := call(t, "GET", ts.URL+next, nil)
		var l struct{ Tags []string }
		json.Unmarshal(b, &l)
		got = append(got, l.Tags...)
		next = ""
		if link := resp.Header.Get("Link"); link != "" {
			next = strings.TrimPrefix(strings.SplitN(link, ">", 2)[0], "<")
		}
	}
	if want := "latest v1 v10 v2"; strings.Join(got, " ") != want {
		t.Errorf("tags, 3 at a time: %v; want %s", got, want)
	}
	if resp, b := call(t, "GET", ts.URL+"/v2/nothing/tags/list", nil); resp.StatusCode != http.StatusNotFound || errCode(b) != "NAME_UNKNOWN" {
		t.Errorf("tags of an unknown repository: %d %s; want 404 NAME_UNKNOWN", resp.StatusCode, b)
	}
	if resp, b := call(t, "GET", ts.URL+"/v2/Bad_Name/tags/list", nil); resp.StatusCode != http.StatusBadRequest || errCode(b) != "NAME_INVALID" {
		t.Errorf("a name the spec forbids: %d %s; want 400 NAME_INVALID", resp.StatusCode, b)
	}
	missing := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[]}`, digest.FromString("never pushed"))
	if resp, b := call(t, "PUT", ts.URL+"/v2/f/manifests/broken", missing, "Content-Type", "application/vnd.oci.image.manifest.v1+json"); resp.StatusCode != http.StatusBadRequest || errCode(b) != "MANIFEST_BLOB_UNKNOWN" {
		t.Errorf("a manifest whose config was never pushed: %d %s; want 400 MANIFEST_BLOB_UNKNOWN", resp.StatusCode, b)
	}
}

// TestBasicAuth: with users, every request needs the right password; 401 says how.
func TestBasicAuth(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	users, err := ParseHtpasswd(append([]byte("# users\nci:"), hash...))
	if err != nil {
		t.Fatal(err)
	}
	_, ts, _ := newTestServer(t, ServerOptions{Users: users})
	for _, tc := range []struct {
		user, pass string
		want       int
	}{{"", "", 401}, {"ci", "wrong", 401}, {"nobody", "s3cret", 401}, {"ci", "s3cret", 200}} {
		req, _ := http.NewRequest("GET", ts.URL+"/v2/", nil)
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%q/%q: %d, want %d", tc.user, tc.pass, resp.StatusCode, tc.want)
		}
		if tc.want == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("401 without a Basic challenge: %q", resp.Header.Get("WWW-Authenticate"))
		}
	}
	if _, err := ParseHtpasswd([]byte("ci:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=")); err == nil {
		t.Error("an htpasswd entry that is not bcrypt was accepted")
	}
}

// TestGC: blobs no manifest references go, once older than the grace period; those a
// manifest references, and the manifest itself, stay.
func TestGC(t *testing.T) {
	srv, ts, root := newTestServer(t, ServerOptions{})
	keep, drop := []byte("{}"), []byte("orphan")
	for _, b := range [][]byte{keep, drop} {
		call(t, "POST", ts.URL+"/v2/f/blobs/uploads/?digest="+string(digest.FromBytes(b)), b)
	}
	manifest := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[]}`, digest.FromBytes(keep))
	call(t, "PUT", ts.URL+"/v2/f/manifests/v1", manifest, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if n, err := srv.GC(time.Hour); err != nil || n != 0 {
		t.Fatalf("GC within the grace period deleted %d (%v); want none", n, err)
	}
	// Age every blob past the grace period.
	old := time.Now().Add(-2 * time.Hour)
	filepath.Walk(filepath.Join(root, "blobs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			os.Chtimes(p, old, old)
		}
		return nil
	})
	if n, err := srv.GC(time.Hour); err != nil || n != 1 {
		t.Fatalf("GC deleted %d (%v); want the orphan only", n, err)
	}
	if resp, _ := call(t, "GET", ts.URL+"/v2/f/blobs/"+string(digest.FromBytes(drop)), nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the collected blob is still served: %d", resp.StatusCode)
	}
	for _, u := range []string{"/v2/f/blobs/" + string(digest.FromBytes(keep)), "/v2/f/manifests/v1"} {
		if resp, _ := call(t, "GET", ts.URL+u, nil); resp.StatusCode != 200 {
			t.Errorf("%s: %d after GC; want it kept", u, resp.StatusCode)
		}
	}
}

// TestReferrersFilter: the referrers of a manifest, all of them or those of one
// artifactType (saying the filter was applied), as an image index; none is an empty one.
func TestReferrersFilter(t *testing.T) {
	_, ts, _ := newTestServer(t, ServerOptions{})
	empty := []byte("{}")
	ed := digest.FromBytes(empty)
	call(t, "POST", ts.URL+"/v2/f/blobs/uploads/?digest="+string(ed), empty)
	base := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[]}`, ed)
	call(t, "PUT", ts.URL+"/v2/f/manifests/v1", base, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
	subject := digest.FromBytes(base)
	for _, at := range []string{"application/vnd.example.sbom", "application/vnd.dev.cosign.artifact.sig.v1+json"} {
		m := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":%q,"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d}}`, at, ed, subject, len(base))
		resp, b := call(t, "PUT", ts.URL+"/v2/f/manifests/"+string(digest.FromBytes(m)), m, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
		if resp.StatusCode != http.StatusCreated || resp.Header.Get("OCI-Subject") != string(subject) {
			t.Fatalf("PUT a referrer: %d %s, OCI-Subject %q", resp.StatusCode, b, resp.Header.Get("OCI-Subject"))
		}
	}
	for _, tc := range []struct {
		query    string
		n        int
		filtered bool
	}{{"", 2, false}, {"?artifactType=application/vnd.example.sbom", 1, true}, {"?artifactType=application/none", 0, true}} {
		resp, b := call(t, "GET", ts.URL+"/v2/f/referrers/"+string(subject)+tc.query, nil)
		var idx struct {
			MediaType string
			Manifests []struct{ ArtifactType string }
		}
		json.Unmarshal(b, &idx)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/vnd.oci.image.index.v1+json" || len(idx.Manifests) != tc.n ||
			(resp.Header.Get("OCI-Filters-Applied") == "artifactType") != tc.filtered {
			t.Errorf("referrers%s: %d %s, OCI-Filters-Applied %q; want %d of them", tc.query, resp.StatusCode, b, resp.Header.Get("OCI-Filters-Applied"), tc.n)
		}
	}
}
