package discovery

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/plexus-mesh/plexus/gateway/config"
)

// dnsTest is a dns or srv source of d run for a test, on a fake clock.
type dnsTest struct {
	after *fakeAfter
	logs  *logs
	sets  <-chan []config.Endpoint
}

// startSource runs the source of d (srv or dns); timeout, when set, bounds each question.
func startSource(t *testing.T, d config.Discovery, srv bool, timeout time.Duration) *dnsTest {
	t.Helper()
	fa := newFakeAfter()
	lg, log := newLogs(t)
	src, err := newDNS(&d, srv, log, Deps{After: fa.After})
	if err != nil {
		t.Fatal(err)
	}
	s := src.(*dnsSource)
	if timeout > 0 {
		s.client.timeout = timeout
	}
	return &dnsTest{after: fa, logs: lg, sets: run(t, src)}
}

func TestDNSFamilies(t *testing.T) {
	records := []dnsmessage.Resource{
		a("api.test", 60, "10.0.0.2"),
		a("api.test", 30, "10.0.0.1"),
		a("api.test", 45, "2001:db8::1"),
		a("other.test", 1, "10.9.9.9"),
	}
	for _, tc := range []struct {
		family    string
		want      []string
		wait      time.Duration
		notAsked  string // a record type never asked for
		askedOnce string
	}{
		{"any", []string{"10.0.0.1:8080", "10.0.0.2:8080", "[2001:db8::1]:8080"}, 30 * time.Second, "", ""},
		{"", []string{"10.0.0.1:8080", "10.0.0.2:8080", "[2001:db8::1]:8080"}, 30 * time.Second, "", ""},
		{"v4", []string{"10.0.0.1:8080", "10.0.0.2:8080"}, 30 * time.Second, " AAAA ", " A "},
		{"v6", []string{"[2001:db8::1]:8080"}, 45 * time.Second, " A ", " AAAA "},
	} {
		t.Run("family="+tc.family, func(t *testing.T) {
			srv := startDNS(t, records...)
			d := config.Discovery{Name: "api.test:8080", Family: tc.family, Resolvers: []string{srv.addr}, Refresh: time.Minute}
			dt := startSource(t, d, false, 0)
			wantSet(t, next(t, dt.sets), tc.want...)
			dt.after.wait(t, tc.wait)
			if tc.notAsked != "" && srv.askedCount(tc.notAsked) != 0 {
				t.Errorf("asked for %s records with family %s: %q", tc.notAsked, tc.family, srv.asked())
			}
			if tc.askedOnce != "" && srv.askedCount(tc.askedOnce) != 1 {
				t.Errorf("asked %q, want %s once", srv.asked(), tc.askedOnce)
			}
		})
	}
}

// The next lookup is when the smallest TTL runs out: at least a second later, at most
// refresh later; an answer like the last is not told again.
func TestDNSRefreshAtTTL(t *testing.T) {
	srv := startDNS(t, a("api.test", 5, "10.0.0.1"))
	dt := startSource(t, config.Discovery{Name: "api.test:80", Resolvers: []string{srv.addr}, Refresh: 30 * time.Second}, false, 0)
	wantSet(t, next(t, dt.sets), "10.0.0.1:80")
	dt.after.expect(t, 5*time.Second)

	// The same answer: asked again, not told.
	w := dt.after.wait(t, 5*time.Second)
	noSet(t, dt.sets)
	if n := srv.askedCount("udp A api.test."); n != 2 {
		t.Fatalf("asked %d times, want 2: %q", n, srv.asked())
	}

	srv.setRecords(a("api.test", 0, "10.0.0.2"), a("api.test", 0, "10.0.0.1"))
	w.fire()
	wantSet(t, next(t, dt.sets), "10.0.0.1:80", "10.0.0.2:80")
	w = dt.after.wait(t, time.Second) // TTL 0: once a second at most

	srv.setRecords(a("api.test", 86400, "10.0.0.2"))
	w.fire()
	wantSet(t, next(t, dt.sets), "10.0.0.2:80")
	dt.after.wait(t, 30*time.Second) // refresh bounds a long TTL
}

