// Command seed fills a running hub's inventory through its REST API for bench/hub-ui-load.sh: C
// clients with two sites each and H hosts per client, with roles, tags and addresses. In each
// client a few hosts point at live synthetic agents (bench/ingest serve), a few at closed ports
// (so they are down, with scrape errors), a few wait for approval or are retired, and the rest
// are active without an agent (unmonitored), as in an MSP's inventory where most machines are
// only catalogued. It writes the ids of all hosts and of the live ones to files, one a line, for
// wrk's Lua scripts to rotate through.
//
//	seed -hub URL -token-file F -clients 50 -hosts 100 -up 4 -up-base-port P -down 2 -down-base-port Q -ids F -up-ids F
//
// It is a benchmark tool, not part of the sage binary.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		os.Exit(1)
	}
}

type options struct {
	hub, tokenFile        string
	clients, hosts        int
	up, upBase            int
	down, downBase        int
	workers               int
	idsFile, upIDsFile    string
	token                 string
	client                *http.Client
	pendingEvery, retired int
}

func run(ctx context.Context, args []string) error {
	var o options
	fs := flag.NewFlagSet("seed", flag.ExitOnError)
	fs.StringVar(&o.hub, "hub", "http://127.0.0.1:10731", "hub base URL")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding an API token (required)")
	fs.IntVar(&o.clients, "clients", 50, "clients")
	fs.IntVar(&o.hosts, "hosts", 100, "hosts per client")
	fs.IntVar(&o.up, "up", 4, "hosts per client with a live agent on 127.0.0.1:up-base-port+k (k counts over all clients)")
	fs.IntVar(&o.upBase, "up-base-port", 19300, "first port of the synthetic agents")
	fs.IntVar(&o.down, "down", 2, "hosts per client with an agent URL on a closed port")
	fs.IntVar(&o.downBase, "down-base-port", 19900, "first closed port")
	fs.IntVar(&o.pendingEvery, "pending", 2, "hosts per client awaiting approval (no agent)")
	fs.IntVar(&o.retired, "retired", 1, "retired hosts per client (no agent)")
	fs.IntVar(&o.workers, "workers", 4, "concurrent requests")
	fs.StringVar(&o.idsFile, "ids", "", "write every host id here (required)")
	fs.StringVar(&o.upIDsFile, "up-ids", "", "write the live hosts' ids here (required)")
	_ = fs.Parse(args)
	if o.tokenFile == "" || o.idsFile == "" || o.upIDsFile == "" {
		return errors.New("-token-file, -ids and -up-ids are required")
	}
	if o.up+o.down+o.pendingEvery+o.retired > o.hosts {
		return errors.New("-up + -down + -pending + -retired exceed -hosts")
	}
	b, err := os.ReadFile(o.tokenFile)
	if err != nil {
		return err
	}
	o.token = strings.TrimSpace(string(b))
	o.client = &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: o.workers},
	}

	start := time.Now()
	type clientRec struct{ id, slug, site1, site2 string }
	clients := make([]clientRec, o.clients)
	for i := range clients {
		var c struct{ ID, Slug string }
		name := fmt.Sprintf("Client %02d %s", i, companies[i%len(companies)])
		if err := o.post(ctx, "/api/v1/clients", map[string]any{"name": name}, &c); err != nil {
			return err
		}
		clients[i] = clientRec{id: c.ID, slug: c.Slug}
		for j, site := range []string{"Primary DC", "DR site"} {
			var s struct{ ID string }
			if err := o.post(ctx, "/api/v1/sites", map[string]any{"client_id": c.ID, "name": site, "address": cities[(i+j)%len(cities)]}, &s); err != nil {
				return err
			}
			if j == 0 {
				clients[i].site1 = s.ID
			} else {
				clients[i].site2 = s.ID
			}
		}
	}

	type job struct {
		body map[string]any
		up   bool
	}
	jobs := make(chan job)
	var (
		mu       sync.Mutex
		ids, ups []string
		firstErr error
		wg       sync.WaitGroup
	)
	for range o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				var h struct{ ID string }
				err := o.post(ctx, "/api/v1/hosts", j.body, &h)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if err == nil {
					ids = append(ids, h.ID)
					if j.up {
						ups = append(ups, h.ID)
					}
				}
				mu.Unlock()
			}
		}()
	}
	upPort, downPort := o.upBase, o.downBase
feed:
	for i, c := range clients {
		for k := range o.hosts {
			role := roles[k%len(roles)]
			env := "prod"
			if k%5 == 4 {
				env = "staging"
			}
			site := c.site1
			if k%4 == 3 {
				site = c.site2
			}
			body := map[string]any{
				"client_id": c.id,
				"site_id":   site,
				"name":      fmt.Sprintf("%s-%03d.%s.example", role, k, c.slug),
				"addresses": []string{fmt.Sprintf("10.%d.%d.%d", i, k/250, k%250+1), fmt.Sprintf("%s-%03d.%s.example", role, k, c.slug)},
				"os":        oses[k%len(oses)],
				"role":      role,
				"tags":      []string{env, "dc=" + strings.ToLower(strings.Fields(cities[i%len(cities)])[0]), "team-" + fmt.Sprint(k%7)},
				"status":    "active",
			}
			up := false
			switch {
			case k < o.up:
				body["agent_url"] = fmt.Sprintf("http://127.0.0.1:%d/metrics", upPort)
				upPort++
				up = true
			case k < o.up+o.down:
				body["agent_url"] = fmt.Sprintf("http://127.0.0.1:%d/metrics", downPort)
				downPort++
			case k < o.up+o.down+o.pendingEvery:
				body["status"] = "pending"
			case k < o.up+o.down+o.pendingEvery+o.retired:
				body["status"] = "retired"
			}
			select {
			case jobs <- job{body: body, up: up}:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := writeLines(o.idsFile, ids); err != nil {
		return err
	}
	if err := writeLines(o.upIDsFile, ups); err != nil {
		return err
	}
	fmt.Printf("seeded %d clients, %d sites, %d hosts (%d with live agents, %d on closed ports) in %.1f s\n",
		len(clients), 2*len(clients), len(ids), len(ups), o.down*o.clients, time.Since(start).Seconds())
	return nil
}

// post sends body as JSON and decodes the 201 answer into out.
func (o *options) post(ctx context.Context, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.hub+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+o.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := o.client.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, bytes.TrimSpace(rb))
	}
	if err := json.Unmarshal(rb, out); err != nil {
		return fmt.Errorf("POST %s: decoding the answer: %w", path, err)
	}
	return nil
}

func writeLines(path string, lines []string) error {
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

var (
	companies = []string{"Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell", "Cyberdyne", "Soylent"}
	cities    = []string{"Pune MIDC", "Mumbai BKC", "Bengaluru ITPL", "Chennai OMR", "Hyderabad HITEC", "Delhi Okhla"}
	roles     = []string{"web", "app", "db", "cache", "mq", "file", "mail", "ad"}
	oses      = []string{"Debian 12", "Ubuntu 22.04", "RHEL 9", "Windows Server 2022"}
)
