package probe

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startDNS serves a small zone on loopback over udp and tcp (same port): example.test has two
// A records, an SOA with serial 2024010101 and an NS with glue; fail.test answers SERVFAIL;
// anything else NXDOMAIN with the SOA in the authority section.
func startDNS(t testing.TB) string {
	t.Helper()
	soa := mustRR(t, "example.test. 300 IN SOA ns1.example.test. admin.example.test. 2024010101 7200 3600 1209600 300")
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		qn, qt := q.Question[0].Name, q.Question[0].Qtype
		switch {
		case qn == "fail.test.":
			m.Rcode = dns.RcodeServerFailure
		case qn == "example.test." && (qt == dns.TypeA || qt == dns.TypeANY):
			m.Answer = append(m.Answer, mustRR(t, "example.test. 300 IN A 192.0.2.1"), mustRR(t, "example.test. 300 IN A 192.0.2.2"))
			m.Ns = append(m.Ns, mustRR(t, "example.test. 300 IN NS ns1.example.test."))
			m.Extra = append(m.Extra, mustRR(t, "ns1.example.test. 300 IN A 192.0.2.53"))
		case qn == "example.test." && qt == dns.TypeSOA:
			m.Answer = append(m.Answer, soa)
		case qn == "example.test.":
		default:
			m.Rcode = dns.RcodeNameError
			m.Ns = append(m.Ns, soa)
		}
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return pc.LocalAddr().String()
}

func mustRR(t testing.TB, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

func TestDNSProbe(t *testing.T) {
	addr := startDNS(t)
	type want struct {
		ok                          bool
		reason                      Reason
		answer, authority, addition float64
	}
	tests := []struct {
		name   string
		target string
		dns    DNSModule
		want   want
	}{
		{"A over udp", addr, DNSModule{QueryName: "example.test", QueryType: "A"}, want{ok: true, answer: 2, authority: 1, addition: 1}},
		{"A over tcp", addr, DNSModule{QueryName: "example.test", QueryType: "A", TransportProtocol: "tcp"}, want{ok: true, answer: 2, authority: 1, addition: 1}},
		{"default type ANY", addr, DNSModule{QueryName: "example.test"}, want{ok: true, answer: 2, authority: 1, addition: 1}},
		{"NXDOMAIN invalid", addr, DNSModule{QueryName: "nope.test", QueryType: "A"}, want{reason: ReasonStatus, authority: 1}},
		{"NXDOMAIN allowed", addr, DNSModule{QueryName: "nope.test", QueryType: "A", ValidRcodes: []string{"NXDOMAIN"}}, want{ok: true, authority: 1}},
		{"SERVFAIL", addr, DNSModule{QueryName: "fail.test", QueryType: "A"}, want{reason: ReasonStatus}},
		{"answer must match", addr, DNSModule{QueryName: "example.test", QueryType: "A",
			ValidateAnswer: DNSRRValidator{FailIfNotMatchesRegexp: []string{`\tA\t192\.0\.2\.\d+$`}}}, want{ok: true, answer: 2, authority: 1, addition: 1}},
		{"answer matches forbidden", addr, DNSModule{QueryName: "example.test", QueryType: "A",
			ValidateAnswer: DNSRRValidator{FailIfMatchesRegexp: []string{`192\.0\.2\.2$`}}}, want{reason: ReasonContent, answer: 2, authority: 1, addition: 1}},
		{"none matches", addr, DNSModule{QueryName: "example.test", QueryType: "A",
			ValidateAnswer: DNSRRValidator{FailIfNoneMatchesRegexp: []string{`198\.51\.100\.`}}}, want{reason: ReasonContent, answer: 2, authority: 1, addition: 1}},
		{"one matches", addr, DNSModule{QueryName: "example.test", QueryType: "A",
			ValidateAnswer: DNSRRValidator{FailIfNoneMatchesRegexp: []string{`192\.0\.2\.2$`}}}, want{ok: true, answer: 2, authority: 1, addition: 1}},
		{"not all match", addr, DNSModule{QueryName: "example.test", QueryType: "A",
			ValidateAnswer: DNSRRValidator{FailIfAllMatchRegexp: []string{`192\.0\.2\.1$`}}}, want{reason: ReasonContent, answer: 2, authority: 1, addition: 1}},
		{"authority", addr, DNSModule{QueryName: "example.test", QueryType: "A",
			ValidateAuthority: DNSRRValidator{FailIfNotMatchesRegexp: []string{`NS\tns1\.example\.test\.$`}}}, want{ok: true, answer: 2, authority: 1, addition: 1}},
		{"additional", addr, DNSModule{QueryName: "example.test", QueryType: "A",
			ValidateAdditional: DNSRRValidator{FailIfMatchesRegexp: []string{`192\.0\.2\.53`}}}, want{reason: ReasonContent, answer: 2, authority: 1, addition: 1}},
		{"empty answer, match required", addr, DNSModule{QueryName: "example.test", QueryType: "MX",
			ValidateAnswer: DNSRRValidator{FailIfNotMatchesRegexp: []string{`.`}}}, want{reason: ReasonContent}},
		{"refused tcp", closedAddr(t), DNSModule{QueryName: "example.test", TransportProtocol: "tcp"}, want{reason: ReasonConnect}},
		{"refused udp", closedAddr(t), DNSModule{QueryName: "example.test"}, want{reason: ReasonConnect}},
		{"unresolvable server", "no-such-host.invalid", DNSModule{QueryName: "example.test"}, want{reason: ReasonResolve}},
		{"bad target port", "127.0.0.1:x", DNSModule{QueryName: "example.test"}, want{reason: ReasonConfig}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runModule(t, tc.target, Module{Prober: "dns", DNS: tc.dns}, 5*time.Second)
			if r.Success != tc.want.ok || r.Reason != tc.want.reason {
				t.Fatalf("success %v reason %q (%s), want %v %q", r.Success, r.Reason, r.Detail, tc.want.ok, tc.want.reason)
			}
			for name, w := range map[string]float64{"probe_dns_answer_rrs": tc.want.answer, "probe_dns_authority_rrs": tc.want.authority, "probe_dns_additional_rrs": tc.want.addition} {
				if got := mustSample(t, r, name); got != w {
					t.Errorf("%s = %v, want %v", name, got, w)
				}
			}
			for _, p := range []string{"resolve", "connect", "request"} {
				mustSample(t, r, "probe_dns_duration_seconds", "phase", p)
			}
		})
	}
}

