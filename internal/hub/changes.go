package hub

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/serversage/sage/internal/changelog"
	"github.com/serversage/sage/internal/changes"
	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store"
)

// maxChangesBody bounds one shipment of change events: 1000 events with diffs of configuration
// files fit; an agent with more sends several batches.
const maxChangesBody = 8 << 20

// ChangesRequest is the body of POST /api/v1/changes: events of one journal of the asking agent.
type ChangesRequest struct {
	Journal string          `json:"journal"`
	Events  []changes.Event `json:"events"`
}

// ChangesResponse acknowledges a shipment: every event of the journal up to Acked is stored
// (0 for an empty batch), and the agent may drop them.
type ChangesResponse struct {
	Acked uint64 `json:"acked"`
}

// handleChanges stores change events from an enrolled, active host, authenticated as peers are:
// the enrolment token and the machine's id. The events are the named host's whatever their own
// Host field says, so a token holder can only report changes of a host of the token's client.
func (h *Hub) handleChanges(w http.ResponseWriter, r *http.Request) {
	host, ok := h.agentHost(w, r, "changes")
	if !ok {
		return
	}
	var req ChangesRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxChangesBody))
	// Unknown fields are let through: an agent newer than the hub may send more about an event,
	// and refusing the batch would hold its journal back until the hub is upgraded.
	err := dec.Decode(&req)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeJSON(w, http.StatusRequestEntityTooLarge, apiError{Error: "the body is over 8 MiB: send fewer events at once"})
			return
		}
		writeJSON(w, http.StatusBadRequest, apiError{Error: "the body is not a batch of change events: " + err.Error()})
		return
	}
	if len(req.Events) > changelog.MaxBatch {
		writeJSON(w, http.StatusRequestEntityTooLarge, apiError{Error: "too many events in one batch: send at most 1000"})
		return
	}
	acked, inserted, err := h.changes.Insert(r.Context(), host.ID, req.Journal, req.Events)
	if fe := config.FieldErrors(err); fe != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "change events refused; none were stored", Fields: fe})
		return
	}
	if errors.Is(err, changelog.ErrNotFound) {
		writeJSON(w, http.StatusForbidden, apiError{Error: "this machine is not an active enrolled host of the token's client"})
		return
	}
	if err != nil {
		if r.Context().Err() == nil {
			h.logger.Error("changes: storing events failed", "host", host.Name, "host_id", host.ID, "err", err)
		}
		if store.IsUnavailable(err) {
			w.Header().Set("Retry-After", "5")
		}
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "the events could not be stored; try again"})
		return
	}
	if inserted > 0 {
		h.logger.Debug("change events received", "host", host.Name, "host_id", host.ID, "journal", req.Journal, "new", inserted, "acked", acked)
	}
	writeJSON(w, http.StatusOK, ChangesResponse{Acked: acked})
}

// StoreChangesLocal stores change events of a host this process enrolled itself (sage up's own
// agent, which ships to its hub without HTTP), with the same validation as POST /api/v1/changes.
func (h *Hub) StoreChangesLocal(ctx context.Context, hostID, journal string, events []changes.Event) (uint64, error) {
	acked, _, err := h.changes.Insert(ctx, hostID, journal, events)
	return acked, err
}

// agentHost authenticates an agent's request by enrolment token and MachineIDHeader and returns
// its host, which must be an active host of the token's client; otherwise it answers (401, 400,
// 403, 503) and returns false. what names the endpoint in logs.
func (h *Hub) agentHost(w http.ResponseWriter, r *http.Request, what string) (inventory.Host, bool) {
	tok, ok := h.enrolmentToken(r)
	if !ok {
		unauthorized(w)
		return inventory.Host{}, false
	}
	mid := strings.TrimSpace(r.Header.Get(MachineIDHeader))
	if mid == "" {
		writeJSON(w, http.StatusBadRequest, apiError{Error: MachineIDHeader + " header is required"})
		return inventory.Host{}, false
	}
	hosts, err := h.inv.ListHosts(r.Context(), inventory.HostFilter{ClientID: tok.clientID, MachineID: mid})
	if err != nil {
		h.logger.Error(what+": looking up the host failed", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "host look-up failed; try again"})
		return inventory.Host{}, false
	}
	if len(hosts) != 1 || hosts[0].Status != inventory.StatusActive {
		writeJSON(w, http.StatusForbidden, apiError{Error: "this machine is not an active enrolled host of the token's client"})
		return inventory.Host{}, false
	}
	return hosts[0], true
}

// pruneChanges drops change events older than the configured retention; Run calls it with its
// other hourly housekeeping.
func (h *Hub) pruneChanges(ctx context.Context) {
	n, err := h.changes.Prune(ctx, time.Now().Add(-h.cfg.changesRetention))
	switch {
	case err != nil && ctx.Err() == nil:
		h.logger.Warn("pruning old change events failed", "err", err)
	case n > 0:
		h.logger.Info("pruned old change events", "deleted", n, "retention", h.cfg.changesRetention.String())
	}
}
