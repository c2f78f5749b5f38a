-- The inventory (the "tracking repository"): client -> site -> host -> service, and contracts.
--
-- This one file runs on SQLite and PostgreSQL alike, so it keeps to what both accept:
--   * ids are TEXT (UUIDv7 strings made by the application), never SERIAL or AUTOINCREMENT;
--   * instants are BIGINT unix milliseconds (UTC); calendar dates are TEXT 'YYYY-MM-DD', which
--     compare correctly as strings and carry no time zone;
--   * lists and maps are JSON in TEXT columns;
--   * "NOT NULL PRIMARY KEY" because SQLite lets a non-INTEGER primary key be NULL otherwise;
--   * every unique index and check constraint is named, and unique indexes are named
--     <table>_<columns>_key, which is also what SQLite's error message lets the store rebuild, so
--     a violation can be mapped to a field the same way on both (see store.AsConstraint);
--   * *_fold columns hold the name lower-cased by the application: uniqueness of names ignores
--     case identically on both, without relying on either database's collation.

-- +goose Up
CREATE TABLE clients (
    id         TEXT   NOT NULL PRIMARY KEY,
    name       TEXT   NOT NULL,
    name_fold  TEXT   NOT NULL,
    slug       TEXT   NOT NULL,
    notes      TEXT   NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX clients_name_fold_key ON clients (name_fold);
CREATE UNIQUE INDEX clients_slug_key ON clients (slug);

CREATE TABLE sites (
    id         TEXT   NOT NULL PRIMARY KEY,
    client_id  TEXT   NOT NULL REFERENCES clients (id) ON DELETE RESTRICT,
    name       TEXT   NOT NULL,
    name_fold  TEXT   NOT NULL,
    address    TEXT   NOT NULL DEFAULT '',
    notes      TEXT   NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX sites_client_id_name_fold_key ON sites (client_id, name_fold);

CREATE TABLE hosts (
    id          TEXT   NOT NULL PRIMARY KEY,
    client_id   TEXT   NOT NULL REFERENCES clients (id) ON DELETE RESTRICT,
    site_id     TEXT            REFERENCES sites (id) ON DELETE RESTRICT,
    name        TEXT   NOT NULL,
    name_fold   TEXT   NOT NULL,
    addresses   TEXT   NOT NULL DEFAULT '[]',
    os          TEXT   NOT NULL DEFAULT '',
    role        TEXT   NOT NULL DEFAULT '',
    tags        TEXT   NOT NULL DEFAULT '[]',
    facts       TEXT   NOT NULL DEFAULT '{}',
    agent_url   TEXT   NOT NULL DEFAULT '',
    status      TEXT   NOT NULL DEFAULT 'pending',
    machine_id  TEXT,
    enrolled_at BIGINT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    CONSTRAINT hosts_status_check CHECK (status IN ('pending', 'active', 'retired'))
);
CREATE UNIQUE INDEX hosts_client_id_name_fold_key ON hosts (client_id, name_fold);
-- NULLs are distinct in a unique index on both databases: hosts entered by hand have no machine id.
CREATE UNIQUE INDEX hosts_machine_id_key ON hosts (machine_id);
CREATE INDEX hosts_site_id_idx ON hosts (site_id);
CREATE INDEX hosts_name_fold_idx ON hosts (name_fold);

CREATE TABLE services (
    id              TEXT   NOT NULL PRIMARY KEY,
    host_id         TEXT   NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    type            TEXT   NOT NULL,
    name            TEXT   NOT NULL,
    name_fold       TEXT   NOT NULL,
    target          TEXT   NOT NULL DEFAULT '',
    credentials_ref TEXT   NOT NULL DEFAULT '',
    notes           TEXT   NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX services_host_id_name_fold_key ON services (host_id, name_fold);
CREATE INDEX services_type_idx ON services (type);

CREATE TABLE contracts (
    id               TEXT    NOT NULL PRIMARY KEY,
    client_id        TEXT    NOT NULL REFERENCES clients (id) ON DELETE RESTRICT,
    name             TEXT    NOT NULL,
    name_fold        TEXT    NOT NULL,
    nodes_contracted INTEGER NOT NULL,
    services         TEXT    NOT NULL DEFAULT '[]',
    rate_minor       BIGINT  NOT NULL,
    currency         TEXT    NOT NULL,
    start_date       TEXT    NOT NULL,
    end_date         TEXT,
    notes            TEXT    NOT NULL DEFAULT '',
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    CONSTRAINT contracts_nodes_check CHECK (nodes_contracted >= 0),
    CONSTRAINT contracts_rate_check CHECK (rate_minor >= 0),
    CONSTRAINT contracts_dates_check CHECK (end_date IS NULL OR end_date >= start_date)
);
CREATE UNIQUE INDEX contracts_client_id_name_fold_key ON contracts (client_id, name_fold);

-- +goose Down
DROP TABLE contracts;
DROP TABLE services;
DROP TABLE hosts;
DROP TABLE sites;
DROP TABLE clients;
