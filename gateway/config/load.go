package config

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/plexus-mesh/plexus/gateway/internal/accesslog"
	"github.com/plexus-mesh/plexus/gateway/internal/strictyaml"
	"github.com/plexus-mesh/plexus/registry"
)

// Error is one problem at a place in the file; Error() reads "file:line:col: message".
type Error = strictyaml.Error

// Errors are all the problems found in one file, in file order.
type Errors = strictyaml.Errors

// Load reads, decodes, defaults and validates the file. Every problem found is reported,
// each as file:line:col: message, in an Errors. `plexus validate`, `plexus run` and every
// reload go through here, so they accept and refuse exactly the same files.
func Load(file string) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(file, data)
}

// Parse is Load on data already read; file names it in errors and anchors relative paths
// (certificates, modules) to its directory.
func Parse(file string, data []byte) (*Config, error) {
	c := &Config{file: file, sum: sha256.Sum256(data)}
	pos, err := strictyaml.Decode(file, data, c)
	if err != nil {
		return nil, err
	}
	c.pos = pos
	c.setDefaults()
	v := validator{c: c}
	v.validate()
	if len(v.errs) > 0 {
		slices.SortStableFunc(v.errs, func(a, b *Error) int {
			if a.Pos.Line != b.Pos.Line {
				return a.Pos.Line - b.Pos.Line
			}
			return a.Pos.Col - b.Pos.Col
		})
		return nil, v.errs
	}
	return c, nil
}

// SourceSum is the SHA-256 of the bytes the config was parsed from: a file whose bytes
// have this sum holds this config.
func (c *Config) SourceSum() [32]byte { return c.sum }

// File is the path the config was loaded from.
func (c *Config) File() string { return c.file }

// Path resolves p (a file named in the config) against the config file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(c.file), p)
}

// Where says where the value at path (like "routes[2].backend") stands: "file:line:col".
func (c *Config) Where(path string) string {
	p := c.pos.Lookup(path)
	return fmt.Sprintf("%s:%d:%d", c.file, p.Line, p.Col)
}

// Defaults, in one place; the "default" tags on the types say the same for the schema.
const (
	DefaultAdminAddress             = "127.0.0.1:9901"
	DefaultMaxHeaderBytes           = 64 << 10
	DefaultReadHeaderTimeout        = 10 * time.Second
	DefaultIdleTimeout              = 90 * time.Second
	DefaultMaxConcurrentStreams     = 100
	DefaultMaxRequestBodyBytes      = 32 << 20
	DefaultDrainTimeout             = 15 * time.Second
	DefaultConnectTimeout           = 2 * time.Second
	DefaultMaxIdle                  = 128
	DefaultUpstreamIdleTimeout      = 60 * time.Second
	DefaultRouteTimeout             = 15 * time.Second
	DefaultRetryAttempts            = 2
	DefaultBackoffBase              = 25 * time.Millisecond
	DefaultBackoffMax               = 250 * time.Millisecond
	DefaultFilterMemory             = 64 << 20
	DefaultCallbackTimeout          = 100 * time.Millisecond
	DefaultMaxRequests              = 1024
	DefaultMaxConnections           = 1024
	DefaultMaxPending               = 1024
	DefaultMaxRetries               = 3
	DefaultBudgetPercent            = 20.0
	DefaultTranscodeMaxRequestBytes = 4 << 20
	DefaultMinRetryConcurrency      = 3
	DefaultPanicThreshold           = 50
	DefaultDNSRefresh               = 30 * time.Second
	DefaultRedisRefresh             = 2 * time.Second
	DefaultSlowStartMinPercent      = 10
	DefaultHealthInterval           = 5 * time.Second
	DefaultHealthTimeout            = time.Second
	DefaultHealthyThreshold         = 2
	DefaultUnhealthyThreshold       = 3
	DefaultConsecutive5xx           = 5
	DefaultOutlierInterval          = 10 * time.Second
	DefaultBaseEjection             = 30 * time.Second
	DefaultMaxEjection              = 300 * time.Second
	DefaultMaxEjectionPercent       = 10
	DefaultSuccessRateHosts         = 5
	DefaultSuccessRateVolume        = 100
	DefaultStdevFactor              = 1.9
	DefaultServiceName              = "plexus"
	DefaultExportTimeout            = 10 * time.Second
	DefaultMetricsInterval          = 60 * time.Second
	DefaultLogFlushInterval         = time.Second
	DefaultRedisDialTimeout         = 100 * time.Millisecond
	DefaultRedisReadTimeout         = 25 * time.Millisecond
	DefaultRedisWriteTimeout        = 25 * time.Millisecond
	DefaultRedisTimeout             = 50 * time.Millisecond
	DefaultRedisFailures            = 5
	DefaultRedisCooldown            = time.Second
	DefaultRequestBodyTimeout       = 30 * time.Second
	DefaultResponseWriteTimeout     = 30 * time.Second
	DefaultMaxWaiting               = 1024
	DefaultHostMemory               = 16 << 20
	DefaultMaxCallouts              = 32
	DefaultSharedDataBytes          = 64 << 20
	DefaultQueueDepth               = 10000
	DefaultUpgradeIdleTimeout       = time.Hour
	DefaultPullTimeout              = 60 * time.Second
	DefaultPullRetries              = 3
	DefaultRefreshInterval          = time.Minute
	DefaultModuleCacheSize          = 1 << 30

	PullIfNotPresent = "IfNotPresent"
	PullAlways       = "Always"
)

