package notify

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/serversage/sage/internal/config"
)

// Config is the notification channels' configuration, for the hub's configuration file. Each part
// is optional: a channel that is not configured has no sender. Secrets are named by reference
// (*_file, *_env), never written in the file.
//
//	smtp:
//	  host: mail.example.com
//	  mode: starttls            # starttls (default, port 587) | tls (465) | none (loopback only, 25)
//	  username: sage
//	  password_file: /etc/sage/smtp.password
//	  from: ServerSage <sage@example.com>
//	sms:
//	  provider: twilio
//	  twilio: {account_sid: AC..., auth_token_file: /etc/sage/twilio.token, from: "+15005550006"}
//	webhooks:
//	  - {name: chat, url: https://chat.example.com/hooks/alerts, bearer_token_file: /etc/sage/chat.token}
type Config struct {
	SMTP     *SMTPConfig     `yaml:"smtp"`
	SMS      *SMSConfig      `yaml:"sms"`
	Webhooks []WebhookConfig `yaml:"webhooks"`
}

// SMTP modes.
const (
	SMTPStartTLS = "starttls" // plain connection upgraded with STARTTLS, which is required
	SMTPTLS      = "tls"      // TLS from the first byte ("SMTPS", port 465)
	SMTPNone     = "none"     // no TLS; only to a loopback address (a local relay)
)

// SMTPConfig is the mail server notifications are sent through.
type SMTPConfig struct {
	Host string `yaml:"host"`
	// Port defaults by mode: 587 for starttls, 465 for tls, 25 for none.
	Port int    `yaml:"port"`
	Mode string `yaml:"mode"`
	// Auth is plain or login; empty picks PLAIN when the server offers it, else LOGIN. Used only
	// with a username.
	Auth         string `yaml:"auth"`
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// From is the sender, "sage@example.com" or "ServerSage <sage@example.com>"; its domain is
	// also the Message-ID's.
	From string `yaml:"from"`
	// CAFile is a PEM bundle to verify the server with instead of the system's roots.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name the certificate must carry, when it is not Host.
	ServerName string `yaml:"server_name"`
	// Timeout bounds one whole send (connect to QUIT); default 30s.
	Timeout string `yaml:"timeout"`

	// Filled by Validate.
	from    *mail.Address
	timeout time.Duration
}

// SMSConfig chooses an SMS provider and configures it.
type SMSConfig struct {
	Provider string             `yaml:"provider"` // twilio or http
	Twilio   *TwilioConfig      `yaml:"twilio"`
	HTTP     *HTTPGatewayConfig `yaml:"http"`
}

// TwilioConfig is an account of Twilio's Programmable Messaging.
type TwilioConfig struct {
	AccountSID    string `yaml:"account_sid"`
	AuthTokenFile string `yaml:"auth_token_file"`
	AuthTokenEnv  string `yaml:"auth_token_env"`
	// From is the sending number (E.164), short code or alphanumeric sender id;
	// MessagingServiceSID sends through a messaging service instead. One of them is required.
	From                string `yaml:"from"`
	MessagingServiceSID string `yaml:"messaging_service_sid"`
	// BaseURL defaults to https://api.twilio.com; plain http is allowed only to loopback.
	BaseURL string `yaml:"base_url"`
	Timeout string `yaml:"timeout"` // per request; default 15s

	timeout time.Duration
}