func TestDNSRefreshBounds(t *testing.T) {
	for _, tc := range []struct {
		name    string
		refresh time.Duration
		ttl     uint32
		wait    time.Duration
	}{
		{"no refresh is 30s", 0, 3600, 30 * time.Second},
		{"refresh under a second", 100 * time.Millisecond, 0, time.Second},
		{"refresh under the TTL", 10 * time.Second, 60, 10 * time.Second},
		{"TTL under refresh", time.Minute, 7, 7 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startDNS(t, a("api.test", tc.ttl, "10.0.0.1"))
			dt := startSource(t, config.Discovery{Name: "api.test:80", Resolvers: []string{srv.addr}, Refresh: tc.refresh}, false, 0)
			wantSet(t, next(t, dt.sets), "10.0.0.1:80")
			dt.after.wait(t, tc.wait)
		})
	}
}

func TestDNSCNAME(t *testing.T) {
	records := []dnsmessage.Resource{
		cname("www.test", 7, "edge.test"),
		cname("edge.test", 60, "API.test"), // names are case-insensitive
		a("api.test", 60, "10.0.0.1"),
		a("api.test", 60, "10.0.0.2"),
	}
	t.Run("in the answer", func(t *testing.T) {
		srv := startDNS(t, records...)
		dt := startSource(t, config.Discovery{Name: "www.test:80", Family: "v4", Resolvers: []string{srv.addr}, Refresh: time.Minute}, false, 0)
		wantSet(t, next(t, dt.sets), "10.0.0.1:80", "10.0.0.2:80")
		dt.after.wait(t, 7*time.Second) // the CNAME's TTL counts too
		if n := len(srv.asked()); n != 1 {
			t.Errorf("asked %q, want one question", srv.asked())
		}
	})
	t.Run("asked for", func(t *testing.T) {
		srv := startDNS(t, records...)
		srv.set(func(z *zone) { z.cnameOnly = true })
		dt := startSource(t, config.Discovery{Name: "www.test:80", Family: "v4", Resolvers: []string{srv.addr}, Refresh: time.Minute}, false, 0)
		wantSet(t, next(t, dt.sets), "10.0.0.1:80", "10.0.0.2:80")
		dt.after.wait(t, 7*time.Second)
		want := []string{"udp A www.test.", "udp A edge.test.", "udp A API.test."}
		if got := srv.asked(); !slices.Equal(got, want) {
			t.Errorf("asked %q, want %q", got, want)
		}
	})
	t.Run("loop", func(t *testing.T) {
		srv := startDNS(t, cname("a.test", 60, "b.test"), cname("b.test", 60, "a.test"))
		dt := startSource(t, config.Discovery{Name: "a.test:80", Family: "v4", Resolvers: []string{srv.addr}, Refresh: time.Minute}, false, 0)
		dt.after.wait(t, time.Second) // a failure: retried, nothing told
		noSet(t, dt.sets)
		dt.logs.wait(t, 1, "DNS lookup failed", "more than 8 CNAMEs")
	})
}

// NXDOMAIN, and a name without records of the family, are answers: the set is empty.
func TestDNSNoRecords(t *testing.T) {
	srv := startDNS(t)
	srv.set(func(z *zone) { z.soa = soaRR("test", 300, 10) })
	dt := startSource(t, config.Discovery{Name: "api.test:80", Family: "v4", Resolvers: []string{srv.addr}, Refresh: time.Minute}, false, 0)
	wantSet(t, next(t, dt.sets)) // the first answer is told, empty as it is
	dt.logs.wait(t, 1, "level=WARN", "no addresses", "api.test.")
	w := dt.after.wait(t, 10*time.Second) // the negative TTL: the SOA's minimum

	srv.setRecords(a("api.test", 60, "10.0.0.1"))
	w.fire()
	wantSet(t, next(t, dt.sets), "10.0.0.1:80")
	w = dt.after.wait(t, time.Minute)

	// The name is there, with an AAAA record only: no A records.
	srv.setRecords(a("api.test", 60, "2001:db8::1"))
	w.fire()
	wantSet(t, next(t, dt.sets))
	w = dt.after.wait(t, 10*time.Second)

	// Still empty: not told again.
	w.fire()
	dt.after.wait(t, 10*time.Second)
	noSet(t, dt.sets)
	if n := dt.logs.count("no addresses"); n != 2 {
		t.Errorf("logged %d times that there are no addresses, want 2 (once per change):\n%s", n, dt.logs)
	}
}

