package inventory

import (
	"context"
)

// MeshPeers returns the hosts an agent of clientID at siteID ("" for no site) probes east-west:
// the client's other hosts at the same site (also when that is no site), active, enrolled (they
// have a machine id, so an agent runs there) and with an agent URL, by name. exceptID, the
// asking host, is left out.
func (inv *Inventory) MeshPeers(ctx context.Context, clientID, siteID, exceptID string) ([]Host, error) {
	q := "SELECT " + hostCols + ` FROM hosts
		WHERE client_id = $1 AND status = $2 AND machine_id IS NOT NULL AND agent_url <> '' AND id <> $3 AND `
	args := []any{clientID, string(StatusActive), exceptID}
	if siteID == "" {
		q += "site_id IS NULL"
	} else {
		q += "site_id = $4"
		args = append(args, siteID)
	}
	rows, err := inv.db.QueryContext(ctx, q+" ORDER BY name_fold, id", args...)
	return scanAll(rows, err, scanHost, "listing mesh peers")
}