// HTTPGatewayConfig is an SMS gateway reached by one HTTP request per message, as most local
// gateways (Kannel, SMSEagle, Gammu's, a router's) are. URL and BodyTemplate are Go text/template
// templates over .To (E.164 number), .Body (the text), .Incident (incident id), .Key (the
// notification's dedupe key) and .Secret (from secret_file/secret_env), with the functions
// urlquery and json (a JSON string literal).
type HTTPGatewayConfig struct {
	URL    string `yaml:"url"`
	Method string `yaml:"method"` // default POST
	// Headers are added to every request; a value may come from a file or the environment.
	Headers      []HeaderConfig `yaml:"headers"`
	BodyTemplate string         `yaml:"body_template"` // default {"to":..., "text":...} as JSON
	ContentType  string         `yaml:"content_type"`  // default application/json
	// SuccessStatus lists the HTTP statuses that mean sent: "200-299" (the default), "200,202".
	SuccessStatus string `yaml:"success_status"`
	SecretFile    string `yaml:"secret_file"`
	SecretEnv     string `yaml:"secret_env"`
	Timeout       string `yaml:"timeout"` // per request; default 15s

	timeout time.Duration
	success statusSet
}

// HeaderConfig is one request header; exactly one of Value, ValueFile, ValueEnv.
type HeaderConfig struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFile string `yaml:"value_file"`
	ValueEnv  string `yaml:"value_env"`
}

// WebhookConfig is one webhook receiving Alertmanager's webhook JSON.
type WebhookConfig struct {
	// Name is how escalation policies name the webhook, and the payload's receiver.
	Name            string           `yaml:"name"`
	URL             string           `yaml:"url"`
	BearerTokenFile string           `yaml:"bearer_token_file"`
	BearerTokenEnv  string           `yaml:"bearer_token_env"`
	BasicAuth       *BasicAuthConfig `yaml:"basic_auth"`
	Timeout         string           `yaml:"timeout"` // default 10s
	// MaxAlerts caps the alerts in one payload, as Alertmanager's max_alerts; 0 means all.
	MaxAlerts int `yaml:"max_alerts"`

	timeout time.Duration
}

// BasicAuthConfig is HTTP basic authentication with the password by reference.
type BasicAuthConfig struct {
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
}

const (
	defaultSMTPTimeout = 30 * time.Second
	defaultHTTPTimeout = 15 * time.Second
	defaultHookTimeout = 10 * time.Second
	defaultTwilioURL   = "https://api.twilio.com"
)

// Validate checks the configuration and fills defaults; it implements config.Validator. Fields
// are named from this struct ("smtp.port", "webhooks[1].url"): a caller that embeds Config under a
// key prefixes them.
func (c *Config) Validate() []config.FieldError {
	var fe []config.FieldError
	if c.SMTP != nil {
		fe = append(fe, prefixed("smtp.", c.SMTP.Validate())...)
	}
	if c.SMS != nil {
		fe = append(fe, prefixed("sms.", c.SMS.Validate())...)
	}
	seen := map[string]int{}
	for i := range c.Webhooks {
		p := fmt.Sprintf("webhooks[%d].", i)
		fe = append(fe, prefixed(p, c.Webhooks[i].Validate())...)
		if n := c.Webhooks[i].Name; n != "" {
			if j, dup := seen[n]; dup {
				fe = append(fe, config.Errorf(p+"name", "%q is already the name of webhooks[%d]", n, j))
			} else {
				seen[n] = i
			}
		}
	}
	return fe
}

// ResolvePaths makes the configuration's relative file names relative to dir, the directory of the
// configuration file, rather than to wherever the hub was started.
func (c *Config) ResolvePaths(dir string) {
	rel := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if s := c.SMTP; s != nil {
		rel(&s.PasswordFile)
		rel(&s.CAFile)
	}
	if s := c.SMS; s != nil {
		if s.Twilio != nil {
			rel(&s.Twilio.AuthTokenFile)
		}
		if h := s.HTTP; h != nil {
			rel(&h.SecretFile)
			for i := range h.Headers {
				rel(&h.Headers[i].ValueFile)
			}
		}
	}
	for i := range c.Webhooks {
		w := &c.Webhooks[i]
		rel(&w.BearerTokenFile)
		if w.BasicAuth != nil {
			rel(&w.BasicAuth.PasswordFile)
		}
	}
}

func prefixed(p string, fe []config.FieldError) []config.FieldError {
	for i := range fe {
		fe[i].Field = p + fe[i].Field
	}
	return fe
}

