package hub

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/serversage/sage/internal/changelog"
	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/metricstore"
)

// DefaultListen is the hub's default address: next to the agent's 10730 (so one firewall note
// covers both), outside the exporter range 9100-9999, and on loopback because the hub serves no
// TLS yet; an operator opens it to the network deliberately.
const DefaultListen = "127.0.0.1:10731"

// minTokenLen refuses enrolment tokens short enough to guess; 32 characters of a random
// alphabet is well over 128 bits.
const minTokenLen = 32

// Config is the hub's configuration file.
type Config struct {
	Listen string `yaml:"listen"`
	// DataDir holds the SQLite state (by default) and the TSDB under metrics/.
	DataDir string        `yaml:"data_dir"`
	State   StateConfig   `yaml:"state"`
	Metrics MetricsConfig `yaml:"metrics"`
	// Enrolment lists the tokens agents enrol with; each names the client its hosts join.
	Enrolment []EnrolmentConfig `yaml:"enrolment"`
	// Alerting configures rule evaluation, notification channels and links.
	Alerting AlertingConfig `yaml:"alerting"`
	// Changes configures the change events agents ship.
	Changes ChangesConfig `yaml:"changes"`

	// Filled by Validate from the strings above.
	retention, scrapeInterval, scrapeTimeout, changesRetention time.Duration
}

// ChangesConfig configures the store of change events.
type ChangesConfig struct {
	// Retention is how long events are kept, in Prometheus's duration syntax (default 400d).
	Retention string `yaml:"retention"`
}

// StateConfig names the state database.
type StateConfig struct {
	// DSN is a SQLite file path or postgres://...; empty: <data_dir>/sage.db. A PostgreSQL password
	// does not belong here: pgx reads PGPASSWORD and ~/.pgpass, so the file holds no secret.
	DSN string `yaml:"dsn"`
}

// MetricsConfig configures the metrics store. Durations use Prometheus's syntax (15d, 1h30m).
type MetricsConfig struct {
	Retention      string `yaml:"retention"`
	ScrapeInterval string `yaml:"scrape_interval"`
	ScrapeTimeout  string `yaml:"scrape_timeout"`
}

// EnrolmentConfig is one enrolment token, given by reference so that the configuration file
// can be shared and logged without disclosing it.
type EnrolmentConfig struct {
	TokenFile   string `yaml:"token_file"`
	AutoApprove bool   `yaml:"auto_approve"`
	// Client is the slug of the client whose hosts enrol with this token; the client is created
	// at start if it does not exist.
	Client string `yaml:"client"`
}

// LoadConfig reads and validates a hub configuration file; errors are file:line: field: message.
func LoadConfig(path string) (Config, error) {
	var c Config
	if err := config.LoadFile(path, &c); err != nil {
		return Config{}, err
	}
	// Relative paths are relative to the configuration file, not to wherever the hub was started.
	base := filepath.Dir(path)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	c.DataDir = rel(c.DataDir)
	for i := range c.Enrolment {
		c.Enrolment[i].TokenFile = rel(c.Enrolment[i].TokenFile)
	}
	c.Alerting.RulesDir = rel(c.Alerting.RulesDir)
	c.Alerting.Notify.ResolvePaths(base)
	return c, nil
}

func parseDuration(fe *[]config.FieldError, field, s string, def time.Duration) time.Duration {
	if strings.TrimSpace(s) == "" {
		return def
	}
	d, err := model.ParseDuration(strings.TrimSpace(s))
	if err != nil || d <= 0 {
		*fe = append(*fe, config.Errorf(field, "%q is not a positive duration such as 15s, 1h or 15d", s))
		return def
	}
	return time.Duration(d)
}

// Validate checks meaning and fills defaults; it implements config.Validator.
func (c *Config) Validate() []config.FieldError {
	var fe []config.FieldError
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if host, port, err := net.SplitHostPort(c.Listen); err != nil {
		fe = append(fe, config.Errorf("listen", "must be host:port: %v", err))
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		fe = append(fe, config.Errorf("listen", "port %q is not a number from 0 to 65535", port))
	} else if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		fe = append(fe, config.Errorf("listen", "host %q must be an IP address, localhost or empty (all addresses)", host))
	}
	if strings.TrimSpace(c.DataDir) == "" {
		fe = append(fe, config.Errorf("data_dir", "is required"))
	}
	c.retention = parseDuration(&fe, "metrics.retention", c.Metrics.Retention, metricstore.DefaultRetention)
	c.scrapeInterval = parseDuration(&fe, "metrics.scrape_interval", c.Metrics.ScrapeInterval, metricstore.DefaultScrapeInterval)
	c.scrapeTimeout = parseDuration(&fe, "metrics.scrape_timeout", c.Metrics.ScrapeTimeout, min(metricstore.DefaultScrapeTimeout, c.scrapeInterval))
	if c.scrapeTimeout > c.scrapeInterval {
		fe = append(fe, config.Errorf("metrics.scrape_timeout", "%s exceeds the scrape interval %s", c.scrapeTimeout, c.scrapeInterval))
	}
	c.changesRetention = parseDuration(&fe, "changes.retention", c.Changes.Retention, changelog.DefaultRetention)
	fe = append(fe, c.Alerting.validate(c.Listen)...)
	seen := map[string]int{}
	for i, e := range c.Enrolment {
		p := fmt.Sprintf("enrolment[%d].", i)
		if e.TokenFile == "" {
			fe = append(fe, config.Errorf(p+"token_file", "is required (the token itself never goes in this file)"))
		} else if j, dup := seen[e.TokenFile]; dup {
			fe = append(fe, config.Errorf(p+"token_file", "is already used by enrolment[%d]", j))
		} else {
			seen[e.TokenFile] = i
		}
		if strings.TrimSpace(e.Client) == "" {
			fe = append(fe, config.Errorf(p+"client", "is required: the slug of the client whose hosts enrol with this token"))
		}
	}
	return fe
}

// stateDSN is the state database's DSN, defaulting to a SQLite file in the data directory.
func (c *Config) stateDSN() string {
	if c.State.DSN != "" {
		return c.State.DSN
	}
	return filepath.Join(c.DataDir, "sage.db")
}

// readToken reads an enrolment token file. Whitespace around the token is ignored so that an
// editor's trailing newline does not matter; the error never contains the file's contents.
func readToken(field, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	tok := strings.TrimSpace(string(b))
	switch {
	case tok == "":
		return "", fmt.Errorf("%s: %s is empty", field, path)
	case len(tok) < minTokenLen:
		return "", fmt.Errorf("%s: the token in %s is shorter than %d characters", field, path, minTokenLen)
	case strings.ContainsAny(tok, " \t\r\n"):
		return "", fmt.Errorf("%s: the token in %s contains white space", field, path)
	}
	return tok, nil
}