// A server failing or silent is no answer: the last set stays, and the lookup is retried
// after 1s, 2s, 4s... up to refresh; an answer then resets the backoff.
func TestDNSFailureKeepsLastSet(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(z *zone)
		log  string
	}{
		{"SERVFAIL", func(z *zone) { z.rcode = map[string]dnsmessage.RCode{"api.test.": dnsmessage.RCodeServerFailure} }, "server answered ServerFailure"},
		{"REFUSED", func(z *zone) { z.rcode = map[string]dnsmessage.RCode{"api.test.": dnsmessage.RCodeRefused} }, "server answered Refused"},
		{"timeout", func(z *zone) { z.drop = true }, "no answer in 300ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startDNS(t, a("api.test", 60, "10.0.0.1"), a("api.test", 60, "2001:db8::1"))
			dt := startSource(t, config.Discovery{Name: "api.test:80", Resolvers: []string{srv.addr}, Refresh: 10 * time.Second}, false, 300*time.Millisecond)
			wantSet(t, next(t, dt.sets), "10.0.0.1:80", "[2001:db8::1]:80")
			w := dt.after.wait(t, 10*time.Second)

			srv.set(tc.fail)
			w.fire()
			for _, backoff := range []time.Duration{1, 2, 4, 8, 10} {
				w = dt.after.wait(t, backoff*time.Second)
				noSet(t, dt.sets)
				w.fire()
			}
			w = dt.after.wait(t, 10*time.Second) // the backoff stays at refresh
			noSet(t, dt.sets)
			dt.logs.wait(t, 6, "level=WARN", "DNS lookup failed", "keeping the last endpoints", tc.log)

			// The server mends before the next lookup is let go, not as it runs.
			srv.set(func(z *zone) { z.rcode, z.drop = nil, false })
			w.fire()
			// The same set as before the failure: not told again.
			w = dt.after.wait(t, 10*time.Second)
			noSet(t, dt.sets)
			dt.logs.wait(t, 1, "level=INFO", "DNS lookup works again")
			srv.setRecords(a("api.test", 5, "10.0.0.2"))
			w.fire()
			wantSet(t, next(t, dt.sets), "10.0.0.2:80")
			w = dt.after.wait(t, 5*time.Second)

			// A failure after the recovery starts the backoff at 1s again.
			srv.set(tc.fail)
			w.fire()
			dt.after.wait(t, time.Second)
			noSet(t, dt.sets)
		})
	}
}

// A lookup that fails from the start tells nothing: no set is made up.
func TestDNSFailureFirst(t *testing.T) {
	srv := startDNS(t, a("api.test", 60, "10.0.0.1"))
	srv.set(func(z *zone) { z.rcode = map[string]dnsmessage.RCode{"api.test.": dnsmessage.RCodeServerFailure} })
	dt := startSource(t, config.Discovery{Name: "api.test:80", Resolvers: []string{srv.addr}, Refresh: 30 * time.Second}, false, 0)
	w := dt.after.wait(t, time.Second)
	noSet(t, dt.sets)
	srv.set(func(z *zone) { z.rcode = nil })
	w.fire()
	wantSet(t, next(t, dt.sets), "10.0.0.1:80")
}

