package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/serversage/sage/internal/config"
)

// DBModule is a database connection probe (probers postgres, mysql, mssql, oracle, mongodb,
// redis): connect, authenticate, run a trivial query, each timed. Credentials come from a
// named auth module (probes.auth_modules), never from the target.
//
// The phases are reported as probe_db_duration_seconds{phase}: "resolve" (only when
// preferred_ip_protocol is set; otherwise the name is resolved while connecting), "connect"
// (TCP connect, plus the TLS handshake when TLS is used), "auth" (the rest of the session
// set-up: protocol handshake and login) and "query" (the query's round trip).
type DBModule struct {
	IPProtocol `yaml:",inline"`
	AuthModule string `yaml:"auth_module"`
	// Database is the database to log in to (postgres, mysql, mssql), the service name
	// (oracle), the authentication database and the one the command runs in (mongodb, default
	// admin) or the database number (redis). A path in the target (host:port/name) sets it too.
	Database string `yaml:"database"`
	// Query replaces the kind's trivial query: SQL for postgres, mysql, mssql and oracle; a
	// command line for redis (words separated by blanks, "double quoted" with \" and \\
	// escapes); a command document in extended JSON for mongodb ({"ping": 1}).
	Query     string            `yaml:"query"`
	TLS       string            `yaml:"tls"` // disable, require (no certificate check), verify (default: the driver's)
	TLSConfig TLSConfig         `yaml:"tls_config"`
	Params    map[string]string `yaml:"params"` // extra driver parameters; never credentials

	// Auth is AuthModule resolved when the configuration loads, or set by `sage probe`.
	Auth *AuthModule `yaml:"-"`
}

// AuthModule is a named set of credentials; the password comes by reference.
type AuthModule struct {
	Username string `yaml:"username"`
	Password Secret `yaml:"password"`
}

// The TLS modes of DBModule.TLS.
const (
	dbTLSDefault = ""        // the driver's default (see each kind)
	dbTLSDisable = "disable" // no TLS
	dbTLSRequire = "require" // TLS, certificate not checked (libpq's sslmode=require)
	dbTLSVerify  = "verify"  // TLS, certificate chain and name checked against tls_config
)

// dbCredentialParams are parameter names that would carry credentials: those come from the
// auth module only, so that they are never in a string that could be logged.
var dbCredentialParams = []string{"password", "passwd", "pwd", "user", "username", "user id", "uid"}

func (m *DBModule) validate(path string) []config.FieldError {
	var errs []config.FieldError
	errs = append(errs, m.IPProtocol.validate(path)...)
	switch m.TLS {
	case dbTLSDefault, dbTLSDisable, dbTLSRequire, dbTLSVerify:
	default:
		errs = append(errs, config.Errorf(path+".tls", "%q: want disable, require or verify", m.TLS))
	}
	if m.TLSConfig != (TLSConfig{}) {
		if m.TLS != dbTLSRequire && m.TLS != dbTLSVerify {
			errs = append(errs, config.Errorf(path+".tls_config", "applies only with tls: require or verify"))
		}
		if m.TLS == dbTLSVerify && m.TLSConfig.InsecureSkipVerify {
			errs = append(errs, config.Errorf(path+".tls_config.insecure_skip_verify", "contradicts tls: verify; use tls: require to skip the certificate check"))
		}
		switch strings.ToUpper(m.TLSConfig.MinVersion) {
		case "", "TLS10", "TLS11", "TLS12", "TLS13":
		default:
			errs = append(errs, config.Errorf(path+".tls_config.min_version", "%q: want TLS10, TLS11, TLS12 or TLS13", m.TLSConfig.MinVersion))
		}
		if (m.TLSConfig.CertFile == "") != (m.TLSConfig.KeyFile == "") {
			errs = append(errs, config.Errorf(path+".tls_config", "cert_file and key_file go together"))
		}
	}
	if strings.ContainsRune(m.Query, 0) {
		errs = append(errs, config.Errorf(path+".query", "contains a NUL byte"))
	}
	if len(m.Query) > dbMaxQuery {
		errs = append(errs, config.Errorf(path+".query", "longer than %d bytes", dbMaxQuery))
	}
	for k := range m.Params {
		if k == "" {
			errs = append(errs, config.Errorf(path+".params", "empty parameter name"))
			continue
		}
		for _, c := range dbCredentialParams {
			if strings.EqualFold(k, c) {
				errs = append(errs, config.Errorf(path+".params."+k, "credentials come from auth_module, not from params"))
			}
		}
	}
	return errs
}