func fieldErrors(fe []config.FieldError) error { return config.Invalid(fe...) }

func parseDuration(fe *[]config.FieldError, field, s string, def time.Duration) time.Duration {
	if strings.TrimSpace(s) == "" {
		return def
	}
	d, err := model.ParseDuration(strings.TrimSpace(s))
	if err != nil || d <= 0 {
		*fe = append(*fe, config.Errorf(field, "%q is not a positive duration such as 10s or 1m", s))
		return def
	}
	return time.Duration(d)
}

// isLoopbackHost reports whether host names this machine: localhost or a loopback address.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// Validate checks the SMTP settings and fills defaults.
func (c *SMTPConfig) Validate() []config.FieldError {
	var fe []config.FieldError
	c.Host = strings.TrimSpace(c.Host)
	switch {
	case c.Host == "":
		fe = append(fe, config.Errorf("host", "is required"))
	case strings.ContainsAny(c.Host, " /:@") && net.ParseIP(c.Host) == nil:
		fe = append(fe, config.Errorf("host", "%q must be a host name or an IP address, without scheme or port", c.Host))
	}
	if c.Mode == "" {
		c.Mode = SMTPStartTLS
	}
	defPort := 0
	switch c.Mode {
	case SMTPStartTLS:
		defPort = 587
	case SMTPTLS:
		defPort = 465
	case SMTPNone:
		defPort = 25
		if c.Host != "" && !isLoopbackHost(c.Host) {
			fe = append(fe, config.Errorf("mode", "none sends in clear and is allowed only to a loopback host (localhost, 127.0.0.1, ::1), not %q: use starttls or tls", c.Host))
		}
		if c.CAFile != "" || c.ServerName != "" {
			fe = append(fe, config.Errorf("mode", "none uses no TLS, so ca_file and server_name have no effect"))
		}
	default:
		fe = append(fe, config.Errorf("mode", "%q is not one of starttls, tls, none", c.Mode))
	}
	if c.Port == 0 {
		c.Port = defPort
	} else if c.Port < 1 || c.Port > 65535 {
		fe = append(fe, config.Errorf("port", "%d is not a port number (1 to 65535)", c.Port))
	}
	switch c.Auth {
	case "", "plain", "login":
	default:
		fe = append(fe, config.Errorf("auth", "%q is not one of plain, login (or empty: whichever the server offers)", c.Auth))
	}
	if c.Username != "" {
		fe = append(fe, oneSecret("password_file", "password_env", c.PasswordFile, c.PasswordEnv, true)...)
	} else if c.PasswordFile != "" || c.PasswordEnv != "" {
		fe = append(fe, config.Errorf("username", "is required when a password is given"))
	}
	if strings.TrimSpace(c.From) == "" {
		fe = append(fe, config.Errorf("from", "is required: the sender address, such as ServerSage <sage@example.com>"))
	} else if a, err := mail.ParseAddress(c.From); err != nil {
		fe = append(fe, config.Errorf("from", "%q is not an email address: %v", c.From, err))
	} else if addr, err := ParseEmailAddress(a.Address); err != nil {
		fe = append(fe, config.Errorf("from", "%v", err))
	} else {
		c.from = &mail.Address{Name: a.Name, Address: addr}
	}
	c.timeout = parseDuration(&fe, "timeout", c.Timeout, defaultSMTPTimeout)
	return fe
}

func (c *SMTPConfig) password() secretRef {
	return secretRef{fileField: "password_file", envField: "password_env", file: c.PasswordFile, env: c.PasswordEnv}
}