// Resolvers are asked in turn: one refusing the connection, one failing, then one that
// answers.
func TestDNSResolversInTurn(t *testing.T) {
	failing := startDNS(t, a("api.test", 60, "10.6.6.6"))
	failing.set(func(z *zone) { z.rcode = map[string]dnsmessage.RCode{"api.test.": dnsmessage.RCodeServerFailure} })
	good := startDNS(t, a("api.test", 60, "10.0.0.1"))
	d := config.Discovery{Name: "api.test:80", Family: "v4", Resolvers: []string{deadUDP(t), failing.addr, good.addr}, Refresh: time.Minute}
	dt := startSource(t, d, false, 0)
	wantSet(t, next(t, dt.sets), "10.0.0.1:80")
	if failing.askedCount("A api.test.") != 1 || good.askedCount("A api.test.") != 1 {
		t.Errorf("failing server asked %q, good one %q; want one question each", failing.asked(), good.asked())
	}
}

// An answer truncated over UDP is asked for again over TCP.
func TestDNSTruncatedUsesTCP(t *testing.T) {
	var records []dnsmessage.Resource
	var want []string
	for i := range 100 { // more than fits in 1232 bytes
		ip := fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)
		records = append(records, a("api.test", 60, ip))
		want = append(want, ip+":80")
	}
	slices.Sort(want)
	srv := startDNS(t, records...)
	srv.set(func(z *zone) { z.truncate = true })
	dt := startSource(t, config.Discovery{Name: "api.test:80", Family: "v4", Resolvers: []string{srv.addr}, Refresh: time.Minute}, false, 0)
	wantSet(t, next(t, dt.sets), want...)
	if got, w := srv.asked(), []string{"udp A api.test.", "tcp A api.test."}; !slices.Equal(got, w) {
		t.Errorf("asked %q, want %q", got, w)
	}
}

// Datagrams that are not the answer to our query (another ID, another question) are
// passed over, not taken for it.
func TestDNSIgnoresForgedAnswers(t *testing.T) {
	srv := startDNS(t, a("api.test", 60, "10.0.0.1"))
	srv.set(func(z *zone) { z.forge = true })
	dt := startSource(t, config.Discovery{Name: "api.test:80", Family: "v4", Resolvers: []string{srv.addr}, Refresh: time.Minute}, false, 0)
	wantSet(t, next(t, dt.sets), "10.0.0.1:80")
	dt.after.wait(t, time.Minute)
}

func TestDNSIPLiteral(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"127.0.0.1:8080", "127.0.0.1:8080"},
		{"[::1]:80", "[::1]:80"},
		{"[2001:DB8::1]:443", "[2001:db8::1]:443"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startDNS(t)
			dt := startSource(t, config.Discovery{Name: tc.name, Family: "v4", Resolvers: []string{srv.addr}, Refresh: time.Minute}, false, 0)
			wantSet(t, next(t, dt.sets), tc.want)
			dt.after.none(t)
			if q := srv.asked(); len(q) != 0 {
				t.Errorf("asked %q for an IP address", q)
			}
		})
	}
}

