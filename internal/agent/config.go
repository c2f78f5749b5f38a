package agent

import (
	"github.com/serversage/sage/internal/collector"
	"github.com/serversage/sage/internal/config"
)

// Config is the agent's configuration file. Every field is optional: the zero Config is the
// default agent, with every default collector on.
type Config struct {
	Collectors collector.Config `yaml:"collectors"`
}

// Validate implements config.Validator.
func (c *Config) Validate() []config.FieldError {
	return c.Collectors.Validate("collectors")
}

// LoadConfig reads and validates the configuration file at path; an empty path is the default
// configuration.
func LoadConfig(path string) (*Config, error) {
	cfg := &Config{}
	if path == "" {
		return cfg, nil
	}
	if err := config.LoadFile(path, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}