func (c *Config) setDefaults() {
	if c.Admin == nil {
		c.Admin = &Admin{}
	}
	def(&c.Admin.Address, DefaultAdminAddress)
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.TCP != nil {
			def(&l.TCP.IdleTimeout, DefaultUpgradeIdleTimeout)
		}
		if len(l.Protocols) == 0 {
			if l.TCP != nil {
				l.Protocols = []string{ProtoTCP}
			} else if l.TLS != nil {
				l.Protocols = []string{ProtoHTTP1, ProtoH2}
			} else {
				l.Protocols = []string{ProtoHTTP1, ProtoH2C}
			}
		}
		def(&l.Drain, DefaultDrainTimeout)
		def(&l.Limits.MaxHeaderBytes, DefaultMaxHeaderBytes)
		def(&l.Limits.ReadHeaderTimeout, DefaultReadHeaderTimeout)
		def(&l.Limits.IdleTimeout, DefaultIdleTimeout)
		def(&l.Limits.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
		def(&l.Limits.MaxRequestBodyBytes, DefaultMaxRequestBodyBytes)
		def(&l.Limits.RequestBodyTimeout, DefaultRequestBodyTimeout)
		def(&l.Limits.ResponseWriteTimeout, DefaultResponseWriteTimeout)
		on := true
		def(&l.Paths.Normalize, &on)
		def(&l.Paths.MergeSlashes, &on)
		def(&l.Paths.EscapedSlashes, EscapedSlashesKeep)
	}
	for i := range c.Backends {
		b := &c.Backends[i]
		def(&b.Balance, "round_robin")
		def(&b.Protocol, UpstreamHTTP1)
		def(&b.ConnectTimeout, DefaultConnectTimeout)
		def(&b.MaxIdle, DefaultMaxIdle)
		def(&b.IdleTimeout, DefaultUpstreamIdleTimeout)
		cb := &b.CircuitBreaker
		def(&cb.MaxRequests, DefaultMaxRequests)
		def(&cb.MaxConnections, DefaultMaxConnections)
		def(&cb.MaxPendingRequests, DefaultMaxPending)
		retries, minRetries := DefaultMaxRetries, DefaultMinRetryConcurrency
		def(&cb.MaxRetries, &retries)
		if rb := cb.RetryBudget; rb != nil {
			def(&rb.BudgetPercent, DefaultBudgetPercent)
			def(&rb.MinRetryConcurrency, &minRetries)
		}
		panicAt := DefaultPanicThreshold
		def(&b.PanicThreshold, &panicAt)
		if d := b.Discovery; d != nil {
			def(&d.Type, DiscoveryStatic)
			def(&d.Family, "any")
			if d.Type == DiscoveryRedis {
				def(&d.Refresh, DefaultRedisRefresh)
			}
			def(&d.Refresh, DefaultDNSRefresh)
		}
		if s := b.SlowStart; s != nil {
			def(&s.Aggression, 1)
			def(&s.MinWeightPercent, DefaultSlowStartMinPercent)
		}
		if h := b.HealthCheck; h != nil {
			def(&h.Type, HealthHTTP)
			def(&h.Path, "/")
			def(&h.Interval, DefaultHealthInterval)
			def(&h.Timeout, DefaultHealthTimeout)
			def(&h.HealthyThreshold, DefaultHealthyThreshold)
			def(&h.UnhealthyThreshold, DefaultUnhealthyThreshold)
		}
		if o := b.Outlier; o != nil {
			n := DefaultConsecutive5xx
			def(&o.Consecutive5xx, &n)
			def(&o.Interval, DefaultOutlierInterval)
			def(&o.BaseEjectionTime, DefaultBaseEjection)
			def(&o.MaxEjectionTime, DefaultMaxEjection)
			def(&o.MaxEjectionPercent, DefaultMaxEjectionPercent)
			if sr := o.SuccessRate; sr != nil {
				def(&sr.MinimumHosts, DefaultSuccessRateHosts)
				def(&sr.RequestVolume, DefaultSuccessRateVolume)
				def(&sr.StdevFactor, DefaultStdevFactor)
			}
		}
	}
	if r := c.Redis; r != nil {
		def(&r.Mode, RedisSingle)
		def(&r.DialTimeout, DefaultRedisDialTimeout)
		def(&r.ReadTimeout, DefaultRedisReadTimeout)
		def(&r.WriteTimeout, DefaultRedisWriteTimeout)
		def(&r.Timeout, DefaultRedisTimeout)
		def(&r.Breaker.Failures, DefaultRedisFailures)
		def(&r.Breaker.Cooldown, DefaultRedisCooldown)
	}
	if c.Registry == nil {
		c.Registry = &Registry{}
	}
	reg := c.Registry
	def(&reg.PullTimeout, DefaultPullTimeout)
	if reg.PullRetries == nil {
		n := DefaultPullRetries
		reg.PullRetries = &n
	}
	def(&reg.RefreshInterval, DefaultRefreshInterval)
	def(&reg.Cache.MaxSize, DefaultModuleCacheSize)
	for i := range c.Filters {
		f := &c.Filters[i]
		if ref, ok := strings.CutPrefix(f.Module, "oci://"); ok && f.PullPolicy == "" {
			// As Istio: a :latest tag is checked again; any other reference is pinned
			// once pulled.
			f.PullPolicy = PullIfNotPresent
			if strings.HasSuffix(ref, ":latest") {
				f.PullPolicy = PullAlways
			}
		}
	}
	if c.Telemetry == nil {
		c.Telemetry = &Telemetry{}
	}
	t := c.Telemetry
	def(&t.ServiceName, DefaultServiceName)
	if t.Tracing != nil {
		if t.Tracing.Sampling == nil {
			one := 1.0
			t.Tracing.Sampling = &one
		}
		def(&t.Tracing.Exporter.Timeout, DefaultExportTimeout)
	}
	if t.Metrics.Enabled == nil {
		on := true
		t.Metrics.Enabled = &on
	}
	if t.Metrics.Prometheus == nil {
		t.Metrics.Prometheus = t.Metrics.Enabled
	}
	if t.Metrics.Exporter != nil {
		def(&t.Metrics.Exporter.Timeout, DefaultExportTimeout)
	}
	def(&t.Metrics.Interval, DefaultMetricsInterval)
	for i := range t.AccessLog {
		a := &t.AccessLog[i]
		def(&a.Path, "stdout")
		def(&a.Format, "json")
		if a.Sample == nil {
			one := 1.0
			a.Sample = &one
		}
		def(&a.FlushInterval, DefaultLogFlushInterval)
	}
	for i := range c.Filters {
		f := &c.Filters[i]
		def(&f.Failure, "closed")
		def(&f.SharedData, SharedLocal)
		def(&f.RedisFailure, "open")
		def(&f.VMID, f.Name)
		def(&f.LogLevel, "info")
		def(&f.Limits.Memory, DefaultFilterMemory)
		def(&f.Limits.CallbackTimeout, DefaultCallbackTimeout)
		def(&f.Limits.MaxWaiting, DefaultMaxWaiting)
		def(&f.Limits.HostMemory, DefaultHostMemory)
		def(&f.Limits.MaxCallouts, DefaultMaxCallouts)
		def(&f.Limits.SharedDataBytes, DefaultSharedDataBytes)
		def(&f.Limits.QueueDepth, DefaultQueueDepth)
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Timeout == nil {
			d := DefaultRouteTimeout
			r.Timeout = &d
		}
		for j := range r.Backends {
			def(&r.Backends[j].Weight, 1)
		}
		if r.DirectResponse != nil {
			def(&r.DirectResponse.Status, 200)
		}
		if r.Redirect != nil {
			def(&r.Redirect.Status, 301)
		}
		if r.Upgrade != nil {
			def(&r.Upgrade.IdleTimeout, DefaultUpgradeIdleTimeout)
		}
		if r.GRPC != nil && r.GRPC.Transcode != nil {
			def(&r.GRPC.Transcode.MaxRequestBytes, DefaultTranscodeMaxRequestBytes)
		}
		if rt := r.Retry; rt != nil {
			def(&rt.Attempts, DefaultRetryAttempts)
			if len(rt.RetryOn) == 0 {
				rt.RetryOn = []string{RetryConnectFailure, RetryReset, RetryGatewayError}
			}
			def(&rt.Backoff.Base, DefaultBackoffBase)
			def(&rt.Backoff.Max, DefaultBackoffMax)
		}
	}
}

func def[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

type validator struct {
	c    *Config
	errs Errors
}

func (v *validator) errorf(path, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.c.file, Pos: v.c.pos.Lookup(path), Msg: fmt.Sprintf(format, args...)})
}

// maxIncluded bounds a file a filter's configuration includes (!file).
const maxIncluded = 4 << 20

// includeFiles replaces every value tagged !file PATH in a filter's configuration (n) with
// the file's contents, as a string: a JWKS, a certificate, a policy kept in a file of its
// own. PATH is relative to the config file's directory; a file that cannot be read is an
// error at the tag. The file is read when the config loads (and at every reload).
func (v *validator) includeFiles(filter string, n *yaml.Node) {
	if n == nil {
		return
	}
	if n.Tag == "!file" {
		if n.Kind != yaml.ScalarNode || n.Value == "" {
			v.errs = append(v.errs, &Error{File: v.c.file, Pos: strictyaml.NodePos(n), Msg: fmt.Sprintf("filter %q: !file wants a path", filter)})
			return
		}
		path := v.c.Path(n.Value)
		b, err := os.ReadFile(path)
		switch {
		case err != nil:
			v.errs = append(v.errs, &Error{File: v.c.file, Pos: strictyaml.NodePos(n), Msg: fmt.Sprintf("filter %q: !file %s: %v", filter, n.Value, err)})
			return
		case len(b) > maxIncluded:
			v.errs = append(v.errs, &Error{File: v.c.file, Pos: strictyaml.NodePos(n), Msg: fmt.Sprintf("filter %q: !file %s: %d bytes, more than %d", filter, n.Value, len(b), maxIncluded)})
			return
		}
		n.Kind, n.Tag, n.Value, n.Style = yaml.ScalarNode, "!!str", string(b), 0
		if v.c.included == nil {
			v.c.included = map[string]string{}
		}
		sum := sha256.Sum256(b)
		v.c.included[path] = "sha256:" + hex.EncodeToString(sum[:])
		return
	}
	for _, c := range n.Content {
		v.includeFiles(filter, c)
	}
}