func TestSRV(t *testing.T) {
	const name = "_http._tcp.api.test"
	records := []dnsmessage.Resource{
		srvRR(name, 60, 10, 0, 8080, "a.test"),     // weight 0 counts as 1
		srvRR(name, 60, 10, 65535, 8081, "b.test"), // beyond the most a weight can be
		srvRR(name, 60, 10, 5, 8082, "c.test"),
		srvRR(name, 60, 20, 100, 9090, "backup.test"), // a higher priority: not used
		a("a.test", 60, "10.0.0.1"),
		a("a.test", 60, "2001:db8::a"),
		a("b.test", 20, "10.0.0.2"),
		a("c.test", 40, "10.0.0.3"),
		a("backup.test", 1, "10.9.9.9"),
	}
	for _, tc := range []struct {
		family string
		want   []string
		wait   time.Duration
	}{
		{"any", []string{"10.0.0.1:8080/1", "10.0.0.2:8081/10000", "10.0.0.3:8082/5", "[2001:db8::a]:8080/1"}, 20 * time.Second},
		{"v4", []string{"10.0.0.1:8080/1", "10.0.0.2:8081/10000", "10.0.0.3:8082/5"}, 20 * time.Second},
		{"v6", []string{"[2001:db8::a]:8080/1"}, 60 * time.Second},
	} {
		t.Run("family="+tc.family, func(t *testing.T) {
			srv := startDNS(t, records...)
			// a.test and b.test come in the additional section, c.test has to be asked for.
			srv.set(func(z *zone) { z.additional = map[string]bool{"a.test.": true, "b.test.": true} })
			d := config.Discovery{Name: name, Family: tc.family, Resolvers: []string{srv.addr}, Refresh: time.Minute}
			dt := startSource(t, d, true, 0)
			wantSet(t, next(t, dt.sets), tc.want...)
			dt.after.wait(t, tc.wait)
			if tc.family == "v4" {
				want := []string{"udp SRV " + name + ".", "udp A c.test."}
				if got := srv.asked(); !slices.Equal(got, want) {
					t.Errorf("asked %q, want %q (the additional section used)", got, want)
				}
			}
			if n := srv.askedCount("backup.test"); n != 0 {
				t.Errorf("asked about the target of a higher priority: %q", srv.asked())
			}
		})
	}
}

func TestSRVChanges(t *testing.T) {
	const name = "_grpc._tcp.api.test"
	srv := startDNS(t,
		srvRR(name, 30, 1, 10, 50051, "a.test"),
		srvRR(name, 30, 2, 10, 50052, "b.test"),
		a("a.test", 30, "10.0.0.1"),
		a("b.test", 30, "10.0.0.2"),
	)
	d := config.Discovery{Name: name, Family: "v4", Resolvers: []string{srv.addr}, Refresh: time.Minute}
	dt := startSource(t, d, true, 0)
	wantSet(t, next(t, dt.sets), "10.0.0.1:50051/10")
	w := dt.after.wait(t, 30*time.Second)

	// The lowest priority gone, the next one is used.
	srv.setRecords(srvRR(name, 30, 2, 10, 50052, "b.test"), a("b.test", 30, "10.0.0.2"))
	w.fire()
	wantSet(t, next(t, dt.sets), "10.0.0.2:50052/10")
	w = dt.after.wait(t, 30*time.Second)

	// A weight change is a change.
	srv.setRecords(srvRR(name, 30, 2, 20, 50052, "b.test"), a("b.test", 30, "10.0.0.2"))
	w.fire()
	wantSet(t, next(t, dt.sets), "10.0.0.2:50052/20")
	w = dt.after.wait(t, 30*time.Second)

	// Two targets with one address: one endpoint, weights added up.
	srv.setRecords(
		srvRR(name, 30, 2, 20, 50052, "b.test"),
		srvRR(name, 30, 2, 5, 50052, "b2.test"),
		a("b.test", 30, "10.0.0.2"),
		a("b2.test", 30, "10.0.0.2"),
	)
	w.fire()
	wantSet(t, next(t, dt.sets), "10.0.0.2:50052/25")
	w = dt.after.wait(t, 30*time.Second)

	// "." says the service is not there (RFC 2782).
	srv.setRecords(srvRR(name, 30, 0, 0, 0, "."))
	w.fire()
	wantSet(t, next(t, dt.sets))
	w = dt.after.wait(t, 30*time.Second)

	// NXDOMAIN: empty too; not told again.
	srv.setRecords()
	w.fire()
	dt.after.wait(t, time.Minute)
	noSet(t, dt.sets)
}

