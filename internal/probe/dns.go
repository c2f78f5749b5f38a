package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"

	"github.com/serversage/sage/internal/config"
)

// DNSModule is blackbox_exporter's dns module: the target is the server, the module the query.
type DNSModule struct {
	IPProtocol         `yaml:",inline"`
	SourceIPAddress    string         `yaml:"source_ip_address"`
	TransportProtocol  string         `yaml:"transport_protocol"` // udp (default) or tcp
	DNSOverTLS         bool           `yaml:"dns_over_tls"`
	TLSConfig          TLSConfig      `yaml:"tls_config"`
	QueryName          string         `yaml:"query_name"`
	QueryType          string         `yaml:"query_type"`  // default ANY, as blackbox
	QueryClass         string         `yaml:"query_class"` // default IN
	RecursionDesired   *bool          `yaml:"recursion_desired"`
	ValidRcodes        []string       `yaml:"valid_rcodes"` // default NOERROR
	ValidateAnswer     DNSRRValidator `yaml:"validate_answer_rrs"`
	ValidateAuthority  DNSRRValidator `yaml:"validate_authority_rrs"`
	ValidateAdditional DNSRRValidator `yaml:"validate_additional_rrs"`
}

// DNSRRValidator is blackbox's checks on one section of the answer.
type DNSRRValidator struct {
	FailIfMatchesRegexp     []string `yaml:"fail_if_matches_regexp"`
	FailIfAllMatchRegexp    []string `yaml:"fail_if_all_match_regexp"`
	FailIfNotMatchesRegexp  []string `yaml:"fail_if_not_matches_regexp"`
	FailIfNoneMatchesRegexp []string `yaml:"fail_if_none_matches_regexp"`
}

func (m *DNSModule) validate(path string) []config.FieldError {
	errs := m.IPProtocol.validate(path)
	// query_name is required by Module.Validate, which knows whether the module is a dns one.
	if _, err := sourceIP(m.SourceIPAddress); err != nil {
		errs = append(errs, config.Errorf(path+".source_ip_address", "%v", err))
	}
	switch m.TransportProtocol {
	case "", "udp", "tcp":
	default:
		errs = append(errs, config.Errorf(path+".transport_protocol", "%q: want udp or tcp", m.TransportProtocol))
	}
	if m.DNSOverTLS && m.TransportProtocol == "udp" {
		errs = append(errs, config.Errorf(path+".transport_protocol", "dns_over_tls needs tcp"))
	}
	if _, err := dnsQueryType(m.QueryType); err != nil {
		errs = append(errs, config.Errorf(path+".query_type", "%v", err))
	}
	if _, err := dnsQueryClass(m.QueryClass); err != nil {
		errs = append(errs, config.Errorf(path+".query_class", "%v", err))
	}
	for i, rc := range m.ValidRcodes {
		if _, ok := dns.StringToRcode[strings.ToUpper(rc)]; !ok {
			errs = append(errs, config.Errorf(fmt.Sprintf("%s.valid_rcodes[%d]", path, i), "%q is not an rcode (NOERROR, NXDOMAIN, SERVFAIL, ...)", rc))
		}
	}
	errs = append(errs, m.ValidateAnswer.validate(path+".validate_answer_rrs")...)
	errs = append(errs, m.ValidateAuthority.validate(path+".validate_authority_rrs")...)
	errs = append(errs, m.ValidateAdditional.validate(path+".validate_additional_rrs")...)
	errs = append(errs, validateTLSConfig(path+".tls_config", m.TLSConfig)...)
	return errs
}

func (v *DNSRRValidator) validate(path string) []config.FieldError {
	errs := validateRegexps(path+".fail_if_matches_regexp", v.FailIfMatchesRegexp)
	errs = append(errs, validateRegexps(path+".fail_if_all_match_regexp", v.FailIfAllMatchRegexp)...)
	errs = append(errs, validateRegexps(path+".fail_if_not_matches_regexp", v.FailIfNotMatchesRegexp)...)
	errs = append(errs, validateRegexps(path+".fail_if_none_matches_regexp", v.FailIfNoneMatchesRegexp)...)
	return errs
}

func dnsQueryType(s string) (uint16, error) {
	if s == "" {
		return dns.TypeANY, nil
	}
	t, ok := dns.StringToType[strings.ToUpper(s)]
	if !ok {
		return 0, fmt.Errorf("%q is not a DNS record type (A, AAAA, MX, SOA, ...)", s)
	}
	return t, nil
}