// ValidateFor adds the checks that depend on the prober: the query's syntax for redis and
// mongodb, the database for redis. Module.Validate calls it with the module's prober.
func (m *DBModule) ValidateFor(prober, path string) []config.FieldError {
	k, ok := dbKinds[prober]
	if !ok || k.validate == nil {
		return nil
	}
	return k.validate(m, path)
}

const (
	dbMaxQuery = 64 << 10 // a probe's query is a line or two; this bounds a mistake
	dbMaxRows  = 1000     // rows of a query's answer read before the rest is dropped
)

// dbKind is one database's prober: how to run a session, and how to read its errors.
type dbKind struct {
	name        string
	defaultPort int
	defaultUser string // used when there is no auth module; "" sends none
	// run connects, logs in and runs the query, calling s.authed when the session is set up
	// and s.queryStart when the query is sent (when that is later than authed).
	run func(ctx context.Context, s *dbSession) error
	// authErr reports the server refusing the credentials; serverErr the server answering with
	// any other error; tlsErr a driver's own TLS negotiation errors (the crypto/tls ones are
	// recognised for every kind).
	authErr, serverErr, tlsErr func(error) bool
	validate                   func(m *DBModule, path string) []config.FieldError
}

var dbKinds = map[string]*dbKind{}

func registerDB(k *dbKind) {
	dbKinds[k.name] = k
	register(k.name, k.probe)
}

// dbTarget is a parsed target: host, port and an optional database from a path.
type dbTarget struct {
	host     string
	port     int
	database string
}

// parseDBTarget reads host, host:port, [v6]:port, a bare IPv6 address, any of them followed by
// /database, or scheme://host:port/database. Credentials in the target are refused: they would
// end up in logs and labels.
func parseDBTarget(target string, defaultPort int) (dbTarget, error) {
	t := dbTarget{port: defaultPort}
	rest := strings.TrimSpace(target)
	if i := strings.Index(rest, "://"); i >= 0 {
		u, err := url.Parse(rest)
		if err != nil {
			return t, fmt.Errorf("target %q: %w", target, err)
		}
		if u.User != nil {
			return t, errors.New("target: credentials do not belong in the target; use an auth module")
		}
		if u.Host == "" {
			return t, fmt.Errorf("target %q: no host", target)
		}
		rest = u.Host
		t.database = strings.TrimPrefix(u.Path, "/")
	} else {
		if strings.Contains(rest, "@") {
			return t, errors.New("target: credentials do not belong in the target; use an auth module")
		}
		// A bare IPv6 address has colons but no brackets: it is all host.
		if ip := net.ParseIP(rest); ip == nil {
			if i := strings.Index(rest, "/"); i >= 0 {
				rest, t.database = rest[:i], rest[i+1:]
			}
		}
	}
	if rest == "" {
		return t, errors.New("target: empty host")
	}
	if ip := net.ParseIP(rest); ip != nil {
		t.host = ip.String()
		return t, nil
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) && ae.Err == "missing port in address" {
			host, port = rest, ""
		} else {
			return t, fmt.Errorf("target %q: %w", target, err)
		}
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" || strings.ContainsAny(host, "[]/ \t") {
		return t, fmt.Errorf("target %q: bad host", target)
	}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return t, fmt.Errorf("target %q: bad port %q", target, port)
		}
		t.port = int(n)
	}
	t.host = host
	return t, nil
}

// dbSession is one probe's state: what to connect to, and what happened when, written by the
// dialer and the TLS hook (possibly from a driver's goroutines) and read at the end.
type dbSession struct {
	kind     *dbKind
	m        *DBModule
	logger   *slog.Logger
	host     string // as the target names it: what the driver is told, the TLS server name
	port     int
	database string
	user     string
	password string
	query    string
	deadline time.Time
	// driverAddr is host:port as the driver will ask the dialer for it; dialAddr is what the
	// dialer dials instead (the address resolved by the preferred family), or the same.
	driverAddr, dialAddr string
	// dialTLS, when set, makes the dialer do the TLS handshake (drivers that leave TLS to a
	// custom dialer, or whose own handshake the probe cannot time).
	dialTLS *tls.Config

	mu         sync.Mutex
	start      time.Time
	connected  time.Time // first TCP connection established
	tlsDone    time.Time // first TLS handshake completed
	authedAt   time.Time
	queryAt    time.Time
	doneAt     time.Time
	dialErr    error
	tlsErr     error // the dialer's own TLS handshake failed
	remote     net.IP
	tlsState   *tls.ConnectionState
	conns      []*dbConn
	version    string
	sniffFirst bool // keep the first bytes read on each connection (mysql, mssql greet with their version)
}

