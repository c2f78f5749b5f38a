package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/grafana/regexp"

	"github.com/serversage/sage/internal/config"
)

// What the http, tcp and dns probers share: compiled regular expressions, TLS metrics and the
// mapping of network errors to a Reason.

// regexps caches compiled expressions by their source. Modules come from the configuration,
// so the set is bounded, and a probe run thousands of times a minute should not recompile.
var regexps sync.Map // string -> *regexp.Regexp

// compileRegexp returns the compiled expression, from the cache when it has been seen.
func compileRegexp(expr string) (*regexp.Regexp, error) {
	if re, ok := regexps.Load(expr); ok {
		return re.(*regexp.Regexp), nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, err
	}
	regexps.Store(expr, re)
	return re, nil
}

// validateRegexps reports each expression of list that does not compile, as path[i].
func validateRegexps(path string, list []string) []config.FieldError {
	var errs []config.FieldError
	for i, expr := range list {
		if _, err := regexp.Compile(expr); err != nil {
			errs = append(errs, config.Errorf(fmt.Sprintf("%s[%d]", path, i), "not a regular expression: %v", err))
		}
	}
	return errs
}

// validateTLSConfig checks the parts of a tls_config that can be checked without the target:
// the version name, and the files (a missing CA file should show at --check-config, not at
// the first probe).
func validateTLSConfig(path string, c TLSConfig) []config.FieldError {
	if c == (TLSConfig{}) {
		return nil
	}
	if _, err := c.Build(""); err != nil {
		return []config.FieldError{config.Errorf(path, "%v", err)}
	}
	return nil
}

// recordTLS records what blackbox_exporter records of a TLS connection: the earliest expiry
// of the certificates the server sent, the last expiry of the verified chains, the version.
func recordTLS(r *Result, state *tls.ConnectionState) {
	if state == nil {
		return
	}
	if t, ok := earliestCertExpiry(state); ok {
		r.Set("probe_ssl_earliest_cert_expiry", "Returns earliest SSL cert expiry in unixtime", float64(t.Unix()))
	}
	if t, ok := lastChainExpiry(state); ok {
		r.Set("probe_ssl_last_chain_expiry_timestamp_seconds", "Returns last SSL chain expiry in timestamp seconds", float64(t.Unix()))
	}
	r.Set("probe_tls_version_info", "Returns the TLS version used or NaN when unknown", 1, "version", tlsVersionName(state.Version))
}

func earliestCertExpiry(state *tls.ConnectionState) (time.Time, bool) {
	var earliest time.Time
	for _, c := range state.PeerCertificates {
		if earliest.IsZero() || c.NotAfter.Before(earliest) {
			earliest = c.NotAfter
		}
	}
	return earliest, !earliest.IsZero()
}

// lastChainExpiry is, over the verified chains, the latest of each chain's earliest expiry:
// how long the connection can still be verified through some chain. Without verification
// (insecure_skip_verify) there is no chain and no value, as in blackbox_exporter.
func lastChainExpiry(state *tls.ConnectionState) (time.Time, bool) {
	var last time.Time
	for _, chain := range state.VerifiedChains {
		var earliest time.Time
		for _, c := range chain {
			if earliest.IsZero() || c.NotAfter.Before(earliest) {
				earliest = c.NotAfter
			}
		}
		if earliest.After(last) {
			last = earliest
		}
	}
	return last, !last.IsZero()
}

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLS 1.0"
	case tls.VersionTLS11:
		return "TLS 1.1"
	case tls.VersionTLS12:
		return "TLS 1.2"
	case tls.VersionTLS13:
		return "TLS 1.3"
	}
	return "unknown"
}

// netReason maps an error from dialling or talking to a peer to a Reason. ctx is the probe's:
// once it has expired, whatever broke is a timeout.
func netReason(ctx context.Context, err error) Reason {
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return ReasonTimeout
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsTimeout {
			return ReasonTimeout
		}
		return ReasonResolve
	}
	if isTLSFailure(err) {
		return ReasonTLS
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ReasonTimeout
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return ReasonConnect
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return ReasonConnect
	}
	return ReasonProtocol
}

func isTLSFailure(err error) bool {
	var (
		verr   *tls.CertificateVerificationError
		rerr   tls.RecordHeaderError
		aerr   tls.AlertError
		uaerr  x509.UnknownAuthorityError
		herr   x509.HostnameError
		cierr  x509.CertificateInvalidError
		echerr *tls.ECHRejectionError
	)
	return errors.As(err, &verr) || errors.As(err, &rerr) || errors.As(err, &aerr) || errors.As(err, &uaerr) ||
		errors.As(err, &herr) || errors.As(err, &cierr) || errors.As(err, &echerr)
}

// ipNetwork returns "tcp4"/"tcp6" (or udp) for the address family of ip.
func ipNetwork(base string, ip net.IP) string {
	if ip.To4() != nil {
		return base + "4"
	}
	return base + "6"
}

// sourceIP parses a module's source_ip_address; empty is no source address.
func sourceIP(s string) (net.IP, error) {
	if s == "" {
		return nil, nil
	}
	ip := net.ParseIP(s)
	if ip == nil {
		return nil, fmt.Errorf("source_ip_address %q is not an IP address", s)
	}
	return ip, nil
}
