-- Change events (internal/changelog): what agents' change monitors saw change on their hosts
-- (packages, configuration files, mounts, firewall rules, users, files, ...), shipped from each
-- agent's journal (internal/changes) and kept for the host pages, the API and Grafana annotations.
--
-- Same portability rules as 00001: TEXT ids, BIGINT unix milliseconds, JSON in TEXT, named
-- indexes. tampered is INTEGER 0/1, as incidents.planned is: the two databases share no boolean
-- type, and there is no instant worth keeping for it.
--
-- An agent numbers its journal's events and resends what the hub has not acknowledged, so the same
-- event can arrive twice (a lost answer, a restarted agent): the unique index on (host, journal,
-- seq) lets the insert ignore a duplicate (ON CONFLICT DO NOTHING on both databases). The journal
-- is the agent's random journal id: a host whose state directory was wiped numbers from 1 again
-- under a new one. Events go with their host (ON DELETE CASCADE). summary is the one-line text
-- made by the hub when the event arrives, kept so that a text search needs no JSON.

-- +goose Up
CREATE TABLE change_events (
    id          TEXT    NOT NULL PRIMARY KEY,
    host_id     TEXT    NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    journal     TEXT    NOT NULL,
    seq         BIGINT  NOT NULL,
    time        BIGINT  NOT NULL,
    kind        TEXT    NOT NULL,
    object      TEXT    NOT NULL,
    action      TEXT    NOT NULL, -- added, removed, changed
    before      TEXT    NOT NULL DEFAULT '{}',
    after       TEXT    NOT NULL DEFAULT '{}',
    diff        TEXT    NOT NULL DEFAULT '',
    files       TEXT    NOT NULL DEFAULT '[]',
    tampered    INTEGER NOT NULL DEFAULT 0,
    summary     TEXT    NOT NULL DEFAULT '',
    received_at BIGINT  NOT NULL
);
CREATE UNIQUE INDEX change_events_host_id_journal_seq_key ON change_events (host_id, journal, seq);
CREATE INDEX change_events_host_id_time_idx ON change_events (host_id, time);
CREATE INDEX change_events_time_idx ON change_events (time);

-- +goose Down
DROP TABLE change_events;
