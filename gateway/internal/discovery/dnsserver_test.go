package discovery

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsServer is a DNS server for one test, on 127.0.0.1, UDP and TCP on one port the OS
// picked. It answers as a recursive server would, from a zone the test changes.
type dnsServer struct {
	addr string

	mu      sync.Mutex
	z       zone
	queries []string // "udp A api.test." for each question, in order
}

// zone is what a dnsServer answers from, and how.
type zone struct {
	records []dnsmessage.Resource
	// rcode answers the names in it with that code (SERVFAIL, REFUSED...) and nothing else.
	rcode map[string]dnsmessage.RCode
	// soa goes in the authority section of answers with no records (the negative TTL).
	soa *dnsmessage.Resource
	// additional holds the SRV targets whose addresses go in the additional section.
	additional map[string]bool
	drop       bool // answer nothing
	truncate   bool // over UDP, answer with TC set and no records
	cnameOnly  bool // stop at the first CNAME, as a server that does not recurse for it
	forge      bool // before each UDP answer, send two that are not its: another ID, another question
}

// startDNS starts a dnsServer with the records, stopped when the test ends.
func startDNS(t *testing.T, records ...dnsmessage.Resource) *dnsServer {
	t.Helper()
	s := &dnsServer{z: zone{records: records}}
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 10 { // the TCP port of the UDP one the OS picked may be taken
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	s.addr = pc.LocalAddr().String()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.serveUDP(pc) }()
	go func() { defer wg.Done(); s.serveTCP(ln) }()
	t.Cleanup(func() {
		pc.Close()
		ln.Close()
		wg.Wait()
	})
	return s
}

// set changes the zone.
func (s *dnsServer) set(f func(z *zone)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.z)
}

// setRecords replaces the records.
func (s *dnsServer) setRecords(rs ...dnsmessage.Resource) {
	s.set(func(z *zone) { z.records = rs })
}

// asked is the questions so far, as "udp A api.test.".
func (s *dnsServer) asked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.queries...)
}

// askedCount is how many questions so far have all of parts.
func (s *dnsServer) askedCount(parts ...string) int {
	n := 0
	for _, q := range s.asked() {
		if containsAll(q, parts) {
			n++
		}
	}
	return n
}

func (s *dnsServer) serveUDP(pc net.PacketConn) {
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		msgs := s.handle(buf[:n], "udp")
		for _, m := range msgs {
			pc.WriteTo(m, from)
		}
	}
}

func (s *dnsServer) serveTCP(ln net.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			for {
				var n [2]byte
				if _, err := io.ReadFull(c, n[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(n[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				for _, m := range s.handle(q, "tcp") {
					c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(m))))
					c.Write(m)
				}
			}
		}()
	}
}

// handle is the messages that answer query, in the order they are sent.
func (s *dnsServer) handle(query []byte, network string) [][]byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	s.mu.Lock()
	s.queries = append(s.queries, fmt.Sprintf("%s %s %s", network, strings.TrimPrefix(q.Type.String(), "Type"), q.Name))
	z := s.z
	m := z.answer(h.ID, q, network == "udp")
	s.mu.Unlock()
	if z.drop {
		return nil
	}
	var out [][]byte
	if z.forge && network == "udp" {
		// Both carry another address, which the source must not take.
		forged := a(q.Name.String(), 60, "10.6.6.6")
		if q.Type == dnsmessage.TypeAAAA {
			forged = a(q.Name.String(), 60, "2001:db8::666")
		}
		other := m
		other.Answers = []dnsmessage.Resource{forged}
		other.ID++
		out = append(out, pack(other))
		other = m
		other.Answers = []dnsmessage.Resource{forged}
		other.Questions = []dnsmessage.Question{{Name: dnsmessage.MustNewName("forged.test."), Type: q.Type, Class: q.Class}}
		out = append(out, pack(other))
	}
	return append(out, pack(m))
}

