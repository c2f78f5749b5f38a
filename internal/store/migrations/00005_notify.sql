-- The notification outbox (internal/notify): every email, SMS and webhook call the hub decides to
-- make, from the moment it is decided (in the transaction that advances an escalation step) until
-- it is sent or given up, and afterwards as the send log and the incident timeline's "notified".
--
-- Same portability rules as 00001: TEXT ids (UUIDv7), BIGINT unix milliseconds, JSON as TEXT,
-- named indexes.
--
-- dedupe_key is unique: enqueueing the same (incident, step, recipient, channel) again is
-- INSERT ... ON CONFLICT DO NOTHING, which is how a recipient is notified of a step at most once,
-- also when a hub restarts mid-escalation or two hubs decide the same step.
--
-- next_attempt_at is when a pending row is due; while a row is 'sending' it is the end of the
-- sender's lease, after which another dispatcher may take the row over (its sender died).
-- incident_id has no foreign key: the incident tables belong to another migration, and the send
-- log stays as it was written.

-- +goose Up
CREATE TABLE notifications (
    id              TEXT    NOT NULL PRIMARY KEY,
    dedupe_key      TEXT    NOT NULL,
    incident_id     TEXT    NOT NULL,
    step            INTEGER NOT NULL,
    channel         TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    last_attempt_at BIGINT,
    last_error      TEXT    NOT NULL DEFAULT '',
    provider_ref    TEXT    NOT NULL DEFAULT '',
    created_at      BIGINT  NOT NULL,
    sent_at         BIGINT,
    CONSTRAINT notifications_status_check CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'cancelled'))
);
CREATE UNIQUE INDEX notifications_dedupe_key_key ON notifications (dedupe_key);
-- The dispatcher's claim: due rows among the few still pending or sending.
CREATE INDEX notifications_due_idx ON notifications (status, next_attempt_at);
CREATE INDEX notifications_incident_id_idx ON notifications (incident_id, created_at);
-- The send log, newest first.
CREATE INDEX notifications_created_at_idx ON notifications (created_at, id);

-- +goose Down
DROP TABLE notifications;
