package discovery

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/plexus-mesh/plexus/gateway/config"
)

// The dns and srv sources use a stub client of ours rather than net.Resolver, which hides
// the records' TTLs. It speaks plain DNS over UDP, and TCP when an answer is truncated
// (RFC 1035 section 4.2), with EDNS0 (RFC 6891) for answers up to ednsSize bytes.

const (
	// dnsTimeout bounds one question to one server, over UDP and TCP together.
	dnsTimeout = 2 * time.Second
	// minRefresh is the least time between two lookups, however short the TTLs.
	minRefresh = time.Second
	// maxCNAMEs bounds a CNAME chain, against loops.
	maxCNAMEs = 8
	// ednsSize is the UDP payload size we advertise: the one DNS Flag Day 2020 settled on
	// to avoid IP fragmentation.
	ednsSize = 1232
	// resolvConf is where the system's resolvers are listed.
	resolvConf = "/etc/resolv.conf"
)

// dnsSource is the dns source (the A/AAAA records of a host, on a port) and the srv
// source (the targets, ports and weights of SRV records).
type dnsSource struct {
	srv     bool
	name    string // the name asked about, absolute: the host (dns) or the SRV name (srv)
	port    string // dns: the endpoints' port
	literal string // dns: the one endpoint, when the host is an IP address
	types   []dnsmessage.Type
	refresh time.Duration
	client  *dnsClient
	log     *slog.Logger
	after   func(time.Duration) <-chan time.Time
}

// newDNS is the source of d, of type srv when srv is set and dns otherwise.
func newDNS(d *config.Discovery, srv bool, log *slog.Logger, deps Deps) (Source, error) {
	deps = deps.defaults()
	s := &dnsSource{
		srv:     srv,
		refresh: d.Refresh,
		client:  &dnsClient{resolvers: d.Resolvers, resolvConf: resolvConf, timeout: dnsTimeout},
		log:     log,
		after:   deps.After,
	}
	if s.refresh <= 0 {
		s.refresh = config.DefaultDNSRefresh
	}
	switch d.Family {
	case "any", "":
		s.types = []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA}
	case "v4":
		s.types = []dnsmessage.Type{dnsmessage.TypeA}
	case "v6":
		s.types = []dnsmessage.Type{dnsmessage.TypeAAAA}
	default:
		return nil, fmt.Errorf("discovery %s: family %q: want any, v4 or v6", kind(srv), d.Family)
	}
	host := d.Name
	if srv {
		if strings.Contains(host, ":") {
			return nil, fmt.Errorf("discovery srv: name %q: the records give the ports; leave the port out", d.Name)
		}
	} else {
		h, port, err := net.SplitHostPort(d.Name)
		if err != nil {
			return nil, fmt.Errorf("discovery dns: name %q: want host:port (%w)", d.Name, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return nil, fmt.Errorf("discovery dns: name %q: port %q is not a number from 0 to 65535", d.Name, port)
		}
		if ip, err := netip.ParseAddr(h); err == nil {
			// An address needs no lookup, and never changes.
			s.literal = net.JoinHostPort(ip.String(), port)
			return s, nil
		}
		host, s.port = h, port
	}
	if host == "" {
		return nil, fmt.Errorf("discovery %s: no name to look up", kind(srv))
	}
	s.name = absolute(host)
	// Build a question now, so that a name DNS cannot carry fails the config, not each lookup.
	if _, err := packQuery(0, question(s.name, s.types[0])); err != nil {
		return nil, fmt.Errorf("discovery %s: name %q: %w", kind(srv), host, err)
	}
	return s, nil
}

func kind(srv bool) string {
	if srv {
		return config.DiscoverySRV
	}
	return config.DiscoveryDNS
}

// Run looks the name up, tells the set when it changed, and asks again when the answer's
// smallest TTL runs out (at least a second, at most refresh later). A failed lookup keeps
// the last set and is retried after 1s, 2s, 4s... up to refresh.
func (s *dnsSource) Run(ctx context.Context, update func([]config.Endpoint)) {
	if s.literal != "" {
		update([]config.Endpoint{{Address: s.literal}})
		<-ctx.Done()
		return
	}
	var (
		last    []config.Endpoint
		told    bool
		backoff = minRefresh
		failing bool
	)
	for {
		eps, ttl, err := s.lookup(ctx)
		var wait time.Duration
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			wait, backoff = backoff, min(2*backoff, max(s.refresh, minRefresh))
			failing = true
			s.log.Warn("discovery: DNS lookup failed; keeping the last endpoints",
				"name", s.name, "endpoints", len(last), "retry_in", wait, "error", err)
		default:
			if failing {
				s.log.Info("discovery: DNS lookup works again", "name", s.name)
				failing = false
			}
			backoff = minRefresh
			wait = max(minRefresh, min(ttl, s.refresh))
			if !told || !sameEndpoints(eps, last) {
				if len(eps) == 0 {
					s.log.Warn("discovery: DNS has no addresses for the name; the backend has no endpoints", "name", s.name)
				} else {
					// Debug: names that answer a rotating subset of their addresses change
					// at every lookup.
					s.log.Debug("discovery: endpoints changed", "name", s.name, "endpoints", len(eps))
				}
				update(eps)
				last, told = eps, true
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.after(wait):
		}
	}
}

