package metricstore

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"go.yaml.in/yaml/v3"
)

// RemoteWrite is a Prometheus-compatible store (Prometheus, Mimir, Thanos Receive,
// VictoriaMetrics) that receives a copy of every sample through Prometheus's own remote-write
// queue: it reads the TSDB's WAL, so it neither slows ingestion nor loses samples while the
// receiver is down (it retries with backoff for as long as the WAL keeps them, about two hours).
type RemoteWrite struct {
	URL  string
	Name string // in the queue's metrics and logs; default: a hash of the configuration
	// Basic authentication, or a bearer token; secrets are files, never values.
	Username        string
	PasswordFile    string
	BearerTokenFile string
	Headers         map[string]string
	// Version is the protocol: "1.0" (default, what every receiver takes) or "2.0".
	Version string
}

// renderConfig builds the Prometheus configuration equivalent to the store's settings and the
// given scrape jobs, and loads it through config.Load so that Prometheus's defaults and validation
// apply exactly as to a prometheus.yml.
func renderConfig(o Options, jobs []string) (*config.Config, error) {
	type yamlMap = map[string]any
	global := yamlMap{
		"scrape_interval":     model.Duration(o.ScrapeInterval).String(),
		"scrape_timeout":      model.Duration(o.ScrapeTimeout).String(),
		"evaluation_interval": model.Duration(evaluationInterval).String(),
	}
	if len(o.ExternalLabels) > 0 {
		global["external_labels"] = o.ExternalLabels
	}
	doc := yamlMap{"global": global}
	if len(jobs) > 0 {
		scs := make([]yamlMap, len(jobs))
		for i, j := range jobs {
			scs[i] = yamlMap{"job_name": j}
		}
		doc["scrape_configs"] = scs
	}
	if len(o.RemoteWrite) > 0 {
		rws := make([]yamlMap, len(o.RemoteWrite))
		for i, rw := range o.RemoteWrite {
			m, err := rw.yaml()
			if err != nil {
				return nil, fmt.Errorf("metricstore: remote write %d (%s): %w", i, rw.URL, err)
			}
			rws[i] = m
		}
		doc["remote_write"] = rws
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("metricstore: %w", err)
	}
	cfg, err := config.Load(string(out), nil)
	if err != nil {
		return nil, fmt.Errorf("metricstore: configuration: %w", err)
	}
	return cfg, nil
}

func (rw RemoteWrite) yaml() (map[string]any, error) {
	u, err := url.Parse(rw.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("URL must be http(s)://host/path")
	}
	m := map[string]any{"url": rw.URL}
	if rw.Name != "" {
		m["name"] = rw.Name
	}
	switch {
	case rw.Username != "" && rw.BearerTokenFile != "":
		return nil, errors.New("basic authentication and a bearer token are exclusive")
	case rw.Username != "":
		m["basic_auth"] = map[string]string{"username": rw.Username, "password_file": rw.PasswordFile}
	case rw.BearerTokenFile != "":
		m["authorization"] = map[string]string{"credentials_file": rw.BearerTokenFile}
	}
	if len(rw.Headers) > 0 {
		m["headers"] = rw.Headers
	}
	switch rw.Version {
	case "", "1.0":
	case "2.0":
		m["protobuf_message"] = "io.prometheus.write.v2.Request"
	default:
		return nil, fmt.Errorf("version %q is neither 1.0 nor 2.0", rw.Version)
	}
	return m, nil
}
