package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/serversage/sage/internal/config"
)

// TCPModule is blackbox_exporter's tcp module: connect, optionally TLS, optionally a scripted
// exchange.
type TCPModule struct {
	IPProtocol      `yaml:",inline"`
	SourceIPAddress string          `yaml:"source_ip_address"`
	QueryResponse   []QueryResponse `yaml:"query_response"`
	TLS             bool            `yaml:"tls"`
	TLSConfig       TLSConfig       `yaml:"tls_config"`
}

// QueryResponse is one step of a TCP exchange: wait for a line matching Expect, send Send,
// or upgrade to TLS.
type QueryResponse struct {
	Expect   string `yaml:"expect"`
	Send     string `yaml:"send"`
	StartTLS bool   `yaml:"starttls"`
}

func (m *TCPModule) validate(path string) []config.FieldError {
	errs := m.IPProtocol.validate(path)
	if _, err := sourceIP(m.SourceIPAddress); err != nil {
		errs = append(errs, config.Errorf(path+".source_ip_address", "%v", err))
	}
	for i, qr := range m.QueryResponse {
		p := fmt.Sprintf("%s.query_response[%d]", path, i)
		if qr.Expect != "" {
			if _, err := compileRegexp(qr.Expect); err != nil {
				errs = append(errs, config.Errorf(p+".expect", "not a regular expression: %v", err))
			}
		}
		if qr.StartTLS && m.TLS {
			errs = append(errs, config.Errorf(p+".starttls", "the connection is already TLS (tls: true)"))
		}
	}
	errs = append(errs, validateTLSConfig(path+".tls_config", m.TLSConfig)...)
	return errs
}

func init() { register("tcp", probeTCP) }

const tcpDurationHelp = "Duration of the TCP probe by phase (resolve, connect, tls, query_response)"

// splitTarget reads a host:port target. defaultPort is used when the target is a bare host
// (DNS servers); without one a port is required, as blackbox's tcp prober requires it.
func splitTarget(target, defaultPort string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(target)
	if err != nil {
		if defaultPort == "" {
			return "", "", fmt.Errorf("target %q is not host:port", target)
		}
		host, port = strings.TrimSuffix(strings.TrimPrefix(target, "["), "]"), defaultPort
	}
	if host == "" {
		return "", "", fmt.Errorf("target %q has no host", target)
	}
	if strings.ContainsAny(host, " /\\\t\r\n[]") {
		return "", "", fmt.Errorf("target host %q is not a host name or address", host)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return "", "", fmt.Errorf("target port %q is not a port number", port)
	}
	return host, port, nil
}

func probeTCP(ctx context.Context, target string, m *Module, r *Result, logger *slog.Logger) bool {
	t := &m.TCP
	r.Set("probe_failed_due_to_regex", "Indicates if probe failed due to regex", 0)
	host, port, err := splitTarget(target, "")
	if err != nil {
		r.Fail(ReasonConfig, err)
		return false
	}
	src, err := sourceIP(t.SourceIPAddress)
	if err != nil {
		r.Fail(ReasonConfig, err)
		return false
	}
	var tlsCfg *tls.Config
	if t.TLS || hasStartTLS(t.QueryResponse) {
		if tlsCfg, err = t.TLSConfig.Build(host); err != nil {
			r.Fail(ReasonConfig, err)
			return false
		}
	}
	ip, err := resolve(ctx, host, t.IPProtocol, r, "probe_tcp_duration_seconds")
	if err != nil {
		logger.Debug("resolving target", "host", host, "err", err)
		return false
	}

	dialer := net.Dialer{}
	if src != nil {
		dialer.LocalAddr = &net.TCPAddr{IP: src}
	}
	start := time.Now()
	conn, err := dialer.DialContext(ctx, ipNetwork("tcp", ip), net.JoinHostPort(ip.String(), port))
	r.Set("probe_tcp_duration_seconds", tcpDurationHelp, time.Since(start).Seconds(), "phase", "connect")
	if err != nil {
		r.Fail(netReason(ctx, err), err)
		return false
	}
	// The deadline bounds every read and write; closing on cancellation covers a context
	// cancelled before its deadline.
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	if t.TLS {
		tc, err := tcpHandshake(ctx, conn, tlsCfg, r)
		if err != nil {
			return false
		}
		conn = tc
	}
	if len(t.QueryResponse) == 0 {
		return true
	}
	start = time.Now()
	q := queryRunner{
		steps: t.QueryResponse,
		startTLS: func(c net.Conn) (net.Conn, error) {
			return tcpHandshake(ctx, c, tlsCfg, r)
		},
		logger: logger,
	}
	err = q.run(conn)
	r.Set("probe_tcp_duration_seconds", tcpDurationHelp, time.Since(start).Seconds(), "phase", "query_response")
	if err != nil {
		var qe *queryError
		switch {
		case errors.As(err, &qe) && qe.reason == ReasonContent:
			r.Set("probe_failed_due_to_regex", "Indicates if probe failed due to regex", 1)
			r.Fail(ReasonContent, err)
		case errors.As(err, &qe):
			r.Fail(qe.reason, err)
		default:
			r.Fail(netReason(ctx, err), err)
		}
		return false
	}
	return true
}

func hasStartTLS(steps []QueryResponse) bool {
	for _, s := range steps {
		if s.StartTLS {
			return true
		}
	}
	return false
}

// tcpHandshake runs the TLS client handshake on conn, timing it as the tls phase and
// recording the certificate metrics.
func tcpHandshake(ctx context.Context, conn net.Conn, cfg *tls.Config, r *Result) (*tls.Conn, error) {
	start := time.Now()
	tc := tls.Client(conn, cfg)
	err := tc.HandshakeContext(ctx)
	r.Set("probe_tcp_duration_seconds", tcpDurationHelp, time.Since(start).Seconds(), "phase", "tls")
	if err != nil {
		reason := ReasonTLS
		if ctx.Err() != nil {
			reason = ReasonTimeout
		}
		r.Fail(reason, fmt.Errorf("TLS handshake: %w", err))
		return nil, err
	}
	state := tc.ConnectionState()
	recordTLS(r, &state)
	return tc, nil
}