// lookup is the set the name has now, and how long the answers it came from may be used.
func (s *dnsSource) lookup(ctx context.Context) ([]config.Endpoint, time.Duration, error) {
	var set endpointSet
	var ttl uint32
	var err error
	if s.srv {
		ttl, err = s.lookupSRV(ctx, &set)
	} else {
		var addrs []netip.Addr
		addrs, ttl, err = s.addrs(ctx, s.name, nil)
		for _, a := range addrs {
			set.add(net.JoinHostPort(a.String(), s.port), 0)
		}
	}
	if err != nil {
		return nil, 0, err
	}
	return set.sorted(), time.Duration(ttl) * time.Second, nil
}

// lookupSRV adds the endpoints of the SRV records of the lowest priority to set: each
// target's addresses, on the record's port, with its weight.
func (s *dnsSource) lookupSRV(ctx context.Context, set *endpointSet) (uint32, error) {
	a, err := s.client.resolve(ctx, s.name, dnsmessage.TypeSRV)
	if err != nil {
		return 0, err
	}
	ttl := a.ttl
	var best []*dnsmessage.SRVResource
	for _, r := range a.records {
		ttl = min(ttl, r.Header.TTL)
		srv, ok := r.Body.(*dnsmessage.SRVResource)
		// A target of "." means the service is decidedly not there (RFC 2782).
		if !ok || srv.Target.String() == "." {
			continue
		}
		switch {
		case len(best) == 0 || srv.Priority < best[0].Priority:
			best = append(best[:0], srv)
		case srv.Priority == best[0].Priority:
			best = append(best, srv)
		}
	}
	for _, srv := range best {
		addrs, t, err := s.addrs(ctx, srv.Target.String(), a.extra)
		if err != nil {
			return 0, err
		}
		ttl = min(ttl, t)
		weight := min(max(uint32(srv.Weight), 1), config.MaxEndpointWeight)
		for _, ip := range addrs {
			set.add(net.JoinHostPort(ip.String(), strconv.Itoa(int(srv.Port))), weight)
		}
	}
	return ttl, nil
}

// addrs is host's addresses of the family, and their smallest TTL: for each record type,
// those extra has (an SRV answer's additional section), else those DNS gives when asked.
func (s *dnsSource) addrs(ctx context.Context, host string, extra []dnsmessage.Resource) ([]netip.Addr, uint32, error) {
	ttl := uint32(math.MaxUint32)
	var out []netip.Addr
	for _, t := range s.types {
		recs := owned(extra, host, t)
		if len(recs) == 0 {
			a, err := s.client.resolve(ctx, host, t)
			if err != nil {
				return nil, 0, err
			}
			recs, ttl = a.records, min(ttl, a.ttl)
		}
		for _, r := range recs {
			ttl = min(ttl, r.Header.TTL)
			switch b := r.Body.(type) {
			case *dnsmessage.AResource:
				out = append(out, netip.AddrFrom4(b.A))
			case *dnsmessage.AAAAResource:
				out = append(out, netip.AddrFrom16(b.AAAA))
			}
		}
	}
	return out, ttl, nil
}

// endpointSet gathers endpoints by address. An address found twice (two SRV records
// naming hosts with one address) is one endpoint, with the weights added up.
type endpointSet struct {
	eps []config.Endpoint
}

func (s *endpointSet) add(addr string, weight uint32) {
	for i := range s.eps {
		if s.eps[i].Address == addr {
			s.eps[i].Weight = min(s.eps[i].Weight+weight, config.MaxEndpointWeight)
			return
		}
	}
	s.eps = append(s.eps, config.Endpoint{Address: addr, Weight: weight})
}

// sorted is the set in address order, so that the same answer in another order is the
// same set.
func (s *endpointSet) sorted() []config.Endpoint {
	slices.SortFunc(s.eps, func(a, b config.Endpoint) int { return strings.Compare(a.Address, b.Address) })
	return s.eps
}

// dnsClient asks DNS servers questions: a stub resolver, which leaves the recursion to
// them.
type dnsClient struct {
	resolvers  []string // host:port, asked in turn; empty: those of resolvConf
	resolvConf string
	timeout    time.Duration // for one question to one server
}

