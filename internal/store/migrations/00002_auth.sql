-- Authentication: users, browser sessions and API tokens (internal/auth).
--
-- Same portability rules as 00001: TEXT ids, BIGINT unix milliseconds, named unique indexes
-- <table>_<columns>_key, *_fold columns lower-cased by the application.
--
-- Roles are TEXT checked by the application, deliberately without a CHECK constraint: the roles
-- of a later issue (L1/L2/L3, client-scoped users) then need no table rebuild, which SQLite
-- would require to change a CHECK. client_id is that later issue's room for client-scoped users
-- and is NULL for every user for now. A flag is stored as the instant it became true (disabled_at,
-- revoked_at), NULL meaning false: no boolean type that SQLite and PostgreSQL share is needed, and
-- the instant is worth keeping.
--
-- Secrets are never stored: sessions and API tokens are 256-bit random strings, so a SHA-256 of
-- each (hex) is enough to look them up and useless to whoever reads the database; passwords are
-- bcrypt hashes.

-- +goose Up
CREATE TABLE users (
    id            TEXT   NOT NULL PRIMARY KEY,
    username      TEXT   NOT NULL,
    username_fold TEXT   NOT NULL,
    display_name  TEXT   NOT NULL DEFAULT '',
    role          TEXT   NOT NULL,
    client_id     TEXT            REFERENCES clients (id) ON DELETE RESTRICT,
    password_hash TEXT   NOT NULL,
    disabled_at   BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_username_fold_key ON users (username_fold);
CREATE INDEX users_role_idx ON users (role);

CREATE TABLE sessions (
    token_hash   TEXT   NOT NULL PRIMARY KEY,
    user_id      TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL -- absolute expiry; the idle one follows from last_seen_at
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

CREATE TABLE api_tokens (
    id           TEXT   NOT NULL PRIMARY KEY,
    user_id      TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT   NOT NULL,
    name_fold    TEXT   NOT NULL,
    token_hash   TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE UNIQUE INDEX api_tokens_token_hash_key ON api_tokens (token_hash);
CREATE UNIQUE INDEX api_tokens_user_id_name_fold_key ON api_tokens (user_id, name_fold);

-- +goose Down
DROP TABLE api_tokens;
DROP TABLE sessions;
DROP TABLE users;
