-- Alerting: watermark overrides, incidents with their alerts and timeline, silences and
-- maintenance windows, acknowledgement links (internal/alert).
--
-- Same portability rules as 00001: TEXT ids, BIGINT unix milliseconds, JSON as TEXT, named
-- indexes, a flag stored as the nullable instant it became true.
--
-- watermark_overrides.scope_key is the override's whole scope as one string made by the
-- application ("host:<id>|mountpoint=/var"), so that "one override per alert and scope" is a plain
-- unique index: the nullable site/host/service columns would not do, as NULLs are distinct in a
-- unique index on both databases. The id columns are kept for the cascades: deleting a host deletes
-- its overrides.
--
-- incidents.open_key is the group key while the incident is open and NULL once it is resolved: a
-- unique index on it lets two hubs (or a replay after a restart) race to open the same incident and
-- have exactly one win, while any number of resolved incidents keep the same group key.

-- +goose Up
CREATE TABLE watermark_overrides (
    id         TEXT             NOT NULL PRIMARY KEY,
    alert      TEXT             NOT NULL,
    scope      TEXT             NOT NULL, -- client, site, host or service
    scope_key  TEXT             NOT NULL,
    client_id  TEXT             NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    site_id    TEXT                      REFERENCES sites (id) ON DELETE CASCADE,
    host_id    TEXT                      REFERENCES hosts (id) ON DELETE CASCADE,
    service_id TEXT                      REFERENCES services (id) ON DELETE CASCADE,
    unit_label TEXT             NOT NULL DEFAULT '',
    unit_value TEXT             NOT NULL DEFAULT '',
    value      DOUBLE PRECISION NOT NULL,
    comment    TEXT             NOT NULL DEFAULT '',
    created_by TEXT             NOT NULL DEFAULT '',
    created_at BIGINT           NOT NULL,
    updated_at BIGINT           NOT NULL
);
CREATE UNIQUE INDEX watermark_overrides_alert_scope_key_key ON watermark_overrides (alert, scope_key);
CREATE INDEX watermark_overrides_client_id_idx ON watermark_overrides (client_id);
CREATE INDEX watermark_overrides_site_id_idx ON watermark_overrides (site_id);
CREATE INDEX watermark_overrides_host_id_idx ON watermark_overrides (host_id);
CREATE INDEX watermark_overrides_service_id_idx ON watermark_overrides (service_id);

CREATE TABLE incidents (
    id              TEXT    NOT NULL PRIMARY KEY,
    group_key       TEXT    NOT NULL,
    open_key        TEXT,
    source          TEXT    NOT NULL, -- rules or alertmanager
    client_id       TEXT             REFERENCES clients (id) ON DELETE SET NULL,
    host_id         TEXT             REFERENCES hosts (id) ON DELETE SET NULL,
    alertname       TEXT    NOT NULL,
    severity        TEXT    NOT NULL DEFAULT '',
    title           TEXT    NOT NULL DEFAULT '',
    labels          TEXT    NOT NULL DEFAULT '{}',
    annotations     TEXT    NOT NULL DEFAULT '{}',
    value           TEXT    NOT NULL DEFAULT '',
    status          TEXT    NOT NULL, -- firing, acknowledged, resolved
    suppressed_by   TEXT    NOT NULL DEFAULT '', -- a silence or maintenance window id while suppressed
    planned         INTEGER NOT NULL DEFAULT 0,  -- 1 if it began inside a maintenance window
    fires           INTEGER NOT NULL DEFAULT 1,  -- 1 + the number of re-fires
    started_at      BIGINT  NOT NULL,
    last_fired_at   BIGINT  NOT NULL,
    acked_at        BIGINT,
    acked_by        TEXT    NOT NULL DEFAULT '',
    resolved_at     BIGINT,
    resolved_by     TEXT    NOT NULL DEFAULT '',
    policy_id       TEXT    NOT NULL DEFAULT '',
    esc_step        INTEGER NOT NULL DEFAULT 0,
    esc_repeats     INTEGER NOT NULL DEFAULT 0,
    esc_wait_until  BIGINT  NOT NULL DEFAULT 0,
    esc_done_at     BIGINT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    CONSTRAINT incidents_status_check CHECK (status IN ('firing', 'acknowledged', 'resolved'))
);
CREATE UNIQUE INDEX incidents_open_key_key ON incidents (open_key);
CREATE INDEX incidents_group_key_idx ON incidents (group_key, resolved_at);
CREATE INDEX incidents_status_idx ON incidents (status, started_at);
CREATE INDEX incidents_client_id_idx ON incidents (client_id, started_at);
CREATE INDEX incidents_host_id_idx ON incidents (host_id, started_at);

CREATE TABLE incident_alerts (
    incident_id TEXT   NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    fingerprint TEXT   NOT NULL,
    labels      TEXT   NOT NULL,
    annotations TEXT   NOT NULL DEFAULT '{}',
    value       TEXT   NOT NULL DEFAULT '',
    status      TEXT   NOT NULL, -- firing or resolved
    starts_at   BIGINT NOT NULL,
    ends_at     BIGINT,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (incident_id, fingerprint)
);

CREATE TABLE incident_events (
    id          TEXT   NOT NULL PRIMARY KEY,
    incident_id TEXT   NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    at          BIGINT NOT NULL,
    kind        TEXT   NOT NULL, -- fired, refired, notified, escalated, acknowledged, resolved, suppressed, ...
    actor       TEXT   NOT NULL DEFAULT '',
    detail      TEXT   NOT NULL DEFAULT '{}'
);
CREATE INDEX incident_events_incident_id_idx ON incident_events (incident_id, at);

CREATE TABLE silences (
    id          TEXT   NOT NULL PRIMARY KEY,
    kind        TEXT   NOT NULL, -- silence or maintenance
    matchers    TEXT   NOT NULL DEFAULT '[]',
    client_id   TEXT            REFERENCES clients (id) ON DELETE CASCADE,
    host_id     TEXT            REFERENCES hosts (id) ON DELETE CASCADE,
    starts_at   BIGINT NOT NULL,
    ends_at     BIGINT NOT NULL, -- for a recurring window: when the recurrence stops
    recurrence  TEXT   NOT NULL DEFAULT '', -- a cron expression for recurring windows
    duration_ms BIGINT NOT NULL DEFAULT 0,  -- each recurring window's length
    timezone    TEXT   NOT NULL DEFAULT 'UTC',
    comment     TEXT   NOT NULL DEFAULT '',
    created_by  TEXT   NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    expired_at  BIGINT,
    CONSTRAINT silences_kind_check CHECK (kind IN ('silence', 'maintenance'))
);
CREATE INDEX silences_ends_at_idx ON silences (ends_at);

CREATE TABLE ack_tokens (
    token_hash  TEXT   NOT NULL PRIMARY KEY,
    incident_id TEXT   NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    recipient   TEXT   NOT NULL DEFAULT '',
    user_id     TEXT            REFERENCES users (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX ack_tokens_incident_id_idx ON ack_tokens (incident_id);

-- +goose Down
DROP TABLE ack_tokens;
DROP TABLE silences;
DROP TABLE incident_events;
DROP TABLE incident_alerts;
DROP TABLE incidents;
DROP TABLE watermark_overrides;