// answer is what a question's answers come to.
type answer struct {
	// records are the answers of the type asked, for the name the CNAME chain ends at.
	records []dnsmessage.Resource
	// extra is the additional section of the last message.
	extra []dnsmessage.Resource
	// ttl is the smallest TTL of the CNAMEs followed and, when there are no records, of
	// the negative answer (RFC 2308 section 5); MaxUint32 when nothing says. The records'
	// own TTLs are left to the caller.
	ttl uint32
}

// resolve asks for name's records of type t and follows CNAMEs: within the answer, as
// recursive servers send them, and by asking again for the end of the chain when the
// answer stops there.
func (c *dnsClient) resolve(ctx context.Context, name string, t dnsmessage.Type) (answer, error) {
	a := answer{ttl: math.MaxUint32}
	hops := 0
	for {
		m, err := c.ask(ctx, name, t)
		if err != nil {
			return answer{}, err
		}
		a.extra = m.Additionals
		followed := false
		for {
			cnames := owned(m.Answers, name, dnsmessage.TypeCNAME)
			if len(cnames) == 0 {
				break
			}
			if hops++; hops > maxCNAMEs {
				return answer{}, fmt.Errorf("dns: %s: more than %d CNAMEs in a row", name, maxCNAMEs)
			}
			a.ttl = min(a.ttl, cnames[0].Header.TTL)
			name = cnames[0].Body.(*dnsmessage.CNAMEResource).CNAME.String()
			followed = true
		}
		a.records = owned(m.Answers, name, t)
		if len(a.records) > 0 || !followed || m.RCode == dnsmessage.RCodeNameError {
			if len(a.records) == 0 {
				a.ttl = min(a.ttl, negativeTTL(m))
			}
			return a, nil
		}
	}
}

// owned is the records in rs of type t whose owner is name.
func owned(rs []dnsmessage.Resource, name string, t dnsmessage.Type) []dnsmessage.Resource {
	var out []dnsmessage.Resource
	for _, r := range rs {
		if r.Header.Type == t && r.Header.Class == dnsmessage.ClassINET && strings.EqualFold(r.Header.Name.String(), name) {
			out = append(out, r)
		}
	}
	return out
}

// negativeTTL is how long an answer without records may be used: the SOA record's TTL or
// its minimum field, whichever is less (RFC 2308 section 5); MaxUint32 without one.
func negativeTTL(m *dnsmessage.Message) uint32 {
	for _, r := range m.Authorities {
		if soa, ok := r.Body.(*dnsmessage.SOAResource); ok {
			return min(r.Header.TTL, soa.MinTTL)
		}
	}
	return math.MaxUint32
}

