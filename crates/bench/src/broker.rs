//! The broker's own limit in this run: the same load into a plain QoS 1
//! subscriber that acknowledges on receipt and stores nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use citygauge_bench::cpu::{CpuUse, Meter, Source};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, Incoming, MqttOptions};

use crate::setup::{load_config, Bench};
use crate::Args;

pub async fn limit(
    bench: &Bench,
    args: &Args,
    messages: u64,
    per_message: usize,
    senml: bool,
) -> anyhow::Result<(Duration, CpuUse)> {
    let mut options = MqttOptions::new("bench-plain-subscriber", "127.0.0.1", bench.broker.port());
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_start(true)
        .set_receive_maximum(Some(32_768))
        .set_max_packet_size(Some(4 * 1024 * 1024));
    let (client, mut events) = AsyncClient::new(options, 70_000);
    client.subscribe("city/#", QoS::AtLeastOnce).await?;
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    let poller = tokio::spawn(async move {
        let mut subscribed = Some(subscribed_tx);
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Incoming::Publish(_))) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Incoming(Incoming::SubAck(_))) => {
                    if let Some(tx) = subscribed.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    subscribed_rx.await?;
    let load = load_config(bench, args, "broker", messages, per_message, senml)?;
    let meter = Meter::start(&[
        ("broker", Source::Process(bench.broker.pid().context("the broker is not running")?)),
        // The publisher and the plain subscriber, both in this process.
        ("publisher+subscriber", Source::this_process()),
    ])?;
    let started = Instant::now();
    citygauge_sim::run_load(load, tokio_util::sync::CancellationToken::new()).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while received.load(Ordering::Relaxed) < messages {
        if Instant::now() > deadline {
            bail!("the plain subscriber got {} of {messages}", received.load(Ordering::Relaxed));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let cpu = meter.stop()?;
    let _ = client.disconnect().await;
    poller.abort();
    Ok((elapsed, cpu))
}