// Included are the files filters' configurations include (!file), each with the digest
// ("sha256:HEX") of what it held when the config loaded: a change to one reloads the
// config, as a change to the config file does.
func (c *Config) Included() map[string]string { return c.included }

// unique reports a second use of a name, pointing at both.
func (v *validator) unique(seen map[string]string, kind, name, path string) {
	if name == "" {
		v.errorf(path, "%s has no name", kind)
		return
	}
	if first, ok := seen[name]; ok {
		v.errorf(path+".name", "%s %q is declared twice (first at %s)", kind, name, v.c.Where(first+".name"))
		return
	}
	seen[name] = path
}

func (v *validator) validate() {
	c := v.c
	adminOK := v.hostPort("admin.address", c.Admin.Address)
	if adminOK {
		v.adminReach(c.Admin)
	}
	if c.Node != nil && c.Node.Metadata != nil {
		// Filters get maps and lists as JSON: a value JSON cannot carry (.nan, .inf) is
		// refused here rather than missing at run time.
		if _, err := json.Marshal(c.Node.Metadata); err != nil {
			v.errorf("node.metadata", "node metadata cannot be handed to filters as JSON: %v", err)
		}
	}

	if len(c.Listeners) == 0 {
		v.errorf("", "no listeners: declare at least one under listeners:")
	}
	names := map[string]string{}
	addrs := map[string]string{}
	for i := range c.Listeners {
		v.listener(fmt.Sprintf("listeners[%d]", i), &c.Listeners[i], names, addrs)
	}
	if adminOK {
		v.adminClash()
	}

	names = map[string]string{}
	for i := range c.Backends {
		v.backend(fmt.Sprintf("backends[%d]", i), &c.Backends[i], names)
	}

	names = map[string]string{}
	for i := range c.Filters {
		f := &c.Filters[i]
		p := fmt.Sprintf("filters[%d]", i)
		v.unique(names, "filter", f.Name, p)
		switch {
		case strings.HasPrefix(f.Module, "file:"):
			path := c.Path(strings.TrimPrefix(f.Module, "file:"))
			if _, err := os.Stat(path); err != nil {
				v.errorf(p+".module", "filter %q: module %s", f.Name, statMsg(err))
			}
		case strings.HasPrefix(f.Module, "oci://"):
			if _, err := registry.ParseReference(strings.TrimPrefix(f.Module, "oci://")); err != nil {
				v.errorf(p+".module", "filter %q: %v", f.Name, strings.TrimPrefix(err.Error(), "registry: "))
			}
		default:
			v.errorf(p+".module", "filter %q: module %q must start with file: or oci://", f.Name, f.Module)
		}
		v.oneOf(p+".failure", "failure", f.Failure, "closed", "open")
		v.oneOf(p+".shared_data", "shared_data", f.SharedData, SharedLocal, SharedRedis)
		v.oneOf(p+".redis_failure", "redis_failure", f.RedisFailure, "open", "closed")
		if f.Limits.Memory < 64<<10 || f.Limits.Memory > 4<<30 {
			v.errorf(p+".limits.memory", "filter %q: memory %s must be between 64KiB and 4GiB", f.Name, f.Limits.Memory)
		}
		if f.Limits.Instances < 0 {
			v.errorf(p+".limits.instances", "filter %q: instances must not be negative", f.Name)
		}
		for _, n := range []struct {
			key string
			val int64
		}{{"max_waiting", int64(f.Limits.MaxWaiting)}, {"host_memory", int64(f.Limits.HostMemory)},
			{"max_callouts", int64(f.Limits.MaxCallouts)}, {"shared_data_bytes", int64(f.Limits.SharedDataBytes)},
			{"queue_depth", int64(f.Limits.QueueDepth)}} {
			if n.val < 0 {
				v.errorf(p+".limits."+n.key, "filter %q: %s must not be negative", f.Name, n.key)
			}
		}
		v.includeFiles(f.Name, f.Config)
		v.includeFiles(f.Name, f.VMConfig)
		for _, n := range []struct {
			key   string
			bytes func() ([]byte, error)
		}{{"config", f.ConfigBytes}, {"vm_config", f.VMConfigBytes}} {
			if _, err := n.bytes(); err != nil {
				v.errorf(p+"."+n.key, "filter %q: %s cannot be handed over as JSON: %v", f.Name, n.key, err)
			}
		}
	}

	names = map[string]string{}
	for i := range c.Routes {
		v.route(fmt.Sprintf("routes[%d]", i), &c.Routes[i], names)
	}
	v.telemetry(c.Telemetry)
	if c.Redis != nil {
		v.redis(c.Redis)
	}
	v.registry(c.Registry)
}

func (v *validator) registry(r *Registry) {
	for i, f := range v.c.Filters {
		if f.PullPolicy != "" {
			p := fmt.Sprintf("filters[%d].pull_policy", i)
			if !strings.HasPrefix(f.Module, "oci://") {
				v.errorf(p, "filter %q: pull_policy is for oci:// modules", f.Name)
			}
			v.oneOf(p, "pull_policy", f.PullPolicy, PullIfNotPresent, PullAlways)
		}
	}
	hosts := map[string]bool{}
	for i, c := range r.Credentials {
		p := fmt.Sprintf("registry.credentials[%d]", i)
		if hosts[c.Host] {
			v.errorf(p+".host", "registry %s has credentials twice", c.Host)
		}
		hosts[c.Host] = true
		if (c.Password == "") == (c.PasswordFile == "") {
			v.errorf(p, "registry %s: give password or password_file (one of them)", c.Host)
		}
		if c.PasswordFile != "" {
			if _, err := os.Stat(v.c.Path(c.PasswordFile)); err != nil {
				v.errorf(p+".password_file", "registry %s: password_file %s", c.Host, statMsg(err))
			}
		}
	}
	for i, ca := range r.CA {
		if _, err := os.Stat(v.c.Path(ca)); err != nil {
			v.errorf(fmt.Sprintf("registry.ca[%d]", i), "registry CA %s", statMsg(err))
		}
	}
	for i, vp := range r.Verify {
		p := fmt.Sprintf("registry.verify[%d]", i)
		if vp.Match == "" || strings.Contains(vp.Match, "://") || strings.Contains(vp.Match, "@") {
			v.errorf(p+".match", "match %q: want host:port, host:port/repository or host:port/path/*", vp.Match)
		}
		if len(vp.Keys) == 0 {
			v.errorf(p+".keys", "policy for %s names no key", vp.Match)
		}
		for j, k := range vp.Keys {
			kp := fmt.Sprintf("%s.keys[%d]", p, j)
			b, err := os.ReadFile(v.c.Path(k))
			if err != nil {
				v.errorf(kp, "key %s", statMsg(err))
				continue
			}
			if _, err := registry.LoadPublicKey(b); err != nil {
				v.errorf(kp, "key %s: %v", k, strings.TrimPrefix(err.Error(), "registry: "))
			}
		}
	}
	if r.PullTimeout < 0 || r.RefreshInterval < 0 {
		v.errorf("registry", "pull_timeout and refresh_interval must not be negative")
	}
	if *r.PullRetries < 0 {
		v.errorf("registry.pull_retries", "must not be negative")
	}
}

// adminReach refuses an admin address that other hosts can reach, unless allow_remote says
// so: the admin listener has no authentication, and /config and /clusters show the
// gateway's insides (Envoy's admin docs say the same of its own).
func (v *validator) adminReach(a *Admin) {
	host, _, _ := net.SplitHostPort(a.Address) // checked by hostPort
	if a.AllowRemote || isLoopbackHost(host) {
		return
	}
	what := "listens on every interface"
	if host != "" && !isWildcard(host) {
		what = "is not a loopback address"
	}
	v.errorf("admin.address", "admin address %s %s: the admin listener has no authentication, so anyone who reaches it sees /config, /clusters and /filters; "+
		"use a loopback address like %s, or set admin.allow_remote: true to serve it to other hosts (behind a firewall)", a.Address, what, DefaultAdminAddress)
}