func pack(m dnsmessage.Message) []byte {
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

// answer is the answer to q from z.
func (z zone) answer(id uint16, q dnsmessage.Question, udp bool) dnsmessage.Message {
	m := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, Response: true, RecursionDesired: true, RecursionAvailable: true},
		Questions: []dnsmessage.Question{q},
	}
	name := strings.ToLower(q.Name.String())
	if rc, ok := z.rcode[name]; ok {
		m.RCode = rc
		return m
	}
	for range 10 {
		cnames := owned(z.records, name, dnsmessage.TypeCNAME)
		if len(cnames) == 0 || q.Type == dnsmessage.TypeCNAME {
			break
		}
		m.Answers = append(m.Answers, cnames[0])
		name = strings.ToLower(cnames[0].Body.(*dnsmessage.CNAMEResource).CNAME.String())
		if z.cnameOnly {
			return m
		}
	}
	m.Answers = append(m.Answers, owned(z.records, name, q.Type)...)
	if len(m.Answers) == 0 {
		exists := false
		for _, r := range z.records {
			exists = exists || strings.EqualFold(r.Header.Name.String(), name)
		}
		if !exists {
			m.RCode = dnsmessage.RCodeNameError
		}
		if z.soa != nil {
			m.Authorities = []dnsmessage.Resource{*z.soa}
		}
	}
	for _, r := range m.Answers {
		if srv, ok := r.Body.(*dnsmessage.SRVResource); ok && z.additional[srv.Target.String()] {
			m.Additionals = append(m.Additionals, owned(z.records, srv.Target.String(), dnsmessage.TypeA)...)
			m.Additionals = append(m.Additionals, owned(z.records, srv.Target.String(), dnsmessage.TypeAAAA)...)
		}
	}
	if udp && z.truncate {
		m.Truncated = true
		m.Answers, m.Authorities, m.Additionals = nil, nil, nil
	}
	return m
}

// rr is a record of name (made absolute) with ttl.
func rr(name string, ttl uint32, body dnsmessage.ResourceBody) dnsmessage.Resource {
	var t dnsmessage.Type
	switch body.(type) {
	case *dnsmessage.AResource:
		t = dnsmessage.TypeA
	case *dnsmessage.AAAAResource:
		t = dnsmessage.TypeAAAA
	case *dnsmessage.CNAMEResource:
		t = dnsmessage.TypeCNAME
	case *dnsmessage.SRVResource:
		t = dnsmessage.TypeSRV
	case *dnsmessage.SOAResource:
		t = dnsmessage.TypeSOA
	default:
		panic(fmt.Sprintf("rr: %T", body))
	}
	return dnsmessage.Resource{
		Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(absolute(name)), Type: t, Class: dnsmessage.ClassINET, TTL: ttl},
		Body:   body,
	}
}

// a is an A record, or an AAAA one for an IPv6 address.
func a(name string, ttl uint32, ip string) dnsmessage.Resource {
	addr := netip.MustParseAddr(ip)
	if addr.Is4() {
		return rr(name, ttl, &dnsmessage.AResource{A: addr.As4()})
	}
	return rr(name, ttl, &dnsmessage.AAAAResource{AAAA: addr.As16()})
}

func cname(name string, ttl uint32, target string) dnsmessage.Resource {
	return rr(name, ttl, &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(absolute(target))})
}

func srvRR(name string, ttl uint32, priority, weight, port uint16, target string) dnsmessage.Resource {
	return rr(name, ttl, &dnsmessage.SRVResource{Priority: priority, Weight: weight, Port: port, Target: dnsmessage.MustNewName(absolute(target))})
}

func soaRR(name string, ttl, minTTL uint32) *dnsmessage.Resource {
	r := rr(name, ttl, &dnsmessage.SOAResource{
		NS: dnsmessage.MustNewName("ns.test."), MBox: dnsmessage.MustNewName("admin.test."),
		Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, MinTTL: minTTL,
	})
	return &r
}

// deadUDP is an address nothing listens on: a UDP question to it is refused at once.
func deadUDP(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}
