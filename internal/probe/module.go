package probe

import (
	"fmt"
	"time"

	"github.com/serversage/sage/internal/config"
)

// Module is one probe configuration. Its YAML is the common subset of a blackbox_exporter
// module (prober, timeout, http, tcp, icmp, dns), so that a `modules:` section copied from a
// blackbox.yml loads unchanged, plus ServerSage's kinds: db (postgres, mysql, mssql, oracle,
// mongodb, redis) and throughput, and ICMP rounds of several packets.
type Module struct {
	Prober  string        `yaml:"prober"`
	Timeout time.Duration `yaml:"timeout"`

	HTTP       HTTPModule       `yaml:"http"`
	TCP        TCPModule        `yaml:"tcp"`
	ICMP       ICMPModule       `yaml:"icmp"`
	DNS        DNSModule        `yaml:"dns"`
	DB         DBModule         `yaml:"db"`
	Throughput ThroughputModule `yaml:"throughput"`
}

// Validate checks the module; path is its place in the configuration (probes.modules.http_2xx).
func (m *Module) Validate(path string) []config.FieldError {
	var errs []config.FieldError
	if m.Prober == "" {
		errs = append(errs, config.Errorf(path+".prober", "missing; one of %v", Kinds()))
	} else if _, ok := Lookup(m.Prober); !ok {
		errs = append(errs, config.Errorf(path+".prober", "unknown prober %q; one of %v", m.Prober, Kinds()))
	}
	if m.Timeout < 0 {
		errs = append(errs, config.Errorf(path+".timeout", "must not be negative"))
	}
	errs = append(errs, m.HTTP.validate(path+".http")...)
	errs = append(errs, m.TCP.validate(path+".tcp")...)
	errs = append(errs, m.ICMP.validate(path+".icmp")...)
	errs = append(errs, m.DNS.validate(path+".dns")...)
	errs = append(errs, m.DB.validate(path+".db")...)
	errs = append(errs, m.DB.ValidateFor(m.Prober, path+".db")...)
	errs = append(errs, m.Throughput.validate(path+".throughput")...)
	// The checks that need the prober as well as its section.
	switch m.Prober {
	case "dns":
		if m.DNS.QueryName == "" {
			errs = append(errs, config.Errorf(path+".dns.query_name", "missing: a dns probe asks for a name"))
		}
	case "icmp":
		// A round that cannot fit in the deadline would silently send fewer packets than asked,
		// and its loss ratio would then be over fewer packets than the operator thinks.
		if m.ICMP.Count > 1 && m.ICMP.Interval > 0 && m.Timeout > 0 &&
			time.Duration(m.ICMP.Count-1)*m.ICMP.Interval >= m.Timeout {
			errs = append(errs, config.Errorf(path+".icmp.count", "%d packets %s apart do not fit in the timeout of %s",
				m.ICMP.Count, m.ICMP.Interval, m.Timeout))
		}
	}
	return errs
}

// IPProtocol is blackbox_exporter's preferred_ip_protocol: "ip4" or "ip6"; with fallback the
// other family is tried when the name has no address of the preferred one.
type IPProtocol struct {
	Preferred string `yaml:"preferred_ip_protocol"` // "", "ip4", "ip6" (blackbox's default is ip6)
	Fallback  *bool  `yaml:"ip_protocol_fallback"`  // nil: true, as blackbox
}

func (p IPProtocol) validate(path string) []config.FieldError {
	switch p.Preferred {
	case "", "ip4", "ip6", "tcp4", "tcp6", "udp4", "udp6":
		return nil
	}
	return []config.FieldError{config.Errorf(path+".preferred_ip_protocol", "%q is neither ip4 nor ip6", p.Preferred)}
}

// TLSConfig is the tls_config of prometheus/common, the subset probes need.
type TLSConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	MinVersion         string `yaml:"min_version"` // TLS10, TLS11, TLS12, TLS13
}

// Secret is a credential given by reference: the contents of a file (trailing newline removed)
// or an environment variable, never inline in a URL. Inline values are accepted only where
// blackbox_exporter accepts them (basic_auth.password), and are never logged.
type Secret struct {
	Inline string `yaml:"-"`
	File   string `yaml:"file"`
	Env    string `yaml:"env"`
}

func (s Secret) String() string { return fmt.Sprintf("Secret{file=%q env=%q}", s.File, s.Env) }

// Target is one scheduled probe: what to probe, with which module, how often, and extra labels
// for its series. Name defaults to Target and is the `target` label.
type Target struct {
	Name     string            `yaml:"name"`
	Target   string            `yaml:"target"`
	Module   string            `yaml:"module"`
	Interval time.Duration     `yaml:"interval"`
	Labels   map[string]string `yaml:"labels"`
}