// adminClash refuses an admin address that a listener binds too, which would fail at start
// with "address already in use" and no hint of which two collide.
func (v *validator) adminClash() {
	c := v.c
	for i, l := range c.Listeners {
		if !bindsSame(c.Admin.Address, l.Address) {
			continue
		}
		lp := fmt.Sprintf("listeners[%d].address", i)
		if _, inFile := c.pos["admin.address"]; !inFile {
			// The default address: point at the listener, which is in the file.
			v.errorf(lp, "listener %q: address %s takes the admin listener's default address %s; give the listener another port, or set admin.address", l.Name, l.Address, c.Admin.Address)
			continue
		}
		v.errorf("admin.address", "admin address %s is also the address of listener %q (at %s); give the admin listener a port of its own", c.Admin.Address, l.Name, c.Where(lp))
	}
}

// isLoopbackHost reports whether host (of a host:port) names only this machine: an address
// in 127.0.0.0/8 or ::1, or the name localhost. The empty host is every interface.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// isWildcard reports whether host binds every interface: empty, 0.0.0.0 or ::.
func isWildcard(host string) bool {
	if host == "" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsUnspecified()
}

// bindsSame reports whether two valid host:port addresses would bind the same TCP port:
// the same port, and the same host or either one every interface. Port 0 is a port the OS
// picks, never one already taken.
func bindsSame(a, b string) bool {
	ah, ap, _ := net.SplitHostPort(a)
	bh, bp, err := net.SplitHostPort(b)
	if err != nil {
		return false // reported where b is
	}
	an, _ := strconv.Atoi(ap)
	bn, err := strconv.Atoi(bp)
	if err != nil || an == 0 || an != bn {
		return false
	}
	ah, bh = bindHost(ah), bindHost(bh)
	return ah == "*" || bh == "*" || ah == bh
}

