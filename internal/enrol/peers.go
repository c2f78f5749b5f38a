package enrol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// MachineIDHeader names the asking machine in requests authenticated by the enrolment token
// (remote write, peers). The hub defines the same name (hub.MachineIDHeader; a test there checks
// they agree), which this package cannot import.
const MachineIDHeader = "Sage-Machine-Id"

// maxPeersAnswer bounds the hub's answer: 5,000 peers are about 1 MB.
const maxPeersAnswer = 8 << 20

// Peer is a host this agent probes east-west (GET /api/v1/peers).
type Peer struct {
	HostID   string `json:"host_id"`
	Name     string `json:"name"`
	Address  string `json:"address"`   // the host to ping and TCP-probe
	AgentURL string `json:"agent_url"` // the peer agent's URL as enrolled (its /metrics)
}

// Peers is the hub's answer: the peers, and the mesh token every agent of this client accepts on
// its throughput endpoint (and sends when pulling from a peer's). The token is a secret.
type Peers struct {
	MeshToken string `json:"mesh_token"`
	Peers     []Peer `json:"peers"`
}

// Peers asks the hub for this machine's east-west peers, with the enrolment token and the
// machine id it enrolled with. One attempt: the caller refreshes on its own schedule. A 4xx is a
// *HubError (403 while the host is pending approval or not enrolled yet); anything else that is
// not a valid answer is a plain error.
func (c *Client) Peers(ctx context.Context, hubURL, token, machineID string) (Peers, error) {
	u, err := url.Parse(hubURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Peers{}, fmt.Errorf("hub URL %q: must be an http:// or https:// URL with a host", hubURL)
	}
	if u.User != nil {
		return Peers{}, fmt.Errorf("hub URL %q: must not carry credentials; the token file authenticates", u.Redacted())
	}
	if strings.TrimSpace(machineID) == "" {
		return Peers{}, errors.New("asking for peers: no machine id")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.JoinPath("api/v1/peers").String(), nil)
	if err != nil {
		return Peers{}, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set(MachineIDHeader, machineID)
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Peers{}, fmt.Errorf("asking %s for peers: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxPeersAnswer+1))
	if err != nil {
		return Peers{}, fmt.Errorf("reading the hub's peers: %w", err)
	}
	if len(b) > maxPeersAnswer {
		return Peers{}, fmt.Errorf("the hub's peers answer is over %d bytes", maxPeersAnswer)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		var p Peers
		if err := json.Unmarshal(b, &p); err != nil || p.MeshToken == "" {
			return Peers{}, fmt.Errorf("the hub's answer is not a peer list: %.200q", b)
		}
		out := p.Peers[:0]
		for _, peer := range p.Peers {
			if peer.Address != "" && peer.HostID != "" {
				out = append(out, peer)
			}
		}
		p.Peers = out
		return p, nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		he := &HubError{StatusCode: resp.StatusCode}
		var ae struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &ae) == nil && ae.Error != "" {
			he.Message = ae.Error
		} else {
			he.Message = fmt.Sprintf("%.200s", strings.TrimSpace(string(b)))
		}
		return Peers{}, fmt.Errorf("asking for peers: %w", he)
	default:
		return Peers{}, fmt.Errorf("asking for peers: the hub answered %d: %.200s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
}
