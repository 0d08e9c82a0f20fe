//! What the service's MQTT publishers share (alert messages,
//! `alerting::mqtt`; SensorThings observations, `sta_mqtt`): the broker
//! address and the session options. Each publisher keeps its own loop, since
//! their delivery guarantees differ (QoS 1 from an outbox vs. QoS 0 live).

use std::time::Duration;

use rumqttc::{AsyncClient, EventLoop, MqttOptions};

use crate::QueryError;

/// First wait after a lost broker connection; doubled up to [`BACKOFF_MAX`].
pub const BACKOFF_START: Duration = Duration::from_millis(200);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Host and port of a publisher's `mqtt://host:port`, naming the option
/// when it is not one.
pub fn broker_address(option: &str, url: &str) -> Result<(String, u16), QueryError> {
    citygauge_ingest::config::parse_mqtt_url(url).map_err(|_| {
        QueryError::Config(format!("--{option} `{url}`: expected mqtt://host:port (TLS is not supported here)"))
    })
}

/// A fresh clean session to `host:port`; `name` starts the client id (made
/// unique per process and session, so two replicas never kick each other
/// off), `queue` bounds the requests waiting for the event loop.
pub fn session(name: &str, host: &str, port: u16, queue: usize) -> (AsyncClient, EventLoop) {
    let id = format!("{name}-{}-{:08x}", std::process::id(), rand::random::<u32>());
    let mut options = MqttOptions::new(id, host, port);
    options.set_keep_alive(Duration::from_secs(30)).set_clean_session(true).set_max_packet_size(1 << 20, 1 << 20);
    AsyncClient::new(options, queue)
}