// ask puts one question to the resolvers in turn, and returns the first answer that
// settles it: NOERROR or NXDOMAIN. A server that fails (SERVFAIL, REFUSED, no answer in
// time) passes the question on to the next.
func (c *dnsClient) ask(ctx context.Context, name string, t dnsmessage.Type) (*dnsmessage.Message, error) {
	q := question(name, t)
	var errs []error
	for _, server := range c.servers() {
		m, err := c.exchange(ctx, server, q)
		if err == nil {
			return m, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// servers is the resolvers to ask: the configured ones, else those of resolvConf (read
// each time, as it changes with the network), else the local one.
func (c *dnsClient) servers() []string {
	if len(c.resolvers) > 0 {
		return c.resolvers
	}
	if data, err := os.ReadFile(c.resolvConf); err == nil {
		if ns := parseResolvConf(string(data)); len(ns) > 0 {
			return ns
		}
	}
	return []string{"127.0.0.1:53"}
}

// parseResolvConf is the nameservers of a resolv.conf, each host:53.
func parseResolvConf(data string) []string {
	var out []string
	for line := range strings.Lines(data) {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		if ip, err := netip.ParseAddr(f[1]); err == nil {
			out = append(out, net.JoinHostPort(ip.String(), "53"))
		}
	}
	return out
}

func question(name string, t dnsmessage.Type) dnsmessage.Question {
	n, _ := dnsmessage.NewName(name) // too long: empty, which packQuery refuses
	return dnsmessage.Question{Name: n, Type: t, Class: dnsmessage.ClassINET}
}

// absolute is name with the trailing dot of a fully qualified name.
func absolute(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

// packQuery is the query message for q: recursion desired, and an EDNS0 OPT record that
// lets the answer be up to ednsSize bytes over UDP.
func packQuery(id uint16, q dnsmessage.Question) ([]byte, error) {
	if q.Name.Length == 0 {
		return nil, errors.New("not a DNS name (empty or over 255 bytes)")
	}
	b := dnsmessage.NewBuilder(make([]byte, 2, 512), dnsmessage.Header{ID: id, RecursionDesired: true})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAdditionals(); err != nil {
		return nil, err
	}
	var opt dnsmessage.ResourceHeader
	if err := opt.SetEDNS0(ednsSize, dnsmessage.RCodeSuccess, false); err != nil {
		return nil, err
	}
	if err := b.OPTResource(opt, dnsmessage.OPTResource{}); err != nil {
		return nil, err
	}
	msg, err := b.Finish()
	if err != nil {
		return nil, err
	}
	// The first two bytes are room for the length prefix TCP needs (RFC 1035 4.2.2).
	binary.BigEndian.PutUint16(msg, uint16(len(msg)-2))
	return msg, nil
}

// errTruncated is a UDP answer that did not fit; TCP carries the whole of it.
var errTruncated = errors.New("dns: answer truncated")

// exchange puts q to server: over UDP, then over TCP if the answer came truncated.
func (c *dnsClient) exchange(ctx context.Context, server string, q dnsmessage.Question) (*dnsmessage.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// A random ID, and a fresh socket (so a random source port), make a forged answer hard
	// to slip in (RFC 5452).
	id := uint16(rand.Uint32())
	msg, err := packQuery(id, q)
	if err != nil {
		return nil, fmt.Errorf("dns: %s %s: %w", q.Type, q.Name, err)
	}
	m, err := c.roundTrip(ctx, "udp", server, msg, id, q)
	if errors.Is(err, errTruncated) {
		m, err = c.roundTrip(ctx, "tcp", server, msg, id, q)
	}
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("no answer in %v", c.timeout)
		}
		return nil, fmt.Errorf("dns: %s %s from %s: %w", q.Type, q.Name, server, err)
	}
	switch m.RCode {
	case dnsmessage.RCodeSuccess, dnsmessage.RCodeNameError:
		return m, nil
	}
	return nil, fmt.Errorf("dns: %s %s from %s: %w", q.Type, q.Name, server, rcodeError(m.RCode))
}

// rcodeError is a server's failure to answer (SERVFAIL, REFUSED, ...).
type rcodeError dnsmessage.RCode

func (e rcodeError) Error() string {
	return "server answered " + strings.TrimPrefix(dnsmessage.RCode(e).String(), "RCode")
}

// roundTrip sends msg (with its TCP length prefix) over network and reads the answer.
// Over UDP, datagrams that are not the answer to this query (another ID or question) are
// passed over; over TCP, the connection is ours, so such an answer is an error.
func (c *dnsClient) roundTrip(ctx context.Context, network, server string, msg []byte, id uint16, q dnsmessage.Question) (*dnsmessage.Message, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if network == "tcp" {
		if _, err := conn.Write(msg); err != nil {
			return nil, err
		}
		var n [2]byte
		if _, err := io.ReadFull(conn, n[:]); err != nil {
			return nil, err
		}
		buf := make([]byte, binary.BigEndian.Uint16(n[:]))
		if _, err := io.ReadFull(conn, buf); err != nil {
			return nil, err
		}
		m, err := parseAnswer(buf, id, q)
		if errors.Is(err, errTruncated) {
			return m, nil // all TCP has; use it
		}
		return m, err
	}

	if _, err := conn.Write(msg[2:]); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return nil, err
		}
		m, err := parseAnswer(buf[:n], id, q)
		if errors.Is(err, errNotOurs) {
			continue
		}
		return m, err
	}
}

// errNotOurs is a message that does not answer our query.
var errNotOurs = errors.New("dns: the answer does not match the query")

// parseAnswer parses b as the answer to query id for q. It returns errTruncated (and
// what there is) for a truncated answer, which may not parse past its header.
func parseAnswer(b []byte, id uint16, q dnsmessage.Question) (*dnsmessage.Message, error) {
	var p dnsmessage.Parser
	h, err := p.Start(b)
	if err != nil {
		return nil, errNotOurs
	}
	if !h.Response || h.ID != id {
		return nil, errNotOurs
	}
	got, err := p.AllQuestions()
	if err != nil || len(got) != 1 || got[0].Type != q.Type || got[0].Class != q.Class ||
		!strings.EqualFold(got[0].Name.String(), q.Name.String()) {
		return nil, errNotOurs
	}
	var m dnsmessage.Message
	if err := m.Unpack(b); err != nil {
		if h.Truncated {
			return &dnsmessage.Message{Header: h, Questions: got}, errTruncated
		}
		return nil, fmt.Errorf("dns: bad answer: %w", err)
	}
	if h.Truncated {
		return &m, errTruncated
	}
	return &m, nil
}
