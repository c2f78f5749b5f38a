-- Hosts are listed by (name_fold, id): an index in that order lets both databases read a page
-- straight from the index, where the name_fold index alone left the tie-breaking id to a sort of
-- every matching row (measured: BenchmarkListHostsPage, docs/benchmarks.md).

-- +goose Up
CREATE INDEX hosts_name_fold_id_idx ON hosts (name_fold, id);
DROP INDEX hosts_name_fold_idx;

-- +goose Down
CREATE INDEX hosts_name_fold_idx ON hosts (name_fold);
DROP INDEX hosts_name_fold_id_idx;