func (k *dbKind) probe(ctx context.Context, target string, mod *Module, r *Result, logger *slog.Logger) bool {
	m := &mod.DB
	t, err := parseDBTarget(target, k.defaultPort)
	if err != nil {
		r.Fail(ReasonConfig, err)
		return false
	}
	if errs := m.validate("db"); len(errs) > 0 {
		r.Fail(ReasonConfig, errs[0])
		return false
	}
	if errs := m.ValidateFor(k.name, "db"); len(errs) > 0 {
		r.Fail(ReasonConfig, errs[0])
		return false
	}
	s := &dbSession{kind: k, m: m, logger: logger, host: t.host, port: t.port, database: t.database, user: k.defaultUser, query: m.Query}
	if m.Database != "" {
		s.database = m.Database
	}
	if m.Auth != nil {
		s.user = m.Auth.Username
		if s.password, err = m.Auth.Password.Value(); err != nil {
			r.Fail(ReasonConfig, fmt.Errorf("auth module %s: %w", m.AuthModule, err))
			return false
		}
	}
	if d, ok := ctx.Deadline(); ok {
		s.deadline = d
	} else {
		s.deadline = time.Now().Add(DefaultTimeout)
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, s.deadline)
		defer cancel()
	}
	s.driverAddr = net.JoinHostPort(t.host, strconv.Itoa(t.port))
	s.dialAddr = s.driverAddr
	if m.Preferred != "" {
		ip, err := resolve(ctx, t.host, m.IPProtocol, r, "probe_db_duration_seconds")
		if err != nil {
			return false // resolve recorded the reason
		}
		s.dialAddr = net.JoinHostPort(ip.String(), strconv.Itoa(t.port))
	}
	s.start = time.Now()
	err = k.run(ctx, s)
	s.done()
	s.closeAll()
	s.record(r)
	if err != nil {
		r.Fail(s.reason(ctx, err), s.scrub(err))
		logger.Debug("database probe failed", "prober", k.name, "target", target, "err", s.scrub(err))
		return false
	}
	return true
}

// authed marks the end of the session set-up: what follows is the query.
func (s *dbSession) authed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.authedAt.IsZero() {
		s.authedAt = time.Now()
	}
}

// queryStart marks the query being sent, when that is not right after authed (mongodb selects
// a server and logs in between).
func (s *dbSession) queryStart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queryAt.IsZero() {
		s.queryAt = time.Now()
	}
}

// done marks the end of the query: what a prober does after it (asking for the server's
// version) is not timed.
func (s *dbSession) done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.doneAt.IsZero() {
		s.doneAt = time.Now()
	}
}

// dbConfigError is a module that cannot be turned into a driver's configuration.
type dbConfigError struct{ err error }

func (e dbConfigError) Error() string { return e.err.Error() }
func (e dbConfigError) Unwrap() error { return e.err }

func dbConfigErr(err error) error {
	if err == nil {
		return nil
	}
	return dbConfigError{err}
}

func (s *dbSession) setVersion(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.version == "" {
		s.version = v
	}
}

// record adds the phase durations, the server's version, the TLS facts and the peer's
// address. A phase that was under way when the probe failed counts until the failure.
func (s *dbSession) record(r *Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	const help = "Duration of the database probe by phase"
	connEnd := s.connected
	if !s.tlsDone.IsZero() && (s.authedAt.IsZero() || s.tlsDone.Before(s.authedAt)) {
		connEnd = s.tlsDone
	}
	if connEnd.IsZero() {
		r.Set("probe_db_duration_seconds", help, s.doneAt.Sub(s.start).Seconds(), "phase", "connect")
		return
	}
	r.Set("probe_db_duration_seconds", help, connEnd.Sub(s.start).Seconds(), "phase", "connect")
	authEnd := s.authedAt
	if authEnd.IsZero() {
		authEnd = s.doneAt
	}
	r.Set("probe_db_duration_seconds", help, dbNonNegative(authEnd.Sub(connEnd)).Seconds(), "phase", "auth")
	if !s.authedAt.IsZero() {
		qs := s.authedAt
		if s.queryAt.After(qs) {
			qs = s.queryAt
		}
		r.Set("probe_db_duration_seconds", help, dbNonNegative(s.doneAt.Sub(qs)).Seconds(), "phase", "query")
	}
	if s.remote != nil && s.m.Preferred == "" {
		recordIP(r, s.remote)
	}
	if s.version != "" {
		r.Set("probe_db_server_version_info", "The database server's version, as it reports it", 1, "version", s.version)
	}
	if cs := s.tlsState; cs != nil {
		r.Set("probe_tls_version_info", "Returns the TLS version used or NaN when unknown", 1, "version", tls.VersionName(cs.Version))
		var earliest time.Time
		for _, c := range cs.PeerCertificates {
			if earliest.IsZero() || c.NotAfter.Before(earliest) {
				earliest = c.NotAfter
			}
		}
		if !earliest.IsZero() {
			r.Set("probe_ssl_earliest_cert_expiry", "Returns last SSL chain expiry in unixtime", float64(earliest.Unix()))
		}
	}
}

