-- citygauge schema, version 1.
--
-- Public contract: dashboards, the query service and open-data consumers read
-- these names. Time-series tables are keyed by (sensor_id, ts) and store each
-- value in one canonical unit; `quality` is good / suspect / bad with the codes
-- of the checks that fired in `quality_reasons`.
--
-- `{{timeseries}}` is replaced by the migration runner: `PARTITION BY RANGE (ts)`
-- for native partitioning, nothing for TimescaleDB (which then makes each table
-- a hypertable).

CREATE EXTENSION IF NOT EXISTS postgis;

CREATE TABLE sensors (
    id              text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
    kind            text NOT NULL CHECK (kind IN ('rainfall', 'water_level', 'flood_depth', 'air_quality', 'streetlight')),
    -- water_level: river / drainage / sewer; rainfall: tipping_bucket / counter / interval.
    subkind         text,
    name            text,
    district        text,
    location        geometry(Point, 4326),
    installation    jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- e.g. {"warning_3_m": 2.0, "warning_2_m": 2.6, "warning_1_m": 3.1} for a river gauge.
    thresholds      jsonb NOT NULL DEFAULT '{}'::jsonb,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'pending', 'retired')),
    dev_eui         text UNIQUE CHECK (dev_eui ~ '^[0-9a-f]{16}$'),
    device_profile  text,
    first_seen      timestamptz,
    last_seen       timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sensors_location_idx ON sensors USING gist (location);
CREATE INDEX sensors_kind_status_idx ON sensors (kind, status);

COMMENT ON TABLE sensors IS 'The sensor registry: one row per sensor, auto-registered sensors wait as pending for an operator.';

CREATE TABLE rainfall (
    sensor_id        text NOT NULL,
    ts               timestamptz NOT NULL,
    rain_mm          double precision NOT NULL,
    interval_s       integer,
    quality          text NOT NULL DEFAULT 'good' CHECK (quality IN ('good', 'suspect', 'bad')),
    quality_reasons  text[],
    PRIMARY KEY (sensor_id, ts)
) {{timeseries}};
COMMENT ON COLUMN rainfall.rain_mm IS 'Rain that fell in the interval ending at ts, millimetres.';
COMMENT ON COLUMN rainfall.interval_s IS 'Length of that interval in seconds, when known.';

CREATE TABLE water_level (
    sensor_id        text NOT NULL,
    ts               timestamptz NOT NULL,
    level_m          double precision NOT NULL,
    quality          text NOT NULL DEFAULT 'good' CHECK (quality IN ('good', 'suspect', 'bad')),
    quality_reasons  text[],
    PRIMARY KEY (sensor_id, ts)
) {{timeseries}};
COMMENT ON COLUMN water_level.level_m IS 'Stage above the station datum, metres; river / drainage / sewer comes from sensors.subkind.';

CREATE TABLE flood_depth (
    sensor_id        text NOT NULL,
    ts               timestamptz NOT NULL,
    depth_cm         double precision NOT NULL,
    quality          text NOT NULL DEFAULT 'good' CHECK (quality IN ('good', 'suspect', 'bad')),
    quality_reasons  text[],
    PRIMARY KEY (sensor_id, ts)
) {{timeseries}};
COMMENT ON COLUMN flood_depth.depth_cm IS 'Water depth on the road surface, centimetres.';

CREATE TABLE air_quality (
    sensor_id        text NOT NULL,
    ts               timestamptz NOT NULL,
    pm2_5_ugm3       double precision,
    pm10_ugm3        double precision,
    o3_ppb           double precision,
    no2_ppb          double precision,
    co_ppm           double precision,
    so2_ppb          double precision,
    temp_c           double precision,
    rh_pct           double precision,
    quality          text NOT NULL DEFAULT 'good' CHECK (quality IN ('good', 'suspect', 'bad')),
    quality_reasons  text[],
    PRIMARY KEY (sensor_id, ts)
) {{timeseries}};

CREATE TABLE streetlight (
    sensor_id        text NOT NULL,
    ts               timestamptz NOT NULL,
    lamp_on          boolean,
    dim_pct          double precision,
    power_w          double precision,
    energy_kwh       double precision,
    voltage_v        double precision,
    current_a        double precision,
    fault            text,
    quality          text NOT NULL DEFAULT 'good' CHECK (quality IN ('good', 'suspect', 'bad')),
    quality_reasons  text[],
    PRIMARY KEY (sensor_id, ts)
) {{timeseries}};
COMMENT ON COLUMN streetlight.energy_kwh IS 'Energy meter reading (cumulative), kWh.';
COMMENT ON COLUMN streetlight.fault IS 'Vendor fault code, NULL when the lamp reports none.';

-- The last cumulative-counter value of each counter rain gauge, updated in the
-- same transaction as the rainfall rows it produced.
CREATE TABLE rain_counter_state (
    sensor_id   text PRIMARY KEY,
    ts          timestamptz NOT NULL,
    counter_mm  double precision NOT NULL
);

-- Every message (or part of one) that could not be stored, kept for inspection.
CREATE TABLE rejected_messages (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at    timestamptz NOT NULL,
    topic          text NOT NULL,
    -- The payload as sent, cut at the configured bound; payload_bytes is its full size.
    payload        bytea NOT NULL,
    payload_bytes  integer NOT NULL,
    reason         text NOT NULL,
    detail         text NOT NULL
);
CREATE INDEX rejected_messages_received_at_idx ON rejected_messages (received_at);
CREATE INDEX rejected_messages_reason_idx ON rejected_messages (reason, received_at);

-- Facts about this database the platform decided once (e.g. the time-series backend).
CREATE TABLE platform_settings (
    key    text PRIMARY KEY,
    value  text NOT NULL
);