// bindHost is host as bindsSame compares it: "*" for every interface, "localhost" for
// the name and for the two addresses it stands for, an address in its canonical form, and
// a name in lower case.
func bindHost(host string) string {
	if isWildcard(host) {
		return "*"
	}
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		if a == netip.AddrFrom4([4]byte{127, 0, 0, 1}) || a == netip.IPv6Loopback() {
			return "localhost"
		}
		return a.String()
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

func (v *validator) redis(r *Redis) {
	if !v.oneOf("redis.mode", "mode", r.Mode, RedisSingle, RedisSentinel, RedisCluster) {
		return
	}
	switch {
	case r.Mode == RedisSingle && (r.Address == "") == (len(r.Addresses) == 0):
		v.errorf("redis", "redis: give address (one server), or addresses with mode cluster or sentinel")
	case r.Mode == RedisSingle && len(r.Addresses) > 0:
		v.errorf("redis.addresses", "redis: addresses is for mode cluster or sentinel; one server takes address")
	case r.Mode != RedisSingle && len(r.Addresses) == 0:
		v.errorf("redis", "redis: mode %s needs addresses (the %s)", r.Mode, map[string]string{RedisCluster: "cluster nodes", RedisSentinel: "sentinels"}[r.Mode])
	case r.Mode != RedisSingle && r.Address != "":
		v.errorf("redis.address", "redis: mode %s takes addresses, not address", r.Mode)
	}
	if r.Address != "" {
		v.hostPort("redis.address", r.Address)
	}
	for i, a := range r.Addresses {
		v.hostPort(fmt.Sprintf("redis.addresses[%d]", i), a)
	}
	if (r.Mode == RedisSentinel) != (r.MasterName != "") {
		v.errorf("redis.master_name", "redis: master_name goes with mode sentinel, and only with it")
	}
	if r.DB != 0 && r.Mode == RedisCluster {
		v.errorf("redis.db", "redis: a cluster has only database 0")
	}
	if r.Breaker.Failures < 0 {
		v.errorf("redis.breaker.failures", "redis: breaker failures must be at least 1")
	}
	if r.DB < 0 || r.PoolSize < 0 {
		v.errorf("redis", "redis: db and pool_size must not be negative")
	}
	for _, d := range []struct {
		key string
		val time.Duration
	}{{"dial_timeout", r.DialTimeout}, {"read_timeout", r.ReadTimeout}, {"write_timeout", r.WriteTimeout}, {"timeout", r.Timeout}, {"breaker.cooldown", r.Breaker.Cooldown}} {
		if d.val < 0 {
			v.errorf("redis."+d.key, "must be positive")
		}
	}
	if r.TLS != nil {
		v.clientTLS("redis.tls", "redis", r.TLS)
	}
}

// clientTLS checks the TLS that plexus connects with (to a backend, to Redis) at p; who
// names the connection in messages.
func (v *validator) clientTLS(p, who string, t *BackendTLS) {
	if t.CA != "" {
		if pem, err := os.ReadFile(v.c.Path(t.CA)); err != nil {
			v.errorf(p+".ca", "%s: ca %s", who, statMsg(err))
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			v.errorf(p+".ca", "%s: no PEM certificate in %s", who, t.CA)
		}
	}
	if (t.Cert == "") != (t.Key == "") {
		v.errorf(p, "%s: a client certificate needs both cert and key", who)
	} else if t.Cert != "" {
		if _, err := tls.LoadX509KeyPair(v.c.Path(t.Cert), v.c.Path(t.Key)); err != nil {
			v.errorf(p+".cert", "%s: cannot load client certificate: %v", who, err)
		}
	}
}

func (v *validator) telemetry(t *Telemetry) {
	if tr := t.Tracing; tr != nil {
		if s := *tr.Sampling; s < 0 || s > 1 || s != s {
			v.errorf("telemetry.tracing.sampling", "sampling %v must be between 0 and 1", s)
		}
		v.exporter("telemetry.tracing.exporter", &tr.Exporter)
	}
	for i, st := range t.Metrics.StatsTags {
		p := fmt.Sprintf("telemetry.metrics.stats_tags[%d]", i)
		if !labelName.MatchString(st.TagName) {
			v.errorf(p+".tag_name", "tag_name %q must be a label name: letters, digits and _, not starting with a digit", st.TagName)
		}
		re, err := regexp.Compile(st.Regex)
		switch {
		case err != nil:
			v.errorf(p+".regex", "bad regular expression: %v", err)
		case re.NumSubexp() == 0:
			v.errorf(p+".regex", "regex %q needs a capture group: the part of the name to cut (and, in a second, the value)", st.Regex)
		}
	}
	if e := t.Metrics.Exporter; e != nil {
		v.exporter("telemetry.metrics.exporter", e)
		if e.Type == ExportStdout && t.Metrics.Interval < time.Second {
			v.errorf("telemetry.metrics.interval", "interval %s is too short; at least 1s", t.Metrics.Interval)
		}
	}
	if t.Metrics.Interval < 100*time.Millisecond {
		v.errorf("telemetry.metrics.interval", "interval %s is too short; at least 100ms", t.Metrics.Interval)
	}
	for i := range t.AccessLog {
		a := &t.AccessLog[i]
		p := fmt.Sprintf("telemetry.access_log[%d]", i)
		v.oneOf(p+".format", "format", a.Format, "json", "text")
		if s := *a.Sample; s <= 0 || s > 1 || s != s {
			v.errorf(p+".sample", "sample %v must be above 0 and at most 1 (to log nothing, leave the sink out)", s)
		}
		if a.FlushInterval < 0 {
			v.errorf(p+".flush_interval", "must be positive")
		}
		if a.Format == "json" || a.Format == "text" {
			bad := false
			for j, f := range a.Fields {
				if err := accesslog.CheckFields(a.Format, []string{f}); err != nil {
					v.errorf(fmt.Sprintf("%s.fields[%d]", p, j), "%v", err)
					bad = true
				}
			}
			if err := accesslog.CheckFields(a.Format, a.Fields); err != nil && !bad {
				v.errorf(p+".fields", "%v", err) // what no one field shows: a field listed twice
			}
		}
		for j, e := range a.Status {
			if err := accesslog.CheckStatus([]string{e}); err != nil {
				v.errorf(fmt.Sprintf("%s.status[%d]", p, j), "%v", err)
			}
		}
	}
}

func (v *validator) exporter(p string, e *Exporter) {
	if !v.oneOf(p+".type", "exporter type", e.Type, ExportOTLPGRPC, ExportOTLPHTTP, ExportStdout) {
		return
	}
	switch {
	case e.Endpoint == "" || e.Type == ExportStdout:
	case strings.HasPrefix(e.Endpoint, "http://") || strings.HasPrefix(e.Endpoint, "https://"):
		if e.Type != ExportOTLPHTTP {
			v.errorf(p+".endpoint", "%s takes host:port, not a URL (%s)", e.Type, e.Endpoint)
		} else if _, err := url.Parse(e.Endpoint); err != nil {
			v.errorf(p+".endpoint", "bad URL %q: %v", e.Endpoint, err)
		} else if e.Insecure && strings.HasPrefix(e.Endpoint, "https://") {
			v.errorf(p+".insecure", "insecure asks for plain text, and the https:// endpoint for TLS: with a URL, its scheme says; use http:// for plain text")
		}
	default:
		v.hostPort(p+".endpoint", e.Endpoint)
	}
	if e.Timeout <= 0 {
		v.errorf(p+".timeout", "must be positive")
	}
}

func (v *validator) listener(p string, l *Listener, names, addrs map[string]string) {
	v.unique(names, "listener", l.Name, p)
	// Port 0 asks the OS for a free port, a different one each time: two such listeners
	// never collide.
	if v.hostPort(p+".address", l.Address) && !strings.HasSuffix(l.Address, ":0") {
		if first, ok := addrs[l.Address]; ok {
			v.errorf(p+".address", "listener %q: address %s is already used by the listener at %s", l.Name, l.Address, v.c.Where(first))
		}
		addrs[l.Address] = p + ".address"
	}
	seen := map[string]bool{}
	for j, proto := range l.Protocols {
		pp := fmt.Sprintf("%s.protocols[%d]", p, j)
		if !v.oneOf(pp, "protocol", proto, ProtoHTTP1, ProtoH2C, ProtoH2, ProtoH3, ProtoTCP) {
			continue
		}
		if proto == ProtoTCP && len(l.Protocols) > 1 {
			v.errorf(pp, "listener %q: tcp is an L4 listener of its own: it cannot share a listener with HTTP protocols", l.Name)
		}
		if seen[proto] {
			v.errorf(pp, "listener %q: protocol %s is listed twice", l.Name, proto)
		}
		seen[proto] = true
		switch {
		case (proto == ProtoH2 || proto == ProtoH3) && l.TLS == nil:
			v.errorf(pp, "listener %q: %s needs tls: {cert, key}", l.Name, proto)
		case proto == ProtoH2C && l.TLS != nil:
			v.errorf(pp, "listener %q: h2c is HTTP/2 without TLS; with tls use h2", l.Name)
		}
	}
	switch {
	case seen[ProtoTCP] && l.TCP == nil:
		v.errorf(p, "listener %q: protocols [tcp] needs tcp: {backend: NAME}", l.Name)
	case !seen[ProtoTCP] && l.TCP != nil:
		v.errorf(p+".tcp", "listener %q: tcp is for protocols [tcp]", l.Name)
	case l.TCP != nil:
		v.listenerTCP(p+".tcp", l)
	}
	if l.TLS != nil {
		if l.TLS.Cert == "" || l.TLS.Key == "" {
			v.errorf(p+".tls", "listener %q: tls needs both cert and key", l.Name)
		} else if _, err := tls.LoadX509KeyPair(v.c.Path(l.TLS.Cert), v.c.Path(l.TLS.Key)); err != nil {
			v.errorf(p+".tls.cert", "listener %q: cannot load certificate: %v", l.Name, err)
		}
	}
	if l.Limits.MaxHeaderBytes < 0 {
		v.errorf(p+".limits.max_header_bytes", "must be positive")
	}
	if l.Limits.MaxRequestBodyBytes < -1 {
		v.errorf(p+".limits.max_request_body_bytes", "must be positive, or -1 for no limit")
	}
	for j, cidr := range l.TrustedProxies {
		if _, err := ParseCIDR(cidr); err != nil {
			v.errorf(fmt.Sprintf("%s.trusted_proxies[%d]", p, j), "listener %q: %v", l.Name, err)
		}
	}
	v.oneOf(p+".paths.escaped_slashes", "escaped_slashes", l.Paths.EscapedSlashes, EscapedSlashesKeep, EscapedSlashesReject, EscapedSlashesUnescape)
	if l.Direction != "" {
		v.oneOf(p+".direction", "direction", l.Direction, DirectionInbound, DirectionOutbound)
	}
	if _, err := l.MetadataMap(); err != nil {
		v.errorf(p+".metadata", "listener %q: %v", l.Name, err)
	}
	if l.GRPC != nil && (l.GRPC.Reflection || l.GRPC.Health) && !seen[ProtoH2C] && !seen[ProtoH2] && len(l.Protocols) > 0 {
		v.errorf(p+".grpc", "listener %q: gRPC services need HTTP/2: add h2c (or h2 with tls) to protocols", l.Name)
	}
}

// listenerTCP checks an L4 listener's backend and network filters.
func (v *validator) listenerTCP(p string, l *Listener) {
	c, t := v.c, l.TCP
	backend := func(path, name string) {
		if !slices.ContainsFunc(c.Backends, func(b Backend) bool { return b.Name == name }) {
			v.errorf(path, "listener %q: no backend named %q%s", l.Name, name, known(c.Backends, func(b Backend) string { return b.Name }))
		}
	}
	switch {
	case t.Backend != "":
		backend(p+".backend", t.Backend)
	case len(t.SNI) == 0:
		v.errorf(p, "listener %q: tcp needs a backend, or sni routes to backends", l.Name)
	}
	for j, r := range t.SNI {
		rp := fmt.Sprintf("%s.sni[%d]", p, j)
		if len(r.ServerNames) == 0 {
			v.errorf(rp, "listener %q: an sni route needs server_names", l.Name)
		}
		backend(rp+".backend", r.Backend)
	}
	for j, f := range t.Filters {
		fp := fmt.Sprintf("%s.filters[%d]", p, j)
		if slices.Index(t.Filters, f) < j {
			v.errorf(fp, "listener %q lists filter %q twice; declare a second filter with the same module instead", l.Name, f)
		}
		if !slices.ContainsFunc(c.Filters, func(x Filter) bool { return x.Name == f }) {
			v.errorf(fp, "listener %q: no filter named %q%s", l.Name, f, known(c.Filters, func(x Filter) string { return x.Name }))
		}
	}
	if t.IdleTimeout < 0 {
		v.errorf(p+".idle_timeout", "listener %q: must be positive", l.Name)
	}
}

// ParseCIDR reads a trusted_proxies entry: a CIDR, or a single address (a /32 or /128).
func ParseCIDR(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR like 10.0.0.0/8 or an address", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR like 10.0.0.0/8 or an address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (v *validator) backend(p string, b *Backend, names map[string]string) {
	v.unique(names, "backend", b.Name, p)
	if _, err := b.MetadataMap(); err != nil {
		v.errorf(p+".metadata", "backend %q: %v", b.Name, err)
	}
	discovered := b.Discovery != nil && b.Discovery.Type != DiscoveryStatic
	switch {
	case discovered && len(b.Endpoints) > 0:
		v.errorf(p+".endpoints", "backend %q: discovery %s finds the endpoints; leave endpoints out", b.Name, b.Discovery.Type)
	case !discovered && len(b.Endpoints) == 0:
		v.errorf(p, "backend %q has no endpoints (list them, or give discovery)", b.Name)
	}
	if d := b.Discovery; d != nil {
		v.discovery(p+".discovery", b.Name, d)
	}
	v.resilience(p, b)
	for j, ep := range b.Endpoints {
		at := fmt.Sprintf("%s.endpoints[%d]", p, j)
		v.hostPort(at, ep.Address)
		if _, err := ep.MetadataMap(); err != nil {
			v.errorf(at, "backend %q: endpoint %s: %v", b.Name, ep.Address, err)
		}
	}
	v.oneOf(p+".balance", "balance", b.Balance, BalanceRoundRobin, BalanceLeastRequest, BalanceRandom, BalanceRingHash, BalanceMaglev)
	consistent := b.Balance == BalanceRingHash || b.Balance == BalanceMaglev
	switch h := b.HashOn; {
	case consistent && h == nil:
		v.errorf(p+".balance", "backend %q: balance %s hashes on something: give hash_on {header: NAME}, {cookie: NAME} or {source_ip: true}", b.Name, b.Balance)
	case !consistent && h != nil:
		v.errorf(p+".hash_on", "backend %q: hash_on is for balance ring_hash or maglev, not %s", b.Name, b.Balance)
	case h != nil:
		n := 0
		for _, set := range []bool{h.Header != "", h.Cookie != "", h.SourceIP} {
			if set {
				n++
			}
		}
		if n != 1 {
			v.errorf(p+".hash_on", "backend %q: hash_on: give one of header, cookie or source_ip", b.Name)
		}
	}
	v.oneOf(p+".protocol", "protocol", b.Protocol, UpstreamHTTP1, UpstreamH2C, UpstreamH2)
	if b.Protocol == UpstreamH2C && b.TLS != nil {
		v.errorf(p+".protocol", "backend %q: h2c is HTTP/2 without TLS; with tls use h2", b.Name)
	}
	if b.TLS != nil {
		v.clientTLS(p+".tls", fmt.Sprintf("backend %q", b.Name), b.TLS)
	}
	if b.MaxIdle < 0 {
		v.errorf(p+".max_idle_per_endpoint", "must not be negative")
	}
	cb := b.CircuitBreaker
	for _, f := range []struct {
		name string
		n    int
	}{{"max_requests", cb.MaxRequests}, {"max_connections", cb.MaxConnections}, {"max_pending_requests", cb.MaxPendingRequests}, {"max_retries", *cb.MaxRetries}} {
		if f.n < 0 {
			v.errorf(p+".circuit_breaker."+f.name, "backend %q: %s must not be negative", b.Name, f.name)
		}
	}
	if rb := cb.RetryBudget; rb != nil {
		if rb.BudgetPercent <= 0 || rb.BudgetPercent > 100 {
			v.errorf(p+".circuit_breaker.retry_budget.budget_percent", "backend %q: budget_percent %g: want more than 0, at most 100", b.Name, rb.BudgetPercent)
		}
		if *rb.MinRetryConcurrency < 0 {
			v.errorf(p+".circuit_breaker.retry_budget.min_retry_concurrency", "backend %q: min_retry_concurrency must not be negative", b.Name)
		}
	}
}

func (v *validator) discovery(p, backend string, d *Discovery) {
	if !v.oneOf(p+".type", "discovery type", d.Type, DiscoveryStatic, DiscoveryDNS, DiscoverySRV, DiscoveryFile, DiscoveryRedis) {
		return
	}
	v.oneOf(p+".family", "family", d.Family, "any", "v4", "v6")
	for j, r := range d.Resolvers {
		v.hostPort(fmt.Sprintf("%s.resolvers[%d]", p, j), r)
	}
	if d.Refresh < 0 {
		v.errorf(p+".refresh", "backend %q: refresh must not be negative", backend)
	}
	need := func(field, val, what string) {
		if val == "" {
			v.errorf(p, "backend %q: discovery %s needs %s (%s)", backend, d.Type, field, what)
		}
	}
	switch d.Type {
	case DiscoveryDNS:
		need("name", d.Name, "host:port")
		if d.Name != "" {
			v.hostPort(p+".name", d.Name)
		}
	case DiscoverySRV:
		need("name", d.Name, "the SRV record's name, like _http._tcp.api.example.com")
		if strings.Contains(d.Name, ":") {
			v.errorf(p+".name", "backend %q: srv name %q: the records give the ports; leave the port out", backend, d.Name)
		}
	case DiscoveryFile:
		need("path", d.Path, "a YAML list of endpoints")
		if d.Path != "" {
			if _, err := LoadEndpoints(v.c.Path(d.Path)); err != nil {
				v.errorf(p+".path", "backend %q: %v", backend, err)
			}
		}
	case DiscoveryRedis:
		need("service", d.Service, "the name its replicas register under")
		if v.c.Redis == nil {
			v.errorf(p+".type", "backend %q: discovery redis reads the redis: server, and there is none: add a top-level redis: block", backend)
		}
	}
}

// resilience checks a backend's slow start, health checks, outlier detection and panic
// threshold.
func (v *validator) resilience(p string, b *Backend) {
	positive := func(path string, d time.Duration) {
		if d <= 0 {
			v.errorf(path, "backend %q: must be more than 0", b.Name)
		}
	}
	percent := func(path string, n int) {
		if n < 0 || n > 100 {
			v.errorf(path, "backend %q: %d is not a percentage from 0 to 100", b.Name, n)
		}
	}
	if s := b.SlowStart; s != nil {
		positive(p+".slow_start.window", s.Window)
		if s.Aggression <= 0 {
			v.errorf(p+".slow_start.aggression", "backend %q: aggression must be more than 0", b.Name)
		}
		percent(p+".slow_start.min_weight_percent", s.MinWeightPercent)
		if b.Balance == BalanceRingHash || b.Balance == BalanceMaglev {
			v.errorf(p+".slow_start", "backend %q: slow_start is for balance round_robin, least_request and random, not %s", b.Name, b.Balance)
		}
	}
	if h := b.HealthCheck; h != nil {
		hp := p + ".health_check"
		v.oneOf(hp+".type", "health check type", h.Type, HealthHTTP, HealthTCP, HealthGRPC)
		positive(hp+".interval", h.Interval)
		positive(hp+".timeout", h.Timeout)
		if h.Jitter < 0 {
			v.errorf(hp+".jitter", "backend %q: jitter must not be negative", b.Name)
		}
		if h.HealthyThreshold < 1 {
			v.errorf(hp+".healthy_threshold", "backend %q: healthy_threshold must be at least 1", b.Name)
		}
		if h.UnhealthyThreshold < 1 {
			v.errorf(hp+".unhealthy_threshold", "backend %q: unhealthy_threshold must be at least 1", b.Name)
		}
		if h.Type == HealthHTTP {
			if !strings.HasPrefix(h.Path, "/") {
				v.errorf(hp+".path", "backend %q: health check path %q must start with /", b.Name, h.Path)
			}
			for j, st := range h.ExpectedStatuses {
				if _, err := ParseStatusRange(st); err != nil {
					v.errorf(fmt.Sprintf("%s.expected_statuses[%d]", hp, j), "backend %q: %v", b.Name, err)
				}
			}
		} else {
			for field, set := range map[string]bool{"path": h.Path != "/", "host": h.Host != "", "expected_statuses": len(h.ExpectedStatuses) > 0} {
				if set {
					v.errorf(hp+"."+field, "backend %q: %s is for type http, not %s", b.Name, field, h.Type)
				}
			}
		}
		if h.Type != HealthGRPC && h.Service != "" {
			v.errorf(hp+".service", "backend %q: service is for type grpc, not %s", b.Name, h.Type)
		}
	}
	if o := b.Outlier; o != nil {
		op := p + ".outlier_detection"
		if *o.Consecutive5xx < 0 {
			v.errorf(op+".consecutive_5xx", "backend %q: must not be negative", b.Name)
		}
		if o.ConsecutiveGatewayFailure < 0 {
			v.errorf(op+".consecutive_gateway_failure", "backend %q: must not be negative", b.Name)
		}
		positive(op+".interval", o.Interval)
		positive(op+".base_ejection_time", o.BaseEjectionTime)
		if o.MaxEjectionTime < o.BaseEjectionTime {
			v.errorf(op+".max_ejection_time", "backend %q: max_ejection_time %s is below base_ejection_time %s", b.Name, o.MaxEjectionTime, o.BaseEjectionTime)
		}
		percent(op+".max_ejection_percent", o.MaxEjectionPercent)
		if sr := o.SuccessRate; sr != nil {
			if sr.MinimumHosts < 1 {
				v.errorf(op+".success_rate.minimum_hosts", "backend %q: must be at least 1", b.Name)
			}
			if sr.RequestVolume < 1 {
				v.errorf(op+".success_rate.request_volume", "backend %q: must be at least 1", b.Name)
			}
			if sr.StdevFactor <= 0 {
				v.errorf(op+".success_rate.stdev_factor", "backend %q: must be more than 0", b.Name)
			}
		}
	}
	percent(p+".panic_threshold", *b.PanicThreshold)
}

// ParseStatusRange reads an expected status: a code ("204") or a range ("200-299"),
// each from 100 to 599; it returns the range as [low, high].
func ParseStatusRange(s string) ([2]int, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	a, err1 := strconv.Atoi(strings.TrimSpace(lo))
	b := a
	var err2 error
	if isRange {
		b, err2 = strconv.Atoi(strings.TrimSpace(hi))
	}
	if err1 != nil || err2 != nil || a < 100 || b > 599 || a > b {
		return [2]int{}, fmt.Errorf("expected status %q: want a code from 100 to 599, or a range of them like 200-299", s)
	}
	return [2]int{a, b}, nil
}

// LoadEndpoints reads an endpoints file (discovery type file): a YAML list of endpoints,
// each as a backend's endpoints take them. Errors say file:line:col.
func LoadEndpoints(file string) ([]Endpoint, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var eps []Endpoint
	pos, err := strictyaml.Decode(file, data, &eps)
	if err != nil {
		return nil, err
	}
	v := validator{c: &Config{file: file, pos: pos}}
	for j, ep := range eps {
		at := fmt.Sprintf("[%d]", j)
		v.hostPort(at, ep.Address)
		if _, err := ep.MetadataMap(); err != nil {
			v.errorf(at, "endpoint %s: %v", ep.Address, err)
		}
	}
	if len(v.errs) > 0 {
		return nil, v.errs
	}
	return eps, nil
}

func (v *validator) route(p string, r *Route, names map[string]string) {
	c := v.c
	v.unique(names, "route", r.Name, p)
	if actions := conditions(r.Backend != "", len(r.Backends) > 0, r.DirectResponse != nil, r.Redirect != nil); actions != 1 {
		v.errorf(p, "route %q needs exactly one of backend, backends, direct_response and redirect (it has %d)", r.Name, actions)
	}
	if r.Backend != "" && !slices.ContainsFunc(c.Backends, func(b Backend) bool { return b.Name == r.Backend }) {
		v.errorf(p+".backend", "route %q: no backend named %q%s", r.Name, r.Backend, known(c.Backends, func(b Backend) string { return b.Name }))
	}
	var total uint64
	for j, w := range r.Backends {
		wp := fmt.Sprintf("%s.backends[%d]", p, j)
		if !slices.ContainsFunc(c.Backends, func(b Backend) bool { return b.Name == w.Name }) {
			v.errorf(wp+".name", "route %q: no backend named %q%s", r.Name, w.Name, known(c.Backends, func(b Backend) string { return b.Name }))
		}
		total += uint64(w.Weight)
	}
	if total > 1<<32 {
		v.errorf(p+".backends", "route %q: weights add up to more than 2^32", r.Name)
	}
	for j, f := range r.Filters {
		if slices.Index(r.Filters, f) < j {
			// One request would hold two instances of one pool: under load, requests each
			// holding one and waiting for a second would wait for ever.
			v.errorf(fmt.Sprintf("%s.filters[%d]", p, j), "route %q lists filter %q twice; declare a second filter with the same module instead", r.Name, f)
		}
		if !slices.ContainsFunc(c.Filters, func(x Filter) bool { return x.Name == f }) {
			v.errorf(fmt.Sprintf("%s.filters[%d]", p, j), "route %q: no filter named %q%s", r.Name, f, known(c.Filters, func(x Filter) string { return x.Name }))
		}
	}

	if _, err := r.MetadataMap(); err != nil {
		v.errorf(p+".metadata", "route %q: %v", r.Name, err)
	}
	m := &r.Match
	if conditions(m.Path != "", m.PathPrefix != "", m.PathRegex != "") > 1 {
		v.errorf(p+".match", "route %q: use one of path, path_prefix and path_regex", r.Name)
	}
	for _, s := range []struct{ key, val string }{{"path", m.Path}, {"path_prefix", m.PathPrefix}} {
		if s.val != "" && !strings.HasPrefix(s.val, "/") {
			v.errorf(p+".match."+s.key, "route %q: %s %q must start with /", r.Name, s.key, s.val)
		}
	}
	v.regex(p+".match.path_regex", m.PathRegex)
	for j, h := range m.Hosts {
		hp := fmt.Sprintf("%s.match.hosts[%d]", p, j)
		if msg := hostPatternError(h); msg != "" {
			v.errorf(hp, "route %q: host %q %s", r.Name, h, msg)
		}
	}
	for j, method := range m.Methods {
		if method == "" || strings.ToUpper(method) != method || !isToken(method) {
			v.errorf(fmt.Sprintf("%s.match.methods[%d]", p, j), "route %q: method %q must be an upper-case token like GET", r.Name, method)
		}
	}
	for j, h := range m.Headers {
		hp := fmt.Sprintf("%s.match.headers[%d]", p, j)
		if !isToken(h.Name) {
			v.errorf(hp+".name", "route %q: %q is not a header name", r.Name, h.Name)
		}
		if conditions(h.Exact != "", h.Prefix != "", h.Regex != "", h.Present != nil) > 1 {
			v.errorf(hp, "route %q: header %q: use one of exact, prefix, regex and present", r.Name, h.Name)
		}
		v.regex(hp+".regex", h.Regex)
	}
	for j, q := range m.Query {
		qp := fmt.Sprintf("%s.match.query[%d]", p, j)
		if q.Name == "" {
			v.errorf(qp, "route %q: a query match needs a name", r.Name)
		}
		if conditions(q.Exact != "", q.Regex != "", q.Present != nil) > 1 {
			v.errorf(qp, "route %q: query %q: use one of exact, regex and present", r.Name, q.Name)
		}
		v.regex(qp+".regex", q.Regex)
	}

	if rw := r.Rewrite; rw != nil {
		if conditions(rw.StripPrefix, rw.Prefix != "", rw.Path != "", rw.Regex != nil) > 1 {
			v.errorf(p+".rewrite", "route %q: use one of strip_prefix, prefix, path and regex", r.Name)
		}
		if (rw.StripPrefix || rw.Prefix != "") && m.PathPrefix == "" {
			v.errorf(p+".rewrite", "route %q: strip_prefix and prefix rewrite the matched path_prefix, and the route has none", r.Name)
		}
		if rw.Path != "" && !strings.HasPrefix(rw.Path, "/") {
			v.errorf(p+".rewrite.path", "route %q: path %q must start with /", r.Name, rw.Path)
		}
		if rw.Regex != nil {
			v.regex(p+".rewrite.regex.pattern", rw.Regex.Pattern)
		}
		if rw.Host != "" && strings.ContainsAny(rw.Host, "/ \r\n") {
			v.errorf(p+".rewrite.host", "route %q: %q is not a host", r.Name, rw.Host)
		}
	}
	v.headerOps(p+".request_headers", r.RequestHeaders)
	v.headerOps(p+".response_headers", r.ResponseHeaders)
	if d := r.DirectResponse; d != nil {
		if d.Status < 200 || d.Status > 599 {
			v.errorf(p+".direct_response.status", "route %q: status %d is not between 200 and 599", r.Name, d.Status)
		}
		v.headerOps(p+".direct_response", &HeaderOps{Set: d.Headers})
	}
	if rd := r.Redirect; rd != nil {
		if !slices.Contains([]int{301, 302, 303, 307, 308}, rd.Status) {
			v.errorf(p+".redirect.status", "route %q: redirect status %d is not one of 301, 302, 303, 307, 308", r.Name, rd.Status)
		}
		if rd.Scheme != "" {
			v.oneOf(p+".redirect.scheme", "scheme", rd.Scheme, "http", "https")
		}
		if rd.Port < 0 || rd.Port > 65535 {
			v.errorf(p+".redirect.port", "route %q: port %d is out of range", r.Name, rd.Port)
		}
		if rd.Path != "" && !strings.HasPrefix(rd.Path, "/") {
			v.errorf(p+".redirect.path", "route %q: path %q must start with /", r.Name, rd.Path)
		}
	}
	if u := r.Upgrade; u != nil {
		if len(u.Protocols) == 0 {
			v.errorf(p+".upgrade.protocols", "route %q: upgrade needs the protocols it allows, like [websocket]", r.Name)
		}
		for j, proto := range u.Protocols {
			if !isToken(proto) || strings.EqualFold(proto, "h2c") {
				v.errorf(fmt.Sprintf("%s.upgrade.protocols[%d]", p, j), "route %q: %q is not an upgrade token that can be forwarded", r.Name, proto)
			}
		}
		if u.IdleTimeout < 0 {
			v.errorf(p+".upgrade.idle_timeout", "route %q: idle_timeout must not be negative", r.Name)
		}
	}
	if *r.Timeout < 0 {
		v.errorf(p+".timeout", "route %q: timeout must not be negative", r.Name)
	}
	if g := m.GRPC; g != nil {
		if conditions(m.Path != "", m.PathPrefix != "", m.PathRegex != "") > 0 {
			v.errorf(p+".match.grpc", "route %q: match.grpc is the path /SERVICE/METHOD: use it without path, path_prefix and path_regex", r.Name)
		}
		if g.Service == "" || strings.ContainsAny(g.Service, "/ ") || strings.HasPrefix(g.Service, ".") {
			v.errorf(p+".match.grpc.service", "route %q: %q is not a service's full name like shop.v1.Orders", r.Name, g.Service)
		}
		if strings.ContainsAny(g.Method, "/ .") {
			v.errorf(p+".match.grpc.method", "route %q: %q is not a method name like Get", r.Name, g.Method)
		}
	}
	if g := r.GRPC; g != nil && g.Transcode != nil {
		tc := g.Transcode
		if r.Backend == "" && len(r.Backends) == 0 {
			v.errorf(p+".grpc.transcode", "route %q: transcoding forwards to a gRPC backend: the route needs backend or backends", r.Name)
		}
		if len(tc.Protos) == 0 {
			v.errorf(p+".grpc.transcode.protos", "route %q: transcode needs the .proto files of the services it maps", r.Name)
		}
		if tc.MaxRequestBytes <= 0 {
			v.errorf(p+".grpc.transcode.max_request_bytes", "route %q: max_request_bytes must be positive", r.Name)
		}
		names := []string{r.Backend}
		for _, w := range r.Backends {
			names = append(names, w.Name)
		}
		for _, name := range names {
			if i := slices.IndexFunc(c.Backends, func(b Backend) bool { return b.Name == name }); i >= 0 && c.Backends[i].Protocol == ProtoHTTP1 {
				v.errorf(p+".grpc.transcode", "route %q: backend %q speaks HTTP/1.1, and gRPC needs HTTP/2: declare it with protocol: h2c (or h2)", r.Name, name)
			}
		}
	}
	if rt := r.Retry; rt != nil {
		if rt.Attempts < 1 || rt.Attempts > 10 {
			v.errorf(p+".retry.attempts", "route %q: attempts %d must be between 1 and 10", r.Name, rt.Attempts)
		}
		for j, on := range rt.RetryOn {
			v.oneOf(fmt.Sprintf("%s.retry.retry_on[%d]", p, j), "retry_on", on, Retry5xx, RetryGatewayError, RetryConnectFailure, RetryReset,
				RetryCancelled, RetryDeadlineExceeded, RetryInternal, RetryResourceExhausted, RetryUnavailable)
		}
		if rt.Backoff.Max < rt.Backoff.Base {
			v.errorf(p+".retry.backoff.max", "route %q: backoff max %s is below base %s", r.Name, rt.Backoff.Max, rt.Backoff.Base)
		}
	}
}

func (v *validator) headerOps(p string, ops *HeaderOps) {
	if ops == nil {
		return
	}
	check := func(kp, name, value string) {
		if !isToken(name) {
			v.errorf(kp, "%q is not a header name", name)
		} else if strings.ContainsAny(value, "\r\n\x00") {
			v.errorf(kp, "header %s: value has a line break or NUL", name)
		}
	}
	for k, val := range ops.Add {
		check(p+".add."+k+"#key", k, val)
	}
	for k, val := range ops.Set {
		check(p+".set."+k+"#key", k, val)
	}
	for j, k := range ops.Remove {
		check(fmt.Sprintf("%s.remove[%d]", p, j), k, "")
	}
}

func (v *validator) regex(path, expr string) {
	if expr == "" {
		return
	}
	if _, err := regexp.Compile(expr); err != nil {
		v.errorf(path, "bad regular expression: %v", err)
	}
}

func (v *validator) oneOf(path, what, val string, allowed ...string) bool {
	if slices.Contains(allowed, val) {
		return true
	}
	v.errorf(path, "%s %q is not one of %s", what, val, strings.Join(allowed, ", "))
	return false
}

func (v *validator) hostPort(path, addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			err = errors.New(ae.Err) // "missing port in address", without the address again
		}
		v.errorf(path, "address %q: want host:port (%v)", addr, err)
		return false
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.errorf(path, "address %q: port %q is not a number from 0 to 65535", addr, port)
		return false
	}
	if strings.ContainsAny(host, "/ ") {
		v.errorf(path, "address %q: bad host %q", addr, host)
		return false
	}
	return true
}

