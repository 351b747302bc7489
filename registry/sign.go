package registry

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
)

// Signatures are cosign's, so that `cosign verify --key` checks what plexus signed and
// plexus checks what cosign signed with a key: a "simple signing" payload naming the
// manifest's digest, signed with the key (ECDSA P-256 or P-384 over its SHA-256, Ed25519,
// or RSA PKCS #1 v1.5), the signature in the payload layer's annotation. plexus attaches it
// as a referrer of the filter's manifest (the OCI 1.1 way, cosign's
// --registry-referrers-mode=oci-1-1) and under cosign's sha256-HEX.sig tag, where cosign
// looks by default.
const (
	ArtifactTypeSignature  = "application/vnd.dev.cosign.artifact.sig.v1+json"
	MediaTypeSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	AnnotationSignature    = "dev.cosignproject.cosign/signature"

	mediaTypeEmpty       = "application/vnd.oci.empty.v1+json"
	mediaTypeImageConfig = "application/vnd.oci.image.config.v1+json"
	signatureType        = "cosign container image signature"
	maxSignatures        = 16      // signature manifests looked at, per module
	maxSignatureBlob     = 1 << 16 // bytes of a signature manifest or payload
)

// ErrUnsigned is a module no trusted key signed.
var ErrUnsigned = errors.New("registry: no signature by a trusted key")

// simpleSigning is cosign's payload.
type simpleSigning struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

// LoadPrivateKey reads a PEM private key (PKCS #8 "PRIVATE KEY", or "EC PRIVATE KEY", or
// "RSA PRIVATE KEY"), as openssl writes them unencrypted.
func LoadPrivateKey(data []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("registry: signing key: no PEM block")
	}
	var k any
	var err error
	switch b.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("registry: signing key: a PEM %q block; want an unencrypted PRIVATE KEY (cosign's encrypted keys: export one with openssl)", b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("registry: signing key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("registry: signing key: %T cannot sign", k)
	}
	return s, nil
}

// LoadPublicKey reads a PEM public key ("PUBLIC KEY", as cosign.pub and openssl write it).
func LoadPublicKey(data []byte) (crypto.PublicKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, errors.New("registry: verification key: want a PEM PUBLIC KEY block")
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("registry: verification key: %w", err)
	}
	switch k.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey, *rsa.PublicKey:
		return k, nil
	}
	return nil, fmt.Errorf("registry: verification key: %T is not a kind cosign signs with", k)
}

// KeyID names a public key in logs: the first bytes of the SHA-256 of its DER form.
func KeyID(k crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return "?"
	}
	sum := sha256.Sum256(der)
	return fmt.Sprintf("%x", sum[:8])
}

func sign(key crypto.Signer, payload []byte) ([]byte, error) {
	if _, ok := key.Public().(ed25519.PublicKey); ok {
		return key.Sign(rand.Reader, payload, crypto.Hash(0))
	}
	sum := sha256.Sum256(payload)
	return key.Sign(rand.Reader, sum[:], crypto.SHA256)
}

func verifySig(k crypto.PublicKey, payload, sig []byte) bool {
	sum := sha256.Sum256(payload)
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, sum[:], sig)
	case ed25519.PublicKey:
		return ed25519.Verify(k, payload, sig)
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, sum[:], sig) == nil
	}
	return false
}