func dbNonNegative(d time.Duration) time.Duration { return max(d, 0) }

// reason maps a failure to its Reason by the phase it happened in and the error's kind.
func (s *dbSession) reason(ctx context.Context, err error) Reason {
	s.mu.Lock()
	connected, authed, dialErr, tlsErr := !s.connected.IsZero(), !s.authedAt.IsZero(), s.dialErr, s.tlsErr
	s.mu.Unlock()
	var ce dbConfigError
	if errors.As(err, &ce) {
		return ReasonConfig
	}
	if ctx.Err() != nil || !time.Now().Before(s.deadline) || dbIsTimeout(err) {
		return ReasonTimeout
	}
	if !connected {
		if dialErr != nil {
			err = dialErr
		}
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			if dnsErr.IsTimeout {
				return ReasonTimeout
			}
			return ReasonResolve
		}
		var addrErr *net.AddrError
		if errors.As(err, &addrErr) && addrErr.Err == "no suitable address found" {
			return ReasonResolve // the name has no address of a family the dialer may use
		}
		if dbIsTLSError(err) {
			return ReasonTLS
		}
		return ReasonConnect
	}
	if s.kind.authErr != nil && s.kind.authErr(err) {
		return ReasonAuth
	}
	if tlsErr != nil && !authed {
		return ReasonTLS // the server hung up or answered nonsense during the handshake
	}
	if dbIsTLSError(err) || (s.kind.tlsErr != nil && s.kind.tlsErr(err)) {
		return ReasonTLS
	}
	if authed || (s.kind.serverErr != nil && s.kind.serverErr(err)) {
		return ReasonStatus
	}
	return ReasonProtocol
}

func dbIsTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isTLSError recognises crypto/tls and x509 failures, also when a driver flattened them into
// its own message.
func dbIsTLSError(err error) bool {
	var (
		verr *tls.CertificateVerificationError
		rerr tls.RecordHeaderError
		aerr tls.AlertError
		uerr x509.UnknownAuthorityError
		herr x509.HostnameError
		cerr x509.CertificateInvalidError
	)
	if errors.As(err, &verr) || errors.As(err, &rerr) || errors.As(err, &aerr) || errors.As(err, &uerr) ||
		errors.As(err, &herr) || errors.As(err, &cerr) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "tls: ") || strings.Contains(msg, "x509: ")
}

// scrub returns err with the password blanked out of its text, in case a driver quotes it.
func (s *dbSession) scrub(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if len(s.password) >= 3 && strings.Contains(msg, s.password) {
		return errors.New(strings.ReplaceAll(msg, s.password, "<password>"))
	}
	return err
}

// tlsMode returns the module's TLS mode, or def when the module leaves it to the driver.
func (s *dbSession) tlsMode(def string) string {
	if s.m.TLS == dbTLSDefault {
		return def
	}
	return s.m.TLS
}

// tlsConfig builds the TLS configuration for mode require or verify, with a hook that notes
// when the handshake completed and what it negotiated.
func (s *dbSession) tlsConfig(mode string) (*tls.Config, error) {
	tc := s.m.TLSConfig
	if mode != dbTLSVerify {
		tc.InsecureSkipVerify = true
	}
	cfg, err := tc.Build(s.host)
	if err != nil {
		return nil, err
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.tlsDone.IsZero() {
			s.tlsDone = time.Now()
			s.tlsState = &cs
		}
		return nil
	}
	return cfg, nil
}