func conditions(set ...bool) int {
	n := 0
	for _, b := range set {
		if b {
			n++
		}
	}
	return n
}

func known[T any](xs []T, name func(T) string) string {
	if len(xs) == 0 {
		return " (none are declared)"
	}
	ns := make([]string, len(xs))
	for i, x := range xs {
		ns[i] = name(x)
	}
	return " (declared: " + strings.Join(ns, ", ") + ")"
}

func statMsg(err error) string {
	if errors.Is(err, os.ErrNotExist) {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return pe.Path + " does not exist"
		}
	}
	return err.Error()
}

// isToken reports whether s is an RFC 9110 token (header names, methods).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// hostPatternError says what is wrong with a route's host pattern, or is "". A pattern is
// a name (a port after it is ignored), or a name with one wildcard at its start or end
// ("*.example.com", "*-canary", "api.*"), or "*", as Envoy's virtual host domains are.
func hostPatternError(h string) string {
	switch {
	case h == "*":
		return ""
	case h == "" || strings.ContainsAny(h, "/ \t?#@"):
		return "must be a host name, with at most one * at its start or end"
	}
	rest := strings.TrimSuffix(strings.TrimPrefix(h, "*"), "*")
	switch {
	case len(rest) < len(h)-1:
		return "may have a * at its start or at its end, not both"
	case rest == "" || strings.Contains(rest, "*"):
		return "may have a * only at its start or its end"
	case strings.Contains(rest, ".."), strings.HasPrefix(h, "*.."):
		return "has an empty label"
	}
	return ""
}

// labelName is what a Prometheus label (and a tag taken out of a metric's name) may be.
var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
