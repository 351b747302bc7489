//go:build wasip1

// Command retry is plexus's retry filter: it gives each request the retry policy (and
// timeout) of the first of its policies that matches the request's method and path, as
// Envoy's route retry_policy and Kong's retries do, and the gateway's router carries it
// out (plexus.SetRetry, plexus.SetTimeout). A request no policy matches keeps its route's.
// See README.md.
package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/plexus-mesh/plexus/filters/internal/start"

	"github.com/plexus-mesh/plexus/sdk/go/plexus"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type policy struct {
	Match struct {
		Methods    []string `json:"methods"`
		PathPrefix string   `json:"path_prefix"`
	} `json:"match"`
	Attempts      int      `json:"attempts"`
	RetryOn       []string `json:"retry_on"`
	Statuses      []int    `json:"statuses"`
	PerTryTimeout string   `json:"per_try_timeout"`
	Timeout       string   `json:"timeout"`
	AllMethods    bool     `json:"all_methods"`

	retry   plexus.RetryPolicy
	timeout time.Duration
}

type plugin struct {
	types.DefaultPluginContext
	policies []policy
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	return start.Configure("retry", size, p.parse)
}

func (p *plugin) parse(raw []byte) error {
	var c struct {
		Policies []policy `json:"policies"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	if len(c.Policies) == 0 {
		return fmt.Errorf("policies: none")
	}
	for i := range c.Policies {
		pol := &c.Policies[i]
		var perTry time.Duration
		var err error
		if pol.PerTryTimeout != "" {
			if perTry, err = time.ParseDuration(pol.PerTryTimeout); err != nil || perTry <= 0 {
				return fmt.Errorf("policies[%d]: per_try_timeout %q: want a duration above 0", i, pol.PerTryTimeout)
			}
		}
		if pol.Timeout != "" {
			if pol.timeout, err = time.ParseDuration(pol.Timeout); err != nil || pol.timeout <= 0 {
				return fmt.Errorf("policies[%d]: timeout %q: want a duration above 0", i, pol.Timeout)
			}
		}
		if pol.Attempts == 0 {
			pol.Attempts = 2
		}
		if len(pol.RetryOn) == 0 && len(pol.Statuses) == 0 {
			pol.RetryOn = []string{"gateway-error", "connect-failure", "reset"}
		}
		for k, m := range pol.Match.Methods {
			pol.Match.Methods[k] = strings.ToUpper(m)
		}
		pol.retry = plexus.RetryPolicy{Attempts: pol.Attempts, RetryOn: pol.RetryOn, Statuses: pol.Statuses, PerTryTimeout: perTry, AllMethods: pol.AllMethods}
	}
	p.policies = c.Policies
	return nil
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{p: p} }

type stream struct {
	types.DefaultHttpContext
	p *plugin
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	method, _ := proxywasm.GetHttpRequestHeader(":method")
	path, _ := proxywasm.GetHttpRequestHeader(":path")
	for i := range s.p.policies {
		pol := &s.p.policies[i]
		if len(pol.Match.Methods) > 0 && !slices.Contains(pol.Match.Methods, method) || !strings.HasPrefix(path, pol.Match.PathPrefix) {
			continue
		}
		if err := plexus.SetRetry(pol.retry); err != nil {
			proxywasm.LogErrorf("retry: policies[%d]: %v", i, err)
		}
		if pol.timeout > 0 {
			if err := plexus.SetTimeout(pol.timeout); err != nil {
				proxywasm.LogErrorf("retry: policies[%d]: %v", i, err)
			}
		}
		break
	}
	return types.ActionContinue
}