func TestDNSSerialAndTimeout(t *testing.T) {
	addr := startDNS(t)
	r := runModule(t, addr, Module{Prober: "dns", DNS: DNSModule{QueryName: "example.test", QueryType: "SOA"}}, 5*time.Second)
	if !r.Success || mustSample(t, r, "probe_dns_serial") != 2024010101 || mustSample(t, r, "probe_dns_query_succeeded") != 1 {
		t.Fatalf("SOA probe: success %v %s %s, serial %v", r.Success, r.Reason, r.Detail, r.Samples)
	}
	if v := mustSample(t, r, "probe_dns_duration_seconds", "phase", "request"); v <= 0 {
		t.Errorf("request phase %v", v)
	}

	// A UDP socket nobody reads: the query goes unanswered until the deadline.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	start := time.Now()
	r = runModule(t, pc.LocalAddr().String(), Module{Prober: "dns", DNS: DNSModule{QueryName: "example.test"}}, 300*time.Millisecond)
	if took := time.Since(start); took > 800*time.Millisecond {
		t.Errorf("took %v with a 300ms deadline", took)
	}
	if r.Success || r.Reason != ReasonTimeout || mustSample(t, r, "probe_dns_query_succeeded") != 0 {
		t.Fatalf("silent server: success %v reason %q", r.Success, r.Reason)
	}
}

func TestDNSValidate(t *testing.T) {
	tests := []struct {
		name  string
		dns   DNSModule
		field string
	}{
		{"ok", DNSModule{QueryName: "example.org", QueryType: "aaaa", ValidRcodes: []string{"NOERROR", "NXDOMAIN"}}, ""},
		{"empty section", DNSModule{}, "m.dns.query_name"},
		{"no name", DNSModule{QueryType: "A"}, "m.dns.query_name"},
		{"type", DNSModule{QueryName: "a", QueryType: "BOGUS"}, "m.dns.query_type"},
		{"class", DNSModule{QueryName: "a", QueryClass: "XX"}, "m.dns.query_class"},
		{"transport", DNSModule{QueryName: "a", TransportProtocol: "sctp"}, "m.dns.transport_protocol"},
		{"dot over udp", DNSModule{QueryName: "a", TransportProtocol: "udp", DNSOverTLS: true}, "m.dns.transport_protocol"},
		{"rcode", DNSModule{QueryName: "a", ValidRcodes: []string{"NOERROR", "NOPE"}}, "m.dns.valid_rcodes[1]"},
		{"regexp", DNSModule{QueryName: "a", ValidateAuthority: DNSRRValidator{FailIfNoneMatchesRegexp: []string{"("}}}, "m.dns.validate_authority_rrs.fail_if_none_matches_regexp[0]"},
		{"source", DNSModule{QueryName: "a", SourceIPAddress: "nope"}, "m.dns.source_ip_address"},
	}
	// A module of another prober carries an empty dns section, which must not need a name.
	if errs := (&Module{Prober: "http"}).Validate("m"); len(errs) > 0 {
		t.Errorf("an http module with no dns section: %v", errs)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := Module{Prober: "dns", DNS: tc.dns}
			errs := m.Validate("m")
			if tc.field == "" {
				if len(errs) > 0 {
					t.Fatalf("unexpected errors %v", errs)
				}
				return
			}
			for _, e := range errs {
				if e.Field == tc.field {
					return
				}
			}
			t.Fatalf("errors %v, want one on %s", errs, tc.field)
		})
	}
}
