-- On call (internal/oncall): how to reach each user, who is on call per tier (rotas, their members
-- and overrides), and what happens when an incident is not acknowledged (escalation policies).
--
-- Same portability rules as 00001: TEXT ids, BIGINT unix milliseconds, calendar dates as TEXT
-- 'YYYY-MM-DD', JSON in TEXT, named unique indexes <table>_<columns>_key, *_fold columns
-- lower-cased by the application, flags as nullable *_at instants.
--
-- Contacts are their own table rather than columns of users: auth owns users, and a user without
-- contact details (an API-only account) simply has no row here.
--
-- Rotas and policies of a client go with the client (ON DELETE CASCADE): they configure how that
-- client's incidents are handled and mean nothing without it. Deleting a user takes them out of
-- every rota and override (CASCADE) rather than refusing the deletion: whoever has left cannot be
-- on call, and the rota goes on with the remaining members. Tiers, rota time zones and step kinds
-- are checked by the application (a new tier or kind then needs no table rebuild on SQLite).
--
-- A rota's shift length is in seconds; the hand-over time of day ('HH:MM') and the start date are
-- wall-clock values in the rota's IANA time zone, so that a hand-over at 08:00 stays at 08:00
-- across daylight-saving changes. An escalation policy's steps are JSON (wait durations in
-- seconds), always read and written with the policy. At most one policy exists per scope
-- (client or all clients, severity or any): the unique index on the expression makes "all
-- clients" (NULL) one value, which a plain unique index would not (NULLs are distinct).

-- +goose Up
CREATE TABLE user_contacts (
    user_id          TEXT   NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    email            TEXT   NOT NULL DEFAULT '',
    phone            TEXT   NOT NULL DEFAULT '', -- E.164, e.g. +919876543210
    email_enabled_at BIGINT,                     -- NULL: the user is not notified by email
    sms_enabled_at   BIGINT,                     -- NULL: the user is not notified by SMS
    updated_at       BIGINT NOT NULL
);

CREATE TABLE rotas (
    id            TEXT   NOT NULL PRIMARY KEY,
    name          TEXT   NOT NULL,
    name_fold     TEXT   NOT NULL,
    tier          TEXT   NOT NULL,
    client_id     TEXT            REFERENCES clients (id) ON DELETE CASCADE, -- NULL: all clients
    time_zone     TEXT   NOT NULL,
    handover      TEXT   NOT NULL, -- 'HH:MM' in time_zone
    shift_seconds BIGINT NOT NULL,
    start_date    TEXT   NOT NULL, -- 'YYYY-MM-DD' in time_zone: the first shift starts then at handover
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    CONSTRAINT rotas_shift_check CHECK (shift_seconds > 0)
);
CREATE UNIQUE INDEX rotas_name_fold_key ON rotas (name_fold);
CREATE INDEX rotas_tier_client_id_idx ON rotas (tier, client_id);

CREATE TABLE rota_members (
    rota_id  TEXT    NOT NULL REFERENCES rotas (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    user_id  TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (rota_id, position)
);
CREATE INDEX rota_members_user_id_idx ON rota_members (user_id);

CREATE TABLE rota_overrides (
    id         TEXT   NOT NULL PRIMARY KEY,
    rota_id    TEXT   NOT NULL REFERENCES rotas (id) ON DELETE CASCADE,
    user_id    TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    starts_at  BIGINT NOT NULL,
    ends_at    BIGINT NOT NULL,
    note       TEXT   NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL, -- the latest created override wins where overrides overlap
    updated_at BIGINT NOT NULL,
    CONSTRAINT rota_overrides_interval_check CHECK (ends_at > starts_at)
);
CREATE INDEX rota_overrides_rota_id_ends_at_idx ON rota_overrides (rota_id, ends_at);
CREATE INDEX rota_overrides_user_id_idx ON rota_overrides (user_id);

CREATE TABLE escalation_policies (
    id         TEXT   NOT NULL PRIMARY KEY,
    name       TEXT   NOT NULL,
    name_fold  TEXT   NOT NULL,
    client_id  TEXT            REFERENCES clients (id) ON DELETE CASCADE, -- NULL: all clients
    severity   TEXT   NOT NULL DEFAULT '',                                -- '': any severity
    steps      TEXT   NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX escalation_policies_name_fold_key ON escalation_policies (name_fold);
CREATE UNIQUE INDEX escalation_policies_scope_key ON escalation_policies (COALESCE(client_id, ''), severity);

-- +goose Down
DROP TABLE escalation_policies;
DROP TABLE rota_overrides;
DROP TABLE rota_members;
DROP TABLE rotas;
DROP TABLE user_contacts;
