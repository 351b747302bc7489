package registry

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
)

// testKeys makes a signer of each kind cosign signs with, and reads each back through the
// PEM forms plexus loads.
func testKeys(t *testing.T) map[string]crypto.Signer {
	t.Helper()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	out := map[string]crypto.Signer{}
	for name, k := range map[string]crypto.Signer{"ecdsa": ec, "ed25519": ed, "rsa": rs} {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		s, err := LoadPrivateKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = s
	}
	return out
}

func publicKey(t *testing.T, s crypto.Signer) crypto.PublicKey {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	k, err := LoadPublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSignVerify: a filter signed with one key verifies against a key list holding it
// (any of them), not against others; an unsigned one, or one whose only signature is of
// another module, does not verify. On plexus's registry (referrers API) and on the CNCF
// distribution registry (cosign's tag).
func TestSignVerify(t *testing.T) {
	keys := testKeys(t)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c := testClient(t)
	ctx := context.Background()
	for name, host := range map[string]string{"plexus": startPlexusRegistry(t), "distribution": startDistribution(t)} {
		t.Run(name, func(t *testing.T) {
			for kind, key := range keys {
				ref := host + "/filters/" + kind + ":1"
				d, err := c.Push(ctx, ref, testModule(500), Meta{})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Verify(ctx, ref, d, []crypto.PublicKey{publicKey(t, key)}); !errors.Is(err, ErrUnsigned) {
					t.Errorf("%s: an unsigned module verified: %v", kind, err)
				}
				if _, err := c.Sign(ctx, ref, d, key); err != nil {
					t.Fatal(err)
				}
				k, err := c.Verify(ctx, ref, d, []crypto.PublicKey{other.Public(), publicKey(t, key)})
				if err != nil || k != 1 {
					t.Errorf("%s: signed, verify gave key %d, %v; want key 1 of [other, signer]", kind, k, err)
				}
				if _, err := c.Verify(ctx, ref, d, []crypto.PublicKey{other.Public()}); !errors.Is(err, ErrUnsigned) {
					t.Errorf("%s: verified against a key that did not sign: %v", kind, err)
				}
			}
			// A second module under the same tag: the first one's signature is no
			// signature of it.
			ref := host + "/filters/ecdsa:1"
			d2, err := c.Push(ctx, ref, testModule(600), Meta{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Verify(ctx, ref, d2, []crypto.PublicKey{publicKey(t, keys["ecdsa"])}); !errors.Is(err, ErrUnsigned) {
				t.Errorf("a module verified by another module's signature: %v", err)
			}
			in, err := c.Inspect(ctx, host+"/filters/rsa:1")
			if err != nil {
				t.Fatal(err)
			}
			if name == "plexus" && (len(in.Referrers) != 1 || in.Referrers[0].ArtifactType != ArtifactTypeSignature) {
				t.Errorf("inspect lists referrers %+v; want the signature", in.Referrers)
			}
		})
	}
	if _, err := LoadPrivateKey([]byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")); err == nil {
		t.Error("an encrypted key loaded")
	}
}