// dialContext is the dialer every driver is given: it dials the address resolved by the
// preferred family when the driver asks for the target, wraps the connection so that no read
// or write outlives the probe's deadline, and notes when the connection was made. When dialTLS
// is set (drivers that expect the dialer to do TLS) it also does the handshake.
func (s *dbSession) dialContext(ctx context.Context, network, addr string, dialTLS *tls.Config) (net.Conn, error) {
	to := addr
	if addr == s.driverAddr {
		to = s.dialAddr
	}
	if !strings.HasPrefix(network, "tcp") {
		network = "tcp"
	}
	d := net.Dialer{Deadline: s.deadline, KeepAlive: -1}
	c, err := d.DialContext(ctx, network, to)
	if err != nil {
		s.mu.Lock()
		if s.dialErr == nil {
			s.dialErr = err
		}
		s.mu.Unlock()
		return nil, err
	}
	wc := &dbConn{Conn: c, deadline: s.deadline}
	_ = wc.SetDeadline(time.Time{}) // i.e. the probe's deadline
	s.mu.Lock()
	if s.connected.IsZero() {
		s.connected = time.Now()
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			s.remote = ta.IP
		}
	}
	wc.sniff = s.sniffFirst
	s.conns = append(s.conns, wc)
	s.mu.Unlock()
	if dialTLS == nil {
		return wc, nil
	}
	tc := tls.Client(wc, dialTLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = wc.Close()
		s.mu.Lock()
		if s.tlsErr == nil {
			s.tlsErr = err
		}
		s.mu.Unlock()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil
}

// closeAll closes every connection the probe opened, whatever the driver did with them: a
// probe keeps nothing open.
func (s *dbSession) closeAll() {
	s.mu.Lock()
	conns := s.conns
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Conn.Close()
	}
}

// firstRead returns the first bytes read on the first connection (when sniffFirst is set).
func (s *dbSession) firstRead() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) == 0 {
		return nil
	}
	c := s.conns[0]
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.first...)
}

// dbConn bounds every deadline a driver sets by the probe's (a driver that clears its deadline
// after each exchange would otherwise wait forever on a silent server), and keeps the first
// bytes the server sent.
type dbConn struct {
	net.Conn
	deadline time.Time
	sniff    bool
	mu       sync.Mutex
	first    []byte
}

const dbSniffLen = 512

func (c *dbConn) clamp(t time.Time) time.Time {
	if t.IsZero() || t.After(c.deadline) {
		return c.deadline
	}
	return t
}

func (c *dbConn) SetDeadline(t time.Time) error      { return c.Conn.SetDeadline(c.clamp(t)) }
func (c *dbConn) SetReadDeadline(t time.Time) error  { return c.Conn.SetReadDeadline(c.clamp(t)) }
func (c *dbConn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.clamp(t)) }

func (c *dbConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.sniff && n > 0 {
		c.mu.Lock()
		if len(c.first) < dbSniffLen {
			c.first = append(c.first, p[:min(n, dbSniffLen-len(c.first))]...)
		}
		c.mu.Unlock()
	}
	return n, err
}

// loginAndQuery opens one connection through a database/sql/driver connector, reads the server's
// version from the first bytes it sent (even when the login then fails: the version says which
// server refused), and runs the session's query, or SELECT 1.
func (s *dbSession) loginAndQuery(ctx context.Context, connector driver.Connector, version func([]byte) string) error {
	conn, err := connector.Connect(ctx)
	if v := version(s.firstRead()); v != "" {
		s.setVersion(v)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	s.authed()
	q := s.query
	if q == "" {
		q = "SELECT 1"
	}
	return dbQueryDriverConn(ctx, conn, q)
}

// queryDriverConn runs query on a database/sql/driver connection and reads its answer (up to
// dbMaxRows rows), without database/sql's pool and retries: a probe measures one connection.
func dbQueryDriverConn(ctx context.Context, c driver.Conn, query string) error {
	var (
		rows driver.Rows
		err  error
	)
	if qc, ok := c.(driver.QueryerContext); ok {
		rows, err = qc.QueryContext(ctx, query, nil)
	} else {
		err = driver.ErrSkip
	}
	if errors.Is(err, driver.ErrSkip) {
		pc, ok := c.(driver.ConnPrepareContext)
		if !ok {
			return errors.New("the driver can neither query nor prepare")
		}
		st, perr := pc.PrepareContext(ctx, query)
		if perr != nil {
			return perr
		}
		defer st.Close()
		sq, ok := st.(driver.StmtQueryContext)
		if !ok {
			return errors.New("the driver's statement cannot query")
		}
		rows, err = sq.QueryContext(ctx, nil)
	}
	if err != nil {
		return err
	}
	defer rows.Close()
	dest := make([]driver.Value, len(rows.Columns()))
	for range dbMaxRows {
		if err := rows.Next(dest); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
	return nil
}

// dbVersionLabel keeps a version string fit for a label: printable, bounded.
func dbVersionLabel(v string) string {
	v = strings.TrimSpace(v)
	v = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, v)
	if len(v) > 64 {
		v = strings.ToValidUTF8(v[:64], "")
	}
	return v
}

// remaining is the time left before the probe's deadline, for drivers that want a timeout
// rather than a context.
func (s *dbSession) remaining() time.Duration {
	return max(time.Until(s.deadline), time.Millisecond)
}