// Sign signs the manifest desc of repository ref with key and pushes the signature: as
// a referrer of desc, and under cosign's sha256-HEX.sig tag.
func (c *Client) Sign(ctx context.Context, ref string, desc ocispec.Descriptor, key crypto.Signer) (ocispec.Descriptor, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	var p simpleSigning
	p.Critical.Identity.DockerReference = r.Registry + "/" + r.Repository
	p.Critical.Image.DockerManifestDigest = string(desc.Digest)
	p.Critical.Type = signatureType
	payload, _ := json.Marshal(p)
	sig, err := sign(key, payload)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("registry: sign: %w", err)
	}
	repo := c.repository(ctx, r)
	layer := ocispec.Descriptor{MediaType: MediaTypeSimpleSigning, Digest: digest.FromBytes(payload), Size: int64(len(payload)),
		Annotations: map[string]string{AnnotationSignature: base64.StdEncoding.EncodeToString(sig)}}
	empty := []byte("{}")
	emptyDesc := ocispec.Descriptor{MediaType: mediaTypeEmpty, Digest: digest.FromBytes(empty), Size: 2}
	for _, b := range []struct {
		d ocispec.Descriptor
		b []byte
	}{{layer, payload}, {emptyDesc, empty}} {
		if err := c.pushBlob(ctx, repo, b.d, b.b); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("registry: sign: %w", err)
		}
	}
	created := time.Now().UTC().Format(time.RFC3339)
	// The referrer.
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: ArtifactTypeSignature, Config: emptyDesc,
		Layers: []ocispec.Descriptor{layer}, Subject: &ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size},
		Annotations: map[string]string{ocispec.AnnotationCreated: created}}
	m.SchemaVersion = 2
	mb, _ := json.Marshal(m)
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb)), ArtifactType: ArtifactTypeSignature}
	if err := repo.Push(ctx, md, bytes.NewReader(mb)); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("registry: sign: %w", err)
	}
	// cosign's tag: an image whose config lists the payload as its one layer.
	cfg, _ := json.Marshal(map[string]any{"architecture": "", "os": "", "config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{string(layer.Digest)}}})
	cfgDesc := ocispec.Descriptor{MediaType: mediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	if err := c.pushBlob(ctx, repo, cfgDesc, cfg); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("registry: sign: %w", err)
	}
	legacy := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfgDesc, Layers: []ocispec.Descriptor{layer}}
	legacy.SchemaVersion = 2
	lb, _ := json.Marshal(legacy)
	ld := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(lb), Size: int64(len(lb))}
	if err := repo.PushReference(ctx, ld, bytes.NewReader(lb), sigTag(desc.Digest)); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("registry: sign: %w", err)
	}
	return md, nil
}

// sigTag is cosign's tag for the signatures of d.
func sigTag(d digest.Digest) string { return string(d.Algorithm()) + "-" + d.Encoded() + ".sig" }

// Verify finds a signature of the manifest desc (in repository ref) by one of keys, as a
// referrer or under cosign's tag, and returns that key's index; ErrUnsigned when none of
// the signatures there is a good one by a trusted key.
func (c *Client) Verify(ctx context.Context, ref string, desc ocispec.Descriptor, keys []crypto.PublicKey) (int, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return -1, err
	}
	repo := c.repository(ctx, r)
	var cands []ocispec.Descriptor
	err = repo.Referrers(ctx, desc, ArtifactTypeSignature, func(rs []ocispec.Descriptor) error {
		cands = append(cands, rs...)
		return nil
	})
	if err != nil {
		return -1, fmt.Errorf("registry: verify %s: listing signatures: %w", ref, err)
	}
	if d, err := repo.Resolve(ctx, sigTag(desc.Digest)); err == nil {
		cands = append(cands, d)
	}
	seen := 0
	var why []string
	for _, cand := range cands {
		if seen == maxSignatures {
			break
		}
		seen++
		k, err := c.checkSignature(ctx, repo, cand, desc.Digest, keys)
		if err == nil {
			return k, nil
		}
		why = append(why, err.Error())
	}
	if len(why) == 0 {
		return -1, fmt.Errorf("%w: %s (%s) is unsigned", ErrUnsigned, ref, desc.Digest)
	}
	return -1, fmt.Errorf("%w: %s (%s): %s", ErrUnsigned, ref, desc.Digest, strings.Join(why, "; "))
}

// checkSignature checks the signature manifest sm: a payload naming d, signed by one of
// keys.
func (c *Client) checkSignature(ctx context.Context, repo *remote.Repository, sm ocispec.Descriptor, d digest.Digest, keys []crypto.PublicKey) (int, error) {
	if sm.Size > maxSignatureBlob {
		return -1, fmt.Errorf("signature manifest %s is %d bytes", sm.Digest, sm.Size)
	}
	mb, err := content.FetchAll(ctx, repo, sm)
	if err != nil {
		return -1, fmt.Errorf("signature %s: %w", sm.Digest, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return -1, fmt.Errorf("signature %s: %w", sm.Digest, err)
	}
	for _, l := range m.Layers {
		if l.MediaType != MediaTypeSimpleSigning || l.Size > maxSignatureBlob {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(l.Annotations[AnnotationSignature])
		if err != nil || len(sig) == 0 {
			continue
		}
		payload, err := content.FetchAll(ctx, repo, l)
		if err != nil {
			continue
		}
		var p simpleSigning
		if json.Unmarshal(payload, &p) != nil || p.Critical.Type != signatureType || p.Critical.Image.DockerManifestDigest != string(d) {
			continue // a signature of something else
		}
		for i, k := range keys {
			if verifySig(k, payload, sig) {
				return i, nil
			}
		}
		return -1, fmt.Errorf("signature %s is by no trusted key", sm.Digest)
	}
	return -1, fmt.Errorf("signature %s signs no payload for %s", sm.Digest, d)
}