func dnsQueryClass(s string) (uint16, error) {
	if s == "" {
		return dns.ClassINET, nil
	}
	c, ok := dns.StringToClass[strings.ToUpper(s)]
	if !ok {
		return 0, fmt.Errorf("%q is not a DNS class (IN, CH, ...)", s)
	}
	return c, nil
}

func init() { register("dns", probeDNS) }

const dnsDurationHelp = "Duration of DNS request by phase"

func probeDNS(ctx context.Context, target string, m *Module, r *Result, logger *slog.Logger) bool {
	d := &m.DNS
	for _, p := range [...]string{"resolve", "connect", "request"} {
		r.Set("probe_dns_duration_seconds", dnsDurationHelp, 0, "phase", p)
	}
	for _, s := range [...][2]string{
		{"probe_dns_answer_rrs", "Returns number of entries in the answer resource record list"},
		{"probe_dns_authority_rrs", "Returns number of entries in the authority resource record list"},
		{"probe_dns_additional_rrs", "Returns number of entries in the additional resource record list"},
		{"probe_dns_query_succeeded", "Displays whether or not the query was executed successfully"},
	} {
		r.Set(s[0], s[1], 0)
	}

	qt, err := dnsQueryType(d.QueryType)
	if err != nil {
		r.Fail(ReasonConfig, err)
		return false
	}
	qc, err := dnsQueryClass(d.QueryClass)
	if err != nil {
		r.Fail(ReasonConfig, err)
		return false
	}
	if d.QueryName == "" {
		r.Fail(ReasonConfig, errors.New("dns.query_name is not set"))
		return false
	}
	qname, err := idna.ToASCII(d.QueryName)
	if err != nil {
		r.Fail(ReasonConfig, fmt.Errorf("query_name: %w", err))
		return false
	}
	if _, ok := dns.IsDomainName(qname); !ok {
		r.Fail(ReasonConfig, fmt.Errorf("query_name %q is not a domain name", d.QueryName))
		return false
	}
	transport := d.TransportProtocol
	if transport == "" {
		transport = "udp"
		if d.DNSOverTLS {
			transport = "tcp"
		}
	}
	if transport != "udp" && transport != "tcp" || d.DNSOverTLS && transport != "tcp" {
		r.Fail(ReasonConfig, fmt.Errorf("transport_protocol %q: want udp or tcp (tcp for dns_over_tls)", transport))
		return false
	}
	defaultPort := "53"
	if d.DNSOverTLS {
		defaultPort = "853"
	}
	host, port, err := splitTarget(target, defaultPort)
	if err != nil {
		r.Fail(ReasonConfig, err)
		return false
	}
	src, err := sourceIP(d.SourceIPAddress)
	if err != nil {
		r.Fail(ReasonConfig, err)
		return false
	}

	ip, err := resolve(ctx, host, d.IPProtocol, r, "probe_dns_duration_seconds")
	if err != nil {
		logger.Debug("resolving DNS server", "host", host, "err", err)
		return false
	}
	client := &dns.Client{Net: ipNetwork(transport, ip), Dialer: &net.Dialer{}}
	if deadline, ok := ctx.Deadline(); ok {
		// Otherwise miekg/dns's own 2 s read timeout would cut a probe with a longer one.
		client.Timeout = time.Until(deadline)
	}
	if src != nil {
		if transport == "tcp" {
			client.Dialer.LocalAddr = &net.TCPAddr{IP: src}
		} else {
			client.Dialer.LocalAddr = &net.UDPAddr{IP: src}
		}
	}
	if d.DNSOverTLS {
		client.Net += "-tls"
		if client.TLSConfig, err = d.TLSConfig.Build(host); err != nil {
			r.Fail(ReasonConfig, err)
			return false
		}
	}

	msg := new(dns.Msg)
	msg.Id = dns.Id()
	msg.RecursionDesired = d.RecursionDesired == nil || *d.RecursionDesired
	msg.Question = []dns.Question{{Name: dns.Fqdn(qname), Qtype: qt, Qclass: qc}}

	addr := net.JoinHostPort(ip.String(), port)
	start := time.Now()
	conn, err := client.DialContext(ctx, addr)
	r.Set("probe_dns_duration_seconds", dnsDurationHelp, time.Since(start).Seconds(), "phase", "connect")
	if err != nil {
		reason := netReason(ctx, err)
		r.Fail(reason, fmt.Errorf("connecting to %s: %w", addr, err))
		return false
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	start = time.Now()
	resp, _, err := client.ExchangeWithConnContext(ctx, msg, conn)
	r.Set("probe_dns_duration_seconds", dnsDurationHelp, time.Since(start).Seconds(), "phase", "request")
	if err != nil {
		reason := netReason(ctx, err)
		r.Fail(reason, fmt.Errorf("querying %s: %w", addr, err))
		return false
	}

	r.Set("probe_dns_answer_rrs", "Returns number of entries in the answer resource record list", float64(len(resp.Answer)))
	r.Set("probe_dns_authority_rrs", "Returns number of entries in the authority resource record list", float64(len(resp.Ns)))
	r.Set("probe_dns_additional_rrs", "Returns number of entries in the additional resource record list", float64(len(resp.Extra)))
	r.Set("probe_dns_query_succeeded", "Displays whether or not the query was executed successfully", 1)
	if qt == dns.TypeSOA {
		for _, rr := range resp.Answer {
			if soa, ok := rr.(*dns.SOA); ok {
				r.Set("probe_dns_serial", "Returns the serial number of the zone", float64(soa.Serial))
			}
		}
	}

	if !validRcode(resp.Rcode, d.ValidRcodes) {
		r.Fail(ReasonStatus, fmt.Errorf("rcode %s is not valid", dns.RcodeToString[resp.Rcode]))
		return false
	}
	for _, sec := range [...]struct {
		name string
		rrs  []dns.RR
		v    *DNSRRValidator
	}{{"answer", resp.Answer, &d.ValidateAnswer}, {"authority", resp.Ns, &d.ValidateAuthority}, {"additional", resp.Extra, &d.ValidateAdditional}} {
		if err := sec.v.check(sec.rrs); err != nil {
			r.Fail(ReasonContent, fmt.Errorf("%s section: %w", sec.name, err))
			return false
		}
	}
	return true
}

func validRcode(rcode int, valid []string) bool {
	if len(valid) == 0 {
		return rcode == dns.RcodeSuccess
	}
	for _, s := range valid {
		if rc, ok := dns.StringToRcode[strings.ToUpper(s)]; ok && rc == rcode {
			return true
		}
	}
	return false
}

// check applies blackbox's rules to one section's records, each matched as its text form
// (dns.RR.String, "example.org.\t300\tIN\tA\t192.0.2.1"), exactly as blackbox's code does
// (its documentation words two of them differently): fail_if_matches fails when any record
// matches any expression; fail_if_not_matches when any record misses any; fail_if_all_match
// unless every record matches every expression; fail_if_none_matches when no record matches
// any. fail_if_not_matches and fail_if_none_matches also fail on an empty section.
func (v *DNSRRValidator) check(rrs []dns.RR) error {
	if len(rrs) == 0 && len(v.FailIfNotMatchesRegexp) > 0 {
		return errors.New("fail_if_not_matches_regexp is set but there are no records")
	}
	if len(rrs) == 0 && len(v.FailIfNoneMatchesRegexp) > 0 {
		return errors.New("fail_if_none_matches_regexp is set but there are no records")
	}
	allMatch, anyMatch := true, false
	for _, rr := range rrs {
		s := rr.String()
		for _, expr := range v.FailIfMatchesRegexp {
			re, err := compileRegexp(expr)
			if err != nil {
				return err
			}
			if re.MatchString(s) {
				return fmt.Errorf("record %q matched %q", s, expr)
			}
		}
		for _, expr := range v.FailIfAllMatchRegexp {
			re, err := compileRegexp(expr)
			if err != nil {
				return err
			}
			if !re.MatchString(s) {
				allMatch = false
			}
		}
		for _, expr := range v.FailIfNotMatchesRegexp {
			re, err := compileRegexp(expr)
			if err != nil {
				return err
			}
			if !re.MatchString(s) {
				return fmt.Errorf("record %q did not match %q", s, expr)
			}
		}
		for _, expr := range v.FailIfNoneMatchesRegexp {
			re, err := compileRegexp(expr)
			if err != nil {
				return err
			}
			if re.MatchString(s) {
				anyMatch = true
			}
		}
	}
	if len(v.FailIfAllMatchRegexp) > 0 && !allMatch {
		return fmt.Errorf("not every record matched %q", v.FailIfAllMatchRegexp)
	}
	if len(v.FailIfNoneMatchesRegexp) > 0 && !anyMatch {
		return fmt.Errorf("no record matched %q", v.FailIfNoneMatchesRegexp)
	}
	return nil
}
