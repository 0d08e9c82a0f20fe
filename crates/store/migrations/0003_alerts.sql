-- citygauge schema, version 3: flood warnings.
--
-- Alerts and their full event history; the immutable messages (CAP Alert /
-- Update / Cancel) each notifying change produced, which are also the
-- durable outbox for webhooks and MQTT; webhook subscriptions and their
-- delivery log; operator tokens, silences and the rule set's history.
--
-- Public contract: the query service's alert API, the control room, Grafana
-- and the notifiers read these names.

CREATE TABLE alerts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule             text NOT NULL,
    -- A sensor id, or `district:<name>` for district rules.
    subject          text NOT NULL,
    class            text NOT NULL CHECK (class IN ('hazard', 'diagnosis', 'maintenance')),
    -- open -> acknowledged -> resolved; only `resolved` is final.
    state            text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'resolved')),
    -- CAP status carried end to end (Actual / Exercise / Test...).
    status           text NOT NULL DEFAULT 'Actual' CHECK (status IN ('Actual', 'Exercise', 'System', 'Test', 'Draft')),
    grade            smallint NOT NULL,
    level            text NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('Unknown', 'Minor', 'Moderate', 'Severe', 'Extreme')),
    sensor_id        text,
    district         text,
    -- The affected area (circle as a buffered polygon, or the polygon), for
    -- subscribers' location filters.
    area             geography(Polygon, 4326),
    -- The engine's AlertState (citygauge_alerts::AlertState) as JSON.
    details          jsonb NOT NULL,
    raised_at        timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    -- The highest grade reached while open.
    peak_grade       smallint NOT NULL,
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    ack_note         text,
    resolved_at      timestamptz,
    -- `engine` when the condition cleared, else the operator's name.
    resolved_by      text,
    resolve_reason   text,
    CHECK ((state = 'resolved') = (resolved_at IS NOT NULL))
);
-- One open alert per rule and subject.
CREATE UNIQUE INDEX alerts_one_open_idx ON alerts (rule, subject) WHERE state <> 'resolved';
CREATE INDEX alerts_state_idx ON alerts (state, raised_at DESC);
CREATE INDEX alerts_district_idx ON alerts (district, raised_at DESC);
CREATE INDEX alerts_sensor_idx ON alerts (sensor_id, raised_at DESC);
CREATE INDEX alerts_raised_at_idx ON alerts (raised_at DESC);
CREATE INDEX alerts_area_idx ON alerts USING gist (area);

CREATE TABLE alert_events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id  bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    at        timestamptz NOT NULL,
    kind      text NOT NULL CHECK (kind IN ('raised', 'escalated', 'deescalated', 'updated', 'acknowledged',
                                            'resolved', 'notified', 'suppressed', 'note', 'silenced')),
    grade     smallint,
    level     text,
    -- `engine`, or the operator (token name).
    actor     text NOT NULL DEFAULT 'engine',
    note      text,
    -- The state after the event, or the delivery it reports.
    details   jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX alert_events_alert_idx ON alert_events (alert_id, id);

-- Suppressed hazards have no alert of their own: they are kept here against
-- the health alert that suppressed them (alert_id), and in this table for
-- the subject they concern.
CREATE TABLE alert_suppressions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL,
    rule        text NOT NULL,
    subject     text NOT NULL,
    -- The health alert that made the readings suspect, when open.
    alert_id    bigint REFERENCES alerts (id) ON DELETE SET NULL,
    details     jsonb NOT NULL
);
CREATE INDEX alert_suppressions_at_idx ON alert_suppressions (at DESC);

-- Each notifying change (raise, escalate, de-escalate, resolve) as an
-- immutable message: its CAP document is rendered from `body`
-- (citygauge_alerts::Message), and it is the outbox webhooks and MQTT read.
CREATE TABLE alert_messages (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id    bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    identifier  text NOT NULL UNIQUE,
    sent        timestamptz NOT NULL,
    msg_type    text NOT NULL CHECK (msg_type IN ('Alert', 'Update', 'Cancel')),
    status      text NOT NULL CHECK (status IN ('Actual', 'Exercise', 'System', 'Test', 'Draft')),
    body        jsonb NOT NULL,
    -- Set once the MQTT notifier has published it (QoS 1, acknowledged).
    mqtt_published_at timestamptz
);
CREATE INDEX alert_messages_alert_idx ON alert_messages (alert_id, id);
CREATE INDEX alert_messages_mqtt_idx ON alert_messages (id) WHERE mqtt_published_at IS NULL;

CREATE TABLE webhook_subscriptions (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              text NOT NULL,
    url               text NOT NULL CHECK (url ~ '^https?://'),
    -- HMAC-SHA256 key, shown once at creation.
    secret            text NOT NULL,
    -- Location filter: a point and radius, and/or districts. No point and no
    -- districts: the whole city.
    center            geography(Point, 4326),
    radius_m          double precision NOT NULL DEFAULT 500 CHECK (radius_m > 0 AND radius_m <= 200000),
    districts         text[] NOT NULL DEFAULT '{}',
    -- Rule families / rules (empty: all) and the least severity delivered.
    rules             text[] NOT NULL DEFAULT '{}',
    classes           text[] NOT NULL DEFAULT '{hazard}',
    min_severity      text NOT NULL DEFAULT 'Minor' CHECK (min_severity IN ('Unknown', 'Minor', 'Moderate', 'Severe', 'Extreme')),
    -- Test and Exercise messages reach only subscribers that opted in.
    accept_test       boolean NOT NULL DEFAULT false,
    accept_exercise   boolean NOT NULL DEFAULT false,
    enabled           boolean NOT NULL DEFAULT true,
    -- Set when the subscription was disabled for failing, with why.
    disabled_at       timestamptz,
    disabled_reason   text,
    consecutive_failures integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    created_by        text NOT NULL DEFAULT 'admin'
);

-- The delivery log and queue: one row per (subscription, message), created
-- in the transaction that stored the message, so a decision is never lost
-- and never delivered twice by design (receivers dedupe on the
-- idempotency key `alert_messages.identifier`).
CREATE TABLE webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id  bigint NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    message_id       bigint NOT NULL REFERENCES alert_messages (id) ON DELETE CASCADE,
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed', 'abandoned')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status      integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    UNIQUE (subscription_id, message_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';

-- Operators and admins: bearer tokens stored as SHA-256 hashes.
CREATE TABLE operator_tokens (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL,
    role          text NOT NULL CHECK (role IN ('operator', 'admin')),
    token_sha256  bytea NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

-- Maintenance windows: no new alert of `rule` (all rules when NULL) for
-- `subject` until `until`.
CREATE TABLE alert_silences (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule        text,
    subject     text NOT NULL,
    starts_at   timestamptz NOT NULL DEFAULT now(),
    until       timestamptz NOT NULL,
    reason      text NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    cancelled_at timestamptz,
    cancelled_by text,
    CHECK (until > starts_at)
);
CREATE INDEX alert_silences_until_idx ON alert_silences (until);

-- Every rule set that was in force, newest last; the engine uses the latest.
CREATE TABLE alert_rule_sets (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rules       jsonb NOT NULL,
    changed_by  text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    note        text
);