// oneSecret checks that exactly one of a file and an environment variable is given (or none, when
// the secret is optional).
func oneSecret(fileField, envField, file, env string, required bool) []config.FieldError {
	switch {
	case file != "" && env != "":
		return []config.FieldError{config.Errorf(fileField, "give either %s or %s, not both", fileField, envField)}
	case file == "" && env == "" && required:
		return []config.FieldError{config.Errorf(fileField, "is required (or %s): the secret itself never goes in this file", envField)}
	case env != "" && !envName.MatchString(env):
		return []config.FieldError{config.Errorf(envField, "%q is not an environment variable name", env)}
	}
	return nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// secretRef is a secret named by a file or an environment variable. The secret is read when
// needed, so that a rotated file takes effect at the next send; errors name where it was looked
// for, never what was found.
type secretRef struct {
	fileField, envField string
	file, env           string
}

func (s secretRef) set() bool { return s.file != "" || s.env != "" }

func (s secretRef) read() (string, error) {
	if s.file != "" {
		b, err := os.ReadFile(s.file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", s.fileField, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("%s: %s is empty", s.fileField, s.file)
		}
		return v, nil
	}
	if s.env != "" {
		v := strings.TrimSpace(os.Getenv(s.env))
		if v == "" {
			return "", fmt.Errorf("%s: the environment variable %s is empty or unset", s.envField, s.env)
		}
		return v, nil
	}
	return "", errors.New("no secret configured")
}

// clientTLS is the TLS configuration for a server named host, verified against the PEM bundle
// caFile when given (else the system's roots) under serverName when given (else host).
func clientTLS(caFile, serverName, host string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if serverName != "" {
		tc.ServerName = serverName
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file: %s holds no PEM certificate", caFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// Validate checks the SMS settings and fills defaults.
func (c *SMSConfig) Validate() []config.FieldError {
	var fe []config.FieldError
	switch c.Provider {
	case "twilio":
		if c.Twilio == nil {
			fe = append(fe, config.Errorf("twilio", "is required with provider twilio"))
		}
		if c.HTTP != nil {
			fe = append(fe, config.Errorf("http", "is set, but the provider is twilio"))
		}
	case "http":
		if c.HTTP == nil {
			fe = append(fe, config.Errorf("http", "is required with provider http"))
		}
		if c.Twilio != nil {
			fe = append(fe, config.Errorf("twilio", "is set, but the provider is http"))
		}
	case "":
		fe = append(fe, config.Errorf("provider", "is required: twilio or http"))
	default:
		fe = append(fe, config.Errorf("provider", "%q is not one of twilio, http", c.Provider))
	}
	if c.Twilio != nil {
		fe = append(fe, prefixed("twilio.", c.Twilio.Validate())...)
	}
	if c.HTTP != nil {
		fe = append(fe, prefixed("http.", c.HTTP.Validate())...)
	}
	return fe
}

var (
	accountSIDRE = regexp.MustCompile(`^AC[0-9a-fA-F]{32}$`)
	serviceSIDRE = regexp.MustCompile(`^MG[0-9a-fA-F]{32}$`)
	// An alphanumeric sender id: up to 11 letters, digits and spaces, at least one letter.
	senderIDRE  = regexp.MustCompile(`^[A-Za-z0-9 ]{1,11}$`)
	shortCodeRE = regexp.MustCompile(`^[0-9]{3,8}$`)
)

// Validate checks the Twilio settings and fills defaults.
func (c *TwilioConfig) Validate() []config.FieldError {
	var fe []config.FieldError
	if !accountSIDRE.MatchString(c.AccountSID) {
		fe = append(fe, config.Errorf("account_sid", "must be the account's SID: AC followed by 32 hexadecimal digits"))
	}
	fe = append(fe, oneSecret("auth_token_file", "auth_token_env", c.AuthTokenFile, c.AuthTokenEnv, true)...)
	if c.From == "" && c.MessagingServiceSID == "" {
		fe = append(fe, config.Errorf("from", "is required (or messaging_service_sid): the number or sender id messages come from"))
	}
	if c.From != "" {
		_, perr := ParsePhoneNumber(c.From)
		if perr != nil && !shortCodeRE.MatchString(c.From) &&
			!(senderIDRE.MatchString(c.From) && strings.ContainsAny(strings.ToLower(c.From), "abcdefghijklmnopqrstuvwxyz")) {
			fe = append(fe, config.Errorf("from", "%q is neither an E.164 number (+...), a short code, nor an alphanumeric sender id (up to 11 letters and digits)", c.From))
		}
	}
	if c.MessagingServiceSID != "" && !serviceSIDRE.MatchString(c.MessagingServiceSID) {
		fe = append(fe, config.Errorf("messaging_service_sid", "must be MG followed by 32 hexadecimal digits"))
	}
	if c.BaseURL == "" {
		c.BaseURL = defaultTwilioURL
	}
	if msg := checkURL(c.BaseURL, true); msg != "" {
		fe = append(fe, config.Errorf("base_url", "%s", msg))
	}
	c.timeout = parseDuration(&fe, "timeout", c.Timeout, defaultHTTPTimeout)
	return fe
}

// checkURL returns what is wrong with u as an http(s) URL to send to, or "". With secure, plain
// http is refused except to loopback, because the request carries a credential.
func checkURL(u string, secure bool) string {
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Sprintf("not a URL: %v", err)
	}
	if p.Scheme != "http" && p.Scheme != "https" {
		return fmt.Sprintf("%q must start with https:// or http://", redactURL(u))
	}
	if p.Host == "" {
		return fmt.Sprintf("%q has no host", redactURL(u))
	}
	if secure && p.Scheme == "http" && !isLoopbackHost(p.Hostname()) {
		return fmt.Sprintf("%q: plain http would send the credentials in clear; use https (http is allowed only to loopback)", redactURL(u))
	}
	return ""
}

// redactURL keeps a URL's scheme, host and path: its query and user information often hold keys.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	r := url.URL{Scheme: p.Scheme, Host: p.Host, Path: p.Path}
	s := r.String()
	if p.RawQuery != "" {
		s += "?..."
	}
	return s
}

// Validate checks the gateway settings, including that the templates parse and run, and fills
// defaults.
func (c *HTTPGatewayConfig) Validate() []config.FieldError {
	var fe []config.FieldError
	if c.Method == "" {
		c.Method = http.MethodPost
	}
	c.Method = strings.ToUpper(c.Method)
	switch c.Method {
	case http.MethodPost, http.MethodPut, http.MethodGet:
	default:
		fe = append(fe, config.Errorf("method", "%q is not one of POST, PUT, GET", c.Method))
	}
	if strings.TrimSpace(c.URL) == "" {
		fe = append(fe, config.Errorf("url", "is required"))
	} else if _, err := ParseGatewayTemplate("url", c.URL); err != nil {
		fe = append(fe, config.Errorf("url", "%v", err))
	} else if msg := checkURL(sampleURL(c.URL), false); msg != "" {
		fe = append(fe, config.Errorf("url", "%s", msg))
	}
	if c.BodyTemplate == "" && c.Method != http.MethodGet {
		c.BodyTemplate = defaultGatewayBody
		if c.ContentType == "" {
			c.ContentType = "application/json"
		}
	}
	if c.BodyTemplate != "" {
		if c.Method == http.MethodGet {
			fe = append(fe, config.Errorf("body_template", "a GET request has no body: put the fields in the url template"))
		} else if _, err := ParseGatewayTemplate("body_template", c.BodyTemplate); err != nil {
			fe = append(fe, config.Errorf("body_template", "%v", err))
		}
		if c.ContentType == "" {
			c.ContentType = "application/x-www-form-urlencoded"
		}
	}
	if strings.ContainsAny(c.ContentType, "\r\n") {
		fe = append(fe, config.Errorf("content_type", "must be one line"))
	}
	set, err := ParseStatusSet(c.SuccessStatus)
	if err != nil {
		fe = append(fe, config.Errorf("success_status", "%v", err))
	}
	c.success = set
	fe = append(fe, oneSecret("secret_file", "secret_env", c.SecretFile, c.SecretEnv, false)...)
	for i, h := range c.Headers {
		p := fmt.Sprintf("headers[%d].", i)
		if !headerName.MatchString(h.Name) {
			fe = append(fe, config.Errorf(p+"name", "%q is not an HTTP header name", h.Name))
		}
		n := 0
		for _, v := range []string{h.Value, h.ValueFile, h.ValueEnv} {
			if v != "" {
				n++
			}
		}
		if n != 1 {
			fe = append(fe, config.Errorf(p+"value", "give exactly one of value, value_file, value_env"))
		}
		if strings.ContainsAny(h.Value, "\r\n") {
			fe = append(fe, config.Errorf(p+"value", "must be one line"))
		}
		if h.ValueEnv != "" && !envName.MatchString(h.ValueEnv) {
			fe = append(fe, config.Errorf(p+"value_env", "%q is not an environment variable name", h.ValueEnv))
		}
	}
	c.timeout = parseDuration(&fe, "timeout", c.Timeout, defaultHTTPTimeout)
	return fe
}

var headerName = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// Validate checks one webhook's settings and fills defaults.
func (c *WebhookConfig) Validate() []config.FieldError {
	var fe []config.FieldError
	if strings.TrimSpace(c.Name) == "" {
		fe = append(fe, config.Errorf("name", "is required: escalation policies name the webhook by it"))
	} else if strings.ContainsAny(c.Name, "/\r\n") {
		fe = append(fe, config.Errorf("name", "%q must be one line without '/'", c.Name))
	}
	if strings.TrimSpace(c.URL) == "" {
		fe = append(fe, config.Errorf("url", "is required"))
	} else if msg := checkURL(c.URL, false); msg != "" {
		fe = append(fe, config.Errorf("url", "%s", msg))
	}
	fe = append(fe, oneSecret("bearer_token_file", "bearer_token_env", c.BearerTokenFile, c.BearerTokenEnv, false)...)
	if b := c.BasicAuth; b != nil {
		if c.BearerTokenFile != "" || c.BearerTokenEnv != "" {
			fe = append(fe, config.Errorf("basic_auth", "give either a bearer token or basic_auth, not both"))
		}
		if b.Username == "" {
			fe = append(fe, config.Errorf("basic_auth.username", "is required"))
		}
		fe = append(fe, prefixed("basic_auth.", oneSecret("password_file", "password_env", b.PasswordFile, b.PasswordEnv, true))...)
	}
	if c.MaxAlerts < 0 {
		fe = append(fe, config.Errorf("max_alerts", "must not be negative"))
	}
	c.timeout = parseDuration(&fe, "timeout", c.Timeout, defaultHookTimeout)
	return fe
}

// NewSenders builds a sender for each configured channel (ChannelEmail, ChannelSMS,
// ChannelWebhook), ready for NewDispatcher. It validates cfg and reads every secret once, so a
// missing file is reported at start rather than at the first incident.
func NewSenders(cfg Config) (map[string]Sender, error) {
	if fe := cfg.Validate(); len(fe) > 0 {
		return nil, fmt.Errorf("notify: %w", fieldErrors(fe))
	}
	out := map[string]Sender{}
	if cfg.SMTP != nil {
		s, err := NewEmailSender(*cfg.SMTP)
		if err != nil {
			return nil, err
		}
		out[ChannelEmail] = s
	}
	if cfg.SMS != nil {
		var (
			p   SMSProvider
			err error
		)
		switch cfg.SMS.Provider {
		case "twilio":
			p, err = NewTwilio(*cfg.SMS.Twilio, nil)
		case "http":
			p, err = NewHTTPGateway(*cfg.SMS.HTTP, nil)
		}
		if err != nil {
			return nil, err
		}
		out[ChannelSMS] = SMSSender{Provider: p}
	}
	if len(cfg.Webhooks) > 0 {
		w, err := NewWebhookSender(cfg.Webhooks, nil)
		if err != nil {
			return nil, err
		}
		out[ChannelWebhook] = w
	}
	return out, nil
}
