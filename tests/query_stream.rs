//! The change stream end to end: readings committed through the store's
//! writer reach the cache (and `/api/v1/sensors/{id}`) and SSE clients, with
//! their filters; `Last-Event-ID` resumes; an unknown id gets `reset`; a
//! stopping service says `shutdown`. Through the real server on a socket.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::Utc;
use citygauge_testkit::city::{self, depth, level};
use citygauge_testkit::{database, eventually, query_config, InProcessQuery};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(30);

/// One server-sent event.
#[derive(Debug, Clone, Default)]
struct Event {
    event: String,
    id: Option<String>,
    data: String,
}

impl Event {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// A minimal EventSource over HTTP/1.0 (the body is then the plain stream).
struct Sse {
    reader: BufReader<TcpStream>,
}

impl Sse {
    async fn connect(addr: SocketAddr, path: &str, last_event_id: Option<&str>) -> anyhow::Result<Sse> {
        let mut stream = TcpStream::connect(addr).await?;
        let mut request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        if let Some(id) = last_event_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).await?;
        anyhow::ensure!(status.contains(" 200 "), "stream refused: {status}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await?;
            if line.trim().is_empty() {
                break;
            }
        }
        Ok(Sse { reader })
    }

    /// The next event (comments and `retry:` skipped); `None` when the stream ended.
    async fn next(&mut self) -> anyhow::Result<Option<Event>> {
        let mut event = Event::default();
        let mut any = false;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await? == 0 {
                return Ok(None);
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if any && !event.event.is_empty() {
                    return Ok(Some(event));
                }
                event = Event::default();
                any = false;
                continue;
            }
            if let Some(v) = line.strip_prefix("event: ") {
                event.event = v.to_string();
                any = true;
            } else if let Some(v) = line.strip_prefix("id: ") {
                event.id = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("data: ") {
                event.data.push_str(v);
            }
        }
    }

    /// The next `readings` event, within the test's patience.
    async fn readings(&mut self) -> anyhow::Result<Event> {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.next().await? {
                    Some(e) if e.event == "readings" => return Ok(e),
                    Some(_) => {}
                    None => anyhow::bail!("stream ended"),
                }
            }
        })
        .await?
    }
}

fn ids(event: &Event) -> Vec<String> {
    event.json().as_array().unwrap().iter().map(|r| r["sensor_id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn committed_readings_reach_the_cache_and_filtered_streams() -> anyhow::Result<()> {
    let db = database().await?;
    let store = city::demo_city(&db.url).await?;
    let service = InProcessQuery::start(query_config(&db.url, &[])?).await?;
    let (status, before) = service.get("/api/v1/sensors/kh-wl-0001").await?;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&before)?["state"], "no_data");

    let mut yancheng = Sse::connect(service.http, "/api/v1/stream?districts=Yancheng", None).await?;
    let mut roads = Sse::connect(service.http, "/api/v1/stream?kinds=flood_depth", None).await?;
    let mut one = Sse::connect(service.http, "/api/v1/stream?sensors=kh-fd-0002", None).await?;
    let now = Utc::now();
    city::write(
        &store,
        vec![level("kh-wl-0001", now, 3.2), depth("kh-fd-0001", now, 35.0), depth("kh-fd-0002", now, 0.0)],
    )
    .await?;

    let event = yancheng.readings().await?;
    assert_eq!(ids(&event), ["kh-wl-0001"], "{}", event.data);
    let reading = &event.json()[0];
    assert_eq!((reading["level"].as_str(), reading["state"].as_str()), (Some("warning_1"), Some("ok")));
    assert_eq!(reading["values"]["level_m"], 3.2);
    assert!(event.id.as_deref().is_some_and(|id| id.contains('-')));
    let event = roads.readings().await?;
    assert_eq!(ids(&event), ["kh-fd-0001", "kh-fd-0002"], "{}", event.data);
    assert_eq!(event.json()[0]["level"], "severe");
    assert_eq!(ids(&one.readings().await?), ["kh-fd-0002"]);

    // The cache has it: the sensor route serves it from memory.
    let (_, after) = service.get("/api/v1/sensors/kh-wl-0001").await?;
    let after: Value = serde_json::from_str(&after)?;
    assert_eq!(
        (after["latest"]["values"]["level_m"].as_f64(), after["level"].as_str()),
        (Some(3.2), Some("warning_1"))
    );
    // Summaries follow within about a second (rebuilt in the background).
    citygauge_testkit::eventually("the overview to count them", WAIT, || async {
        let (_, overview) = service.get("/api/v1/overview").await?;
        let overview: Value = serde_json::from_str(&overview)?;
        Ok((overview["ingest"]["readings_last_minute"] == 3).then_some(()))
    })
    .await?;
    let metric = citygauge_testkit::metric(service.http, "citygauge_query_change_events_total").await?;
    assert_eq!(metric, 3.0);

    // An older reading arriving late does not replace the latest one.
    city::write(&store, vec![level("kh-wl-0001", now - chrono::Duration::minutes(30), 1.0)]).await?;
    assert_eq!(ids(&yancheng.readings().await?), ["kh-wl-0001"]);
    let (_, still) = service.get("/api/v1/sensors/kh-wl-0001").await?;
    assert_eq!(serde_json::from_str::<Value>(&still)?["latest"]["values"]["level_m"], 3.2);
    service.stop().await?;
    Ok(())
}

