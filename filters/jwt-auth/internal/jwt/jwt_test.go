package jwt

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/internal/testutil"
)

// TestVerify: a token signed by each algorithm verifies against the set holding its key,
// by kid or, without one, by alg; a tampered, unsigned or foreign token does not.
func TestVerify(t *testing.T) {
	keys := map[string]*testutil.JWTKey{}
	for _, alg := range []string{"RS256", "ES256", "EdDSA", "HS256"} {
		keys[alg] = testutil.NewJWTKey(t, alg, "k-"+alg)
	}
	set, err := ParseSet(testutil.JWKS(keys["RS256"], keys["ES256"], keys["EdDSA"], keys["HS256"]))
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"iss": "https://idp", "sub": "alice", "n": map[string]any{"role": "admin"}}
	for alg, k := range keys {
		tok := k.Sign(t, claims)
		got, err := set.Verify(tok)
		if err != nil {
			t.Errorf("%s: %v", alg, err)
			continue
		}
		if got.KeyID != "k-"+alg {
			t.Errorf("%s: verified by %q", alg, got.KeyID)
		}
		if v, _ := got.Claim("sub"); v != "alice" {
			t.Errorf("%s: sub %q", alg, v)
		}
		if v, _ := got.Claim("n.role"); v != "admin" {
			t.Errorf("%s: n.role %q", alg, v)
		}
		// The same token with its payload changed.
		parts := strings.Split(tok, ".")
		forged := parts[0] + "." + b64url(`{"iss":"https://idp","sub":"mallory"}`) + "." + parts[2]
		if _, err := set.Verify(forged); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: a changed payload: %v, want ErrSignature", alg, err)
		}
	}
	noKid := testutil.NewJWTKey(t, "ES256", "")
	set2, _ := ParseSet(testutil.JWKS(noKid))
	if _, err := set2.Verify(noKid.Sign(t, claims)); err != nil {
		t.Errorf("a key and a token without kid: %v", err)
	}
	other := testutil.NewJWTKey(t, "RS256", "k-other")
	for name, tc := range map[string]struct {
		tok  string
		want error
	}{
		"unknown kid":      {other.Sign(t, claims), ErrNoKey},
		"alg none":         {keys["HS256"].Sign(t, claims, map[string]any{"alg": "none"}), ErrMalformed},
		"alg HS256 on RSA": {keys["HS256"].Sign(t, claims, map[string]any{"kid": "k-RS256"}), ErrNoKey},
		"two parts":        {"a.b", ErrMalformed},
		"crit":             {keys["RS256"].Sign(t, claims, map[string]any{"crit": []string{"exp"}}), ErrMalformed},
	} {
		if _, err := set.Verify(tc.tok); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestParseSet: keys it cannot use are skipped and said so; bad keys and sets without a
// usable key are errors.
func TestParseSet(t *testing.T) {
	rs := testutil.NewJWTKey(t, "RS256", "a")
	s, err := ParseSet([]byte(`{"keys": [` + string(mustJSON(rs.JWK())) + `,
		{"kty": "EC", "crv": "P-384", "kid": "b", "x": "AA", "y": "AA"},
		{"kty": "RSA", "use": "enc", "kid": "c", "n": "AQAB", "e": "AQAB"}]}`))
	if err != nil || len(s.Keys) != 1 || len(s.Skipped) != 2 {
		t.Fatalf("keys %v, skipped %v, err %v", s.Keys, s.Skipped, err)
	}
	for doc, says := range map[string]string{
		`{"keys": []}`: "no key to verify",
		`{"keys": [{"kty": "oct", "k": "c2hvcnQ"}]}`:                      "at least 32 bytes",
		`{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}`:            "fewer than 2048",
		`{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}`: "32 bytes each",
		`not json`: "JWKS",
	} {
		if _, err := ParseSet([]byte(doc)); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("%s: %v; want an error saying %q", doc, err, says)
		}
	}
}

func mustJSON(v map[string]any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// TestPolicy: iss, aud (a string or a list), exp and nbf with the skew.
func TestPolicy(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	p := &Policy{Issuer: "https://idp", Audiences: []string{"api", "web"}, Skew: 30 * time.Second}
	k := testutil.NewJWTKey(t, "HS256", "h")
	set, _ := ParseSet(testutil.JWKS(k))
	check := func(claims map[string]any) error {
		tok, err := set.Verify(k.Sign(t, claims))
		if err != nil {
			t.Fatal(err)
		}
		return p.Check(tok, now)
	}
	base := func(extra map[string]any) map[string]any {
		c := map[string]any{"iss": "https://idp", "aud": "api", "exp": now.Unix() + 60}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	for name, tc := range map[string]struct {
		claims map[string]any
		says   string // "" to pass
	}{
		"good":                {base(nil), ""},
		"aud list":            {base(map[string]any{"aud": []string{"other", "web"}}), ""},
		"no exp":              {map[string]any{"iss": "https://idp", "aud": "api"}, ""},
		"expired within skew": {base(map[string]any{"exp": now.Unix() - 10}), ""},
		"expired":             {base(map[string]any{"exp": now.Unix() - 31}), "expired"},
		"nbf within skew":     {base(map[string]any{"nbf": now.Unix() + 20}), ""},
		"nbf ahead":           {base(map[string]any{"nbf": now.Unix() + 40}), "not valid before"},
		"wrong iss":           {base(map[string]any{"iss": "https://evil"}), "iss"},
		"wrong aud":           {base(map[string]any{"aud": "other"}), "aud"},
		"exp not a number":    {base(map[string]any{"exp": "soon"}), "not a number"},
	} {
		err := check(tc.claims)
		switch {
		case tc.says == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case tc.says != "" && (err == nil || !strings.Contains(err.Error(), tc.says)):
			t.Errorf("%s: %v; want an error saying %q", name, err, tc.says)
		}
	}
}
