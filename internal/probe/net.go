package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"strings"
	"time"
)

// Value reads the secret: its file's contents without the trailing newline, or its environment
// variable, or the inline value. An empty secret is the empty string.
func (s Secret) Value() (string, error) {
	switch {
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("reading secret file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok {
			return "", fmt.Errorf("secret environment variable %s is not set", s.Env)
		}
		return v, nil
	}
	return s.Inline, nil
}

// Build turns the configuration into a crypto/tls configuration. serverName is used when the
// configuration names none (the target's host).
func (c TLSConfig) Build(serverName string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: serverName, InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // the operator's explicit choice
	if c.ServerName != "" {
		cfg.ServerName = c.ServerName
	}
	switch strings.ToUpper(c.MinVersion) {
	case "":
	case "TLS10":
		cfg.MinVersion = tls.VersionTLS10
	case "TLS11":
		cfg.MinVersion = tls.VersionTLS11
	case "TLS12":
		cfg.MinVersion = tls.VersionTLS12
	case "TLS13":
		cfg.MinVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("tls_config.min_version %q: want TLS10, TLS11, TLS12 or TLS13", c.MinVersion)
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls_config.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls_config.ca_file %s: no PEM certificate in it", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("tls_config: cert_file and key_file go together")
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls_config client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// resolve finds host's address the way blackbox_exporter does: the preferred family first
// (ip6 when unset, as blackbox), the other one when fallback allows. It records
// probe_ip_protocol and probe_ip_addr_hash, and the lookup's time under durationMetric's
// phase "resolve" when durationMetric is not empty (probe_http_duration_seconds and the like),
// else as probe_dns_lookup_time_seconds. A literal address is returned without a lookup.
func resolve(ctx context.Context, host string, p IPProtocol, r *Result, durationMetric string) (net.IP, error) {
	start := time.Now()
	defer func() {
		d := time.Since(start).Seconds()
		if durationMetric != "" {
			r.Set(durationMetric, "Duration of the probe by phase, summed over all redirects", d, "phase", "resolve")
		}
		r.Set("probe_dns_lookup_time_seconds", "Returns the time taken for probe dns lookup in seconds", d)
	}()
	want := "ip6"
	if strings.HasSuffix(p.Preferred, "4") {
		want = "ip4"
	}
	fallback := p.Fallback == nil || *p.Fallback
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil {
		recordIP(r, ip)
		return ip, nil
	}
	ips, err := net.DefaultResolver.LookupIP(ctx, want, host)
	if err != nil || len(ips) == 0 {
		if !fallback {
			r.Fail(ReasonResolve, err)
			return nil, fmt.Errorf("resolving %s (%s): %w", host, want, err)
		}
		other := "ip4"
		if want == "ip4" {
			other = "ip6"
		}
		ips, err = net.DefaultResolver.LookupIP(ctx, other, host)
		if err != nil || len(ips) == 0 {
			if err == nil {
				err = errors.New("no address")
			}
			reason := ReasonResolve
			if ctx.Err() != nil {
				reason = ReasonTimeout
			}
			r.Fail(reason, err)
			return nil, fmt.Errorf("resolving %s: %w", host, err)
		}
	}
	recordIP(r, ips[0])
	return ips[0], nil
}

func recordIP(r *Result, ip net.IP) {
	v := 6.0
	if ip.To4() != nil {
		v = 4
	}
	r.Set("probe_ip_protocol", "Specifies whether probe ip protocol is IP4 or IP6", v)
	h := fnv.New32a()
	_, _ = h.Write([]byte(ip.String()))
	r.Set("probe_ip_addr_hash", "Specifies the hash of IP address. It's useful to detect if the IP address changes.", float64(h.Sum32()))
}
