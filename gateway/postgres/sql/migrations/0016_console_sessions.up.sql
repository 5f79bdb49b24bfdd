-- The operator console's open sessions (gateway/api/console/sessions.py): a login adds one,
-- logging out deletes it, and a session cookie is honoured only while its row is here and
-- unexpired, whichever worker of fanout serve it reaches. Expired rows are deleted at logins.
CREATE TABLE console_sessions (
    id text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

CREATE INDEX console_sessions_expires_at ON console_sessions (expires_at);