// A failing address lookup of one SRV target fails the whole lookup: a set with the other
// targets only would be made up.
func TestSRVTargetFailure(t *testing.T) {
	const name = "_http._tcp.api.test"
	srv := startDNS(t,
		srvRR(name, 30, 1, 1, 80, "a.test"),
		srvRR(name, 30, 1, 1, 80, "b.test"),
		a("a.test", 30, "10.0.0.1"),
		a("b.test", 30, "10.0.0.2"),
	)
	d := config.Discovery{Name: name, Family: "v4", Resolvers: []string{srv.addr}, Refresh: time.Minute}
	dt := startSource(t, d, true, 0)
	wantSet(t, next(t, dt.sets), "10.0.0.1:80/1", "10.0.0.2:80/1")
	w := dt.after.wait(t, 30*time.Second)
	srv.set(func(z *zone) { z.rcode = map[string]dnsmessage.RCode{"b.test.": dnsmessage.RCodeServerFailure} })
	w.fire()
	dt.after.wait(t, time.Second)
	noSet(t, dt.sets)
	dt.logs.wait(t, 1, "DNS lookup failed", "b.test.")
}

// Through New, on the real clock: a record with a TTL of 1s that changes is seen.
func TestDNSRealClock(t *testing.T) {
	srv := startDNS(t, a("api.test", 1, "10.0.0.1"))
	d := config.Discovery{Type: config.DiscoveryDNS, Name: "api.test:80", Family: "v4", Resolvers: []string{srv.addr}, Refresh: 30 * time.Second}
	src, err := New("api", &d, nil, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	sets := run(t, src)
	wantSet(t, next(t, sets), "10.0.0.1:80")
	srv.setRecords(a("api.test", 1, "10.0.0.2"))
	wantSet(t, next(t, sets), "10.0.0.2:80")
}

func TestNewDNSErrors(t *testing.T) {
	for _, tc := range []struct {
		d    config.Discovery
		want string
	}{
		{config.Discovery{Type: config.DiscoveryDNS, Name: "api.test"}, `backend "api": discovery dns: name "api.test": want host:port`},
		{config.Discovery{Type: config.DiscoveryDNS, Name: "api.test:http"}, `port "http" is not a number`},
		{config.Discovery{Type: config.DiscoveryDNS, Name: ":80"}, "no name to look up"},
		{config.Discovery{Type: config.DiscoveryDNS, Name: strings.Repeat("a", 300) + ":80"}, "not a DNS name"},
		{config.Discovery{Type: config.DiscoveryDNS, Name: "a..test:80"}, `name "a..test"`},
		{config.Discovery{Type: config.DiscoverySRV, Name: "_http._tcp.api.test:80"}, "leave the port out"},
		{config.Discovery{Type: config.DiscoverySRV, Name: "api.test", Family: "v5"}, `family "v5"`},
		{config.Discovery{Type: "consul"}, `unknown discovery type "consul"`},
	} {
		_, err := New("api", &tc.d, nil, Deps{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): error %v, want one with %q", tc.d, err, tc.want)
		}
	}
}

func TestParseResolvConf(t *testing.T) {
	got := parseResolvConf(`# generated
search example.com
nameserver 10.0.0.53
nameserver   2001:db8::53
nameserver fe80::1%eth0
nameserver not-an-ip
options ndots:5
nameserver
`)
	want := []string{"10.0.0.53:53", "[2001:db8::53]:53", "[fe80::1%eth0]:53"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// Without resolvers in the config, those of resolv.conf are asked, else the local one.
func TestDNSSystemResolvers(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	c := &dnsClient{resolvConf: conf}
	if got := c.servers(); !slices.Equal(got, []string{"127.0.0.1:53"}) {
		t.Errorf("without resolv.conf: %q", got)
	}
	os.WriteFile(conf, []byte("search test\n"), 0o644)
	if got := c.servers(); !slices.Equal(got, []string{"127.0.0.1:53"}) {
		t.Errorf("without nameservers: %q", got)
	}
	os.WriteFile(conf, []byte("nameserver 10.0.0.53\nnameserver ::1\n"), 0o644)
	if got := c.servers(); !slices.Equal(got, []string{"10.0.0.53:53", "[::1]:53"}) {
		t.Errorf("with nameservers: %q", got)
	}
	c.resolvers = []string{"127.0.0.1:5353"}
	if got := c.servers(); !slices.Equal(got, c.resolvers) {
		t.Errorf("with resolvers: %q", got)
	}
}
