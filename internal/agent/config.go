package agent

import (
	"path/filepath"

	"github.com/serversage/sage/internal/collector"
	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/probe"
)

// Config is the agent's configuration file. Every field is optional: the zero Config is the
// default agent, with every default collector on and no probe target (the /probe endpoint still
// has blackbox_exporter's default modules).
type Config struct {
	Collectors collector.Config `yaml:"collectors"`
	Probes     probe.Config     `yaml:"probes"`
	Changes    ChangesConfig    `yaml:"changes"`
}

// Validate implements config.Validator.
func (c *Config) Validate() []config.FieldError {
	errs := c.Collectors.Validate("collectors")
	errs = append(errs, c.Probes.Validate("probes")...)
	return append(errs, c.Changes.Validate("changes")...)
}

// LoadConfig reads and validates the configuration file at path; an empty path is the default
// configuration.
func LoadConfig(path string) (*Config, error) {
	cfg := &Config{}
	if path == "" {
		cfg.Probes.Validate("probes") // merges the default modules
		return cfg, nil
	}
	// A relative probes.modules_file is beside the configuration file.
	cfg.Probes.BaseDir = filepath.Dir(path)
	if err := config.LoadFile(path, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}
