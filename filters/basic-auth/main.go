//go:build wasip1

// Command basic-auth is plexus's HTTP Basic authentication filter (RFC 7617): the users
// and their hashed passwords are htpasswd lines, SHA-1 ({SHA}, as Envoy's basic_auth
// takes) or bcrypt ($2y$); an authenticated request goes on with the user's name in a
// header and its Authorization removed, any other gets 401 with the Basic challenge. See
// README.md.
package main

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/plexus-mesh/plexus/filters/internal/start"
	"golang.org/x/crypto/bcrypt"

	"github.com/plexus-mesh/plexus/filters/internal/authn"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type user struct {
	name   string
	sha1   []byte // {SHA}
	bcrypt []byte // $2a$, $2b$, $2y$
}

type config struct {
	Users []string `json:"users"` // htpasswd lines: NAME:HASH
	Realm string   `json:"realm"`
	authn.Options

	users     map[string]*user
	challenge string
}

type plugin struct {
	types.DefaultPluginContext
	c config
	// verified remembers the SHA-256 of Authorization values bcrypt accepted (a bcrypt
	// check takes milliseconds: once per credential and instance, not per request).
	verified map[[32]byte]string
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	p.verified = map[[32]byte]string{}
	return start.Configure("basic-auth", size, p.c.parse)
}

func (c *config) parse(raw []byte) error {
	if err := json.Unmarshal(raw, c); err != nil {
		return err
	}
	if len(c.Users) == 0 {
		return fmt.Errorf("users: none: no request could pass")
	}
	c.users = map[string]*user{}
	for i, line := range c.Users {
		name, hash, ok := strings.Cut(line, ":")
		if !ok || name == "" {
			return fmt.Errorf("users[%d]: want an htpasswd line, NAME:HASH", i)
		}
		if _, dup := c.users[name]; dup {
			return fmt.Errorf("users[%d]: %s is there twice", i, name)
		}
		u := &user{name: name}
		switch {
		case strings.HasPrefix(hash, "{SHA}"):
			b, err := base64.StdEncoding.DecodeString(hash[len("{SHA}"):])
			if err != nil || len(b) != sha1.Size {
				return fmt.Errorf("users[%d] (%s): {SHA} wants the base64 of a SHA-1 (htpasswd -s)", i, name)
			}
			u.sha1 = b
		case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
			if _, err := bcrypt.Cost([]byte(hash)); err != nil {
				return fmt.Errorf("users[%d] (%s): bcrypt: %v", i, name, err)
			}
			u.bcrypt = []byte(hash)
		default:
			return fmt.Errorf("users[%d] (%s): the hash is neither {SHA} (htpasswd -s) nor bcrypt (htpasswd -B)", i, name)
		}
		c.users[name] = u
	}
	if c.Realm == "" {
		c.Realm = "plexus"
	}
	c.challenge = fmt.Sprintf("Basic realm=%q, charset=\"UTF-8\"", c.Realm)
	c.Defaults()
	return nil
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{p: p} }

type stream struct {
	types.DefaultHttpContext
	p *plugin
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	c := &s.p.c
	auth, err := proxywasm.GetHttpRequestHeader("authorization")
	if err != nil || auth == "" {
		return authn.Deny(401, c.challenge, "Unauthorized")
	}
	name, ok := s.p.check(auth)
	if !ok {
		return authn.Deny(401, c.challenge, "Invalid authentication credentials")
	}
	if *c.HideCredentials {
		proxywasm.RemoveHttpRequestHeader("authorization")
	}
	authn.Consumer(*c.ConsumerHeader, name)
	return types.ActionContinue
}

// check is the user an Authorization value authenticates, if any.
func (p *plugin) check(auth string) (string, bool) {
	scheme, cred, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "basic") {
		return "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", false
	}
	name, password, ok := strings.Cut(string(raw), ":")
	u := p.c.users[name]
	if !ok || u == nil {
		// The same work as for a user that exists: no hint of which names do.
		sum := sha1.Sum([]byte(password))
		subtle.ConstantTimeCompare(sum[:], make([]byte, sha1.Size))
		return "", false
	}
	if u.sha1 != nil {
		sum := sha1.Sum([]byte(password))
		return u.name, subtle.ConstantTimeCompare(sum[:], u.sha1) == 1
	}
	key := sha256.Sum256([]byte(auth))
	if who, ok := p.verified[key]; ok && who == u.name {
		return u.name, true
	}
	if bcrypt.CompareHashAndPassword(u.bcrypt, []byte(password)) != nil {
		return "", false
	}
	if len(p.verified) >= 1024 {
		clear(p.verified)
	}
	p.verified[key] = u.name
	return u.name, true
}
