package hub

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/serversage/sage/internal/inventory"
)

// meshKeyFile, in the data directory, holds the hub-wide random key that each client's mesh
// token is derived from.
const meshKeyFile = "mesh.key"

// PeersResponse is the answer to GET /api/v1/peers: the asking agent's east-west peers and the
// token its client's agents accept on their throughput endpoints.
type PeersResponse struct {
	MeshToken string `json:"mesh_token"`
	Peers     []Peer `json:"peers"`
}

// Peer is one host an agent probes east-west.
type Peer struct {
	HostID   string `json:"host_id"`
	Name     string `json:"name"`
	Address  string `json:"address"`   // the host to ping and TCP-probe
	AgentURL string `json:"agent_url"` // the agent's URL as enrolled (its /metrics)
}

// handlePeers gives an enrolled, active host the other hosts of its client at its site (no site
// being one too), and its client's mesh token. It is authenticated as enrolment is, and the
// machine is named by MachineIDHeader: a token holder learns only its own client's hosts.
func (h *Hub) handlePeers(w http.ResponseWriter, r *http.Request) {
	tok, ok := h.enrolmentToken(r)
	if !ok {
		unauthorized(w)
		return
	}
	mid := strings.TrimSpace(r.Header.Get(MachineIDHeader))
	if mid == "" {
		writeJSON(w, http.StatusBadRequest, apiError{Error: MachineIDHeader + " header is required"})
		return
	}
	hosts, err := h.inv.ListHosts(r.Context(), inventory.HostFilter{ClientID: tok.clientID, MachineID: mid})
	if err != nil {
		h.logger.Error("peers: looking up the host failed", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "host look-up failed; try again"})
		return
	}
	if len(hosts) != 1 || hosts[0].Status != inventory.StatusActive {
		// A pending host gets no token to pull from its client's machines until approved.
		writeJSON(w, http.StatusForbidden, apiError{Error: "this machine is not an active enrolled host of the token's client"})
		return
	}
	self := hosts[0]
	key, err := meshKey(h.cfg.DataDir)
	if err != nil {
		h.logger.Error("peers: the mesh key is unavailable", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "the mesh key is unavailable; try again"})
		return
	}
	hs, err := h.inv.MeshPeers(r.Context(), self.ClientID, self.SiteID, self.ID)
	if err != nil {
		h.logger.Error("peers: listing peers failed", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "peer look-up failed; try again"})
		return
	}
	out := PeersResponse{MeshToken: meshToken(key, self.ClientID), Peers: make([]Peer, 0, len(hs))}
	for _, p := range hs {
		addr := peerAddress(p)
		if addr == "" {
			continue
		}
		out.Peers = append(out.Peers, Peer{HostID: p.ID, Name: p.Name, Address: addr, AgentURL: p.AgentURL})
	}
	writeJSON(w, http.StatusOK, out)
}

// peerAddress is where a peer is pinged: the host of its agent URL, which the hub reaches it on,
// unless that is a wildcard; then its first address.
func peerAddress(h inventory.Host) string {
	if u, err := url.Parse(h.AgentURL); err == nil && u.Hostname() != "" {
		ip := net.ParseIP(u.Hostname())
		if ip == nil || !ip.IsUnspecified() {
			return u.Hostname()
		}
	}
	if len(h.Addresses) > 0 {
		return h.Addresses[0]
	}
	return ""
}

// meshToken is the client's mesh token: the same for every agent of the client (so they accept
// each other's throughput pulls), different between clients, and nothing of the key.
func meshToken(key []byte, clientID string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("sage mesh token v1\x00"))
	m.Write([]byte(clientID))
	return hex.EncodeToString(m.Sum(nil))
}

// meshKeys caches each data directory's key: it never changes while the hub runs.
var meshKeys sync.Map // data dir -> []byte

// meshKey returns the hub's mesh key, creating it at first use. Creation is a link of a fully
// written temporary file, which fails if another request (or hub on the same directory) won the
// race; the loser then reads the winner's key, so there is only ever one.
func meshKey(dataDir string) ([]byte, error) {
	if k, ok := meshKeys.Load(dataDir); ok {
		return k.([]byte), nil
	}
	path := filepath.Join(dataDir, meshKeyFile)
	key, err := readMeshKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = createMeshKey(path)
	}
	if err != nil {
		return nil, err
	}
	k, _ := meshKeys.LoadOrStore(dataDir, key)
	return k.([]byte), nil
}

func readMeshKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) < 32 {
		return nil, fmt.Errorf("%s: not a key of 64 hex digits or more; remove it to have a new one made (agents then get new mesh tokens)", path)
	}
	return key, nil
}

func createMeshKey(path string) ([]byte, error) {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails
	tmp, err := os.CreateTemp(filepath.Dir(path), meshKeyFile+".*")
	if err != nil {
		return nil, fmt.Errorf("creating the mesh key: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(key) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("writing the mesh key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readMeshKey(path)
		}
		return nil, fmt.Errorf("creating the mesh key: %w", err)
	}
	return key, nil
}
