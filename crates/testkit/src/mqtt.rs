//! A broker and a publisher for tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use citygauge_stack::{throwaway_dir, Mosquitto, MosquittoOptions};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, Incoming, MqttOptions};

use crate::toolchain;

/// A Mosquitto of the test's own, with persistence, in a throwaway directory.
#[derive(Debug)]
pub struct Broker {
    pub mosquitto: Mosquitto,
    _dir: tempfile::TempDir,
}

impl Broker {
    pub async fn start() -> anyhow::Result<Broker> {
        let toolchain = toolchain()?;
        let dir = throwaway_dir("citygauge-test-mqtt-")?;
        let data = dir.path().join("mqtt");
        let mosquitto =
            tokio::task::spawn_blocking(move || Mosquitto::start(toolchain, MosquittoOptions::new(data))).await??;
        Ok(Broker { mosquitto, _dir: dir })
    }

    pub fn url(&self) -> String {
        self.mosquitto.url()
    }

    pub fn port(&self) -> u16 {
        self.mosquitto.port()
    }
}

/// Publishes at QoS 1 and counts the broker's PUBACKs: a message the broker
/// acknowledged is one the platform must store.
#[derive(Debug)]
pub struct Publisher {
    client: AsyncClient,
    acked: Arc<AtomicU64>,
    published: u64,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    pub async fn connect(port: u16, client_id: &str) -> anyhow::Result<Publisher> {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(10))
            .set_clean_start(false)
            .set_session_expiry_interval(Some(3600))
            .set_max_packet_size(Some(4 * 1024 * 1024))
            .set_outgoing_inflight_upper_limit(1000);
        let (client, mut events) = AsyncClient::new(options, 10_000);
        let acked = Arc::new(AtomicU64::new(0));
        let counter = acked.clone();
        // rumqttc retransmits unacknowledged publishes after a reconnect.
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Incoming::PubAck(_))) => {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Ok(Publisher { client, acked, published: 0, task })
    }

    pub async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>) -> anyhow::Result<()> {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload.into()).await?;
        self.published += 1;
        Ok(())
    }

    pub fn published(&self) -> u64 {
        self.published
    }

    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits until the broker has acknowledged everything published.
    pub async fn wait_acked(&self, timeout: Duration) -> anyhow::Result<()> {
        let want = self.published;
        crate::eventually("the broker to acknowledge every publish", timeout, || async {
            Ok((self.acked() >= want).then_some(()))
        })
        .await
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}
