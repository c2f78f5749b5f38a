//go:build !agentonly

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/prometheus/common/model"

	"github.com/serversage/sage/internal/auth"
	"github.com/serversage/sage/internal/hub"
)

func init() {
	commands["token"] = command{summary: "create an API token for scripts and Grafana (token create)", run: runToken}
}

func runToken(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprintln(stderr, "Usage: sage token create --name NAME [--user admin] [--expires 90d] [--config FILE | --data DIR]")
		return 2
	}
	fs := flag.NewFlagSet("sage token create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var configFile, dataDir, user, name, expires string
	fs.StringVar(&configFile, "config", "", "the hub's configuration `file`; none: the state of 'sage up' in --data")
	fs.StringVar(&dataDir, "data", defaultDataDir(), "'sage up' data `directory`, when there is no --config")
	fs.StringVar(&user, "user", auth.AdminUsername, "the `user` the token acts as")
	fs.StringVar(&name, "name", "", "what the token is for (`name`), e.g. grafana; required")
	fs.StringVar(&expires, "expires", "", "lifetime (`duration`, e.g. 90d); none: until revoked")
	if err := fs.Parse(args[1:]); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if name == "" {
		fmt.Fprintln(stderr, "sage token create: --name is required")
		return 2
	}
	var expiresAt time.Time
	if expires != "" {
		d, err := model.ParseDuration(expires)
		if err != nil || d <= 0 {
			fmt.Fprintf(stderr, "sage token create: --expires %q is not a positive duration such as 90d\n", expires)
			return 2
		}
		expiresAt = time.Now().Add(time.Duration(d))
	}
	var cfg hub.Config
	if configFile != "" {
		c, err := hub.LoadConfig(configFile)
		if err != nil {
			fmt.Fprintf(stderr, "sage token create: configuration is invalid:\n%s\n", indent(err.Error(), "  "))
			return 1
		}
		cfg = c
	} else {
		abs, err := filepath.Abs(dataDir)
		if err != nil {
			fmt.Fprintf(stderr, "sage token create: --data: %v\n", err)
			return 2
		}
		cfg = hub.Config{DataDir: abs}
	}
	secret, tok, err := hub.CreateAPIToken(context.Background(), cfg, user, name, expiresAt, nil)
	if err != nil {
		fmt.Fprintf(stderr, "sage token create: %v\n", err)
		return 1
	}
	// The secret alone on stdout, so that scripts can capture it; the rest goes to stderr.
	fmt.Fprintln(stdout, secret)
	fmt.Fprintf(stderr, "API token %q (id %s) for user %s; shown this once. Use it as 'Authorization: Bearer <token>',\nor as the password of Basic auth with the user name (Grafana's Prometheus data source).\n", name, tok.ID, user)
	return 0
}
