package alert

import (
	"context"
	"fmt"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// LoadGroups builds the rules manager over the current rule set without running it, so that a
// benchmark can evaluate the groups itself at chosen instants.
func (e *Engine) LoadGroups(ctx context.Context) error {
	e.mgr = e.newManager(ctx)
	if err := e.mgr.Update(e.opts.Interval, sortedKeys(e.Rules().Files), labels.EmptyLabels(), e.opts.ExternalURL.String(), nil); err != nil {
		return fmt.Errorf("alert: loading rules: %w", err)
	}
	return nil
}

// RulesQueryable is what the rules manager queries.
func (e *Engine) RulesQueryable() storage.Queryable { return e.rulesQ }