#[tokio::test]
async fn last_event_id_resumes_and_an_unknown_one_resets() -> anyhow::Result<()> {
    let db = database().await?;
    let store = city::demo_city(&db.url).await?;
    let service = InProcessQuery::start(query_config(&db.url, &[])?).await?;
    let mut client = Sse::connect(service.http, "/api/v1/stream?kinds=water_level", None).await?;
    let now = Utc::now();
    city::write(&store, vec![level("kh-wl-0002", now, 1.0)]).await?;
    let seen = client.readings().await?;
    let last_id = seen.id.clone().expect("readings carry an id");
    drop(client);

    // Missed while disconnected: one reading of another kind, one of ours.
    city::write(&store, vec![depth("kh-fd-0003", now, 1.0)]).await?;
    city::write(&store, vec![level("kh-wl-0003", now, 1.5)]).await?;
    eventually("both batches to reach the service", WAIT, || async {
        Ok((citygauge_testkit::metric(service.http, "citygauge_query_change_events_total").await? >= 3.0).then_some(()))
    })
    .await?;
    let mut resumed = Sse::connect(service.http, "/api/v1/stream?kinds=water_level", Some(&last_id)).await?;
    let replayed = resumed.readings().await?;
    assert_eq!(ids(&replayed), ["kh-wl-0003"], "only what was missed, filtered");

    let mut stranger = Sse::connect(service.http, "/api/v1/stream", Some("1-999")).await?;
    let first = tokio::time::timeout(WAIT, stranger.next()).await??.expect("an event");
    assert_eq!(first.event, "reset");
    // The reset carries the current id: reconnecting with it resumes.
    let current = first.id.expect("reset carries an id");
    city::write(&store, vec![level("kh-wl-0004", now, 1.7)]).await?;
    let mut again = Sse::connect(service.http, "/api/v1/stream?kinds=water_level", Some(&current)).await?;
    assert_eq!(ids(&again.readings().await?), ["kh-wl-0004"]);
    service.stop().await?;
    Ok(())
}

#[tokio::test]
async fn stopping_tells_stream_clients_and_finishes() -> anyhow::Result<()> {
    let db = database().await?;
    city::demo_city(&db.url).await?;
    let service = InProcessQuery::start(query_config(&db.url, &[])?).await?;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(Sse::connect(service.http, "/api/v1/stream", None).await?);
    }
    let stopping = tokio::spawn(service.stop());
    for client in &mut clients {
        let event = tokio::time::timeout(WAIT, client.next()).await??.expect("an event before the end");
        assert_eq!(event.event, "shutdown");
        assert!(tokio::time::timeout(WAIT, client.next()).await??.is_none(), "the stream ends");
    }
    stopping.await??;
    Ok(())
}

#[tokio::test]
async fn a_lost_change_stream_reconnects_rebuilds_and_resets_clients() -> anyhow::Result<()> {
    let db = database().await?;
    let store = city::demo_city(&db.url).await?;
    // The alerting tasks LISTEN on connections of their own; this test cuts the cache's.
    let service = InProcessQuery::start(query_config(&db.url, &["--alerts-disabled"])?).await?;
    let mut client = Sse::connect(service.http, "/api/v1/stream?kinds=flood_depth", None).await?;
    let admin = db.client().await?;
    let killed = admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = current_database() AND query LIKE 'LISTEN%'",
            &[],
        )
        .await?;
    assert_eq!(killed, 1, "one listening connection");
    // Written while the service may not be listening: the rebuild loads it.
    city::write(&store, vec![depth("kh-fd-0009", Utc::now(), 4.0)]).await?;
    let reset = tokio::time::timeout(WAIT, async {
        loop {
            match client.next().await? {
                Some(e) if e.event == "reset" => return anyhow::Ok(e),
                Some(_) => {}
                None => anyhow::bail!("stream ended"),
            }
        }
    })
    .await??;
    assert!(reset.id.is_some());
    eventually("the reading to be in the rebuilt cache", WAIT, || async {
        let (_, body) = service.get("/api/v1/sensors/kh-fd-0009").await?;
        Ok((serde_json::from_str::<Value>(&body)?["latest"]["values"]["depth_cm"] == 4.0).then_some(()))
    })
    .await?;
    // And the stream goes on from the new connection.
    city::write(&store, vec![depth("kh-fd-0010", Utc::now(), 2.0)]).await?;
    assert_eq!(ids(&client.readings().await?), ["kh-fd-0010"]);
    service.stop().await?;
    Ok(())
}

#[tokio::test]
async fn alerts_are_forwarded_as_they_come() -> anyhow::Result<()> {
    let db = database().await?;
    city::demo_city(&db.url).await?;
    let service = InProcessQuery::start(query_config(&db.url, &[])?).await?;
    // A district filter limits readings, not alerts: every screen sees them.
    let mut client = Sse::connect(service.http, "/api/v1/stream?districts=Sanmin", None).await?;
    let alert = r#"{"id":"al-1","severity":"severe","headline":"Road flooding at Juemin Rd underpass"}"#;
    db.client().await?.execute("SELECT pg_notify('citygauge_alerts', $1)", &[&alert]).await?;
    let event = tokio::time::timeout(WAIT, async {
        loop {
            match client.next().await? {
                Some(e) if e.event == "alert" => return anyhow::Ok(e),
                Some(_) => {}
                None => anyhow::bail!("stream ended"),
            }
        }
    })
    .await??;
    assert_eq!(event.json()["id"], "al-1");
    service.stop().await?;
    Ok(())
}
