//! One sensor's long range at a point budget: the service, beside the same
//! buckets in bare SQL from the rollup it reads and from the raw table. Run
//! at one connection (the time one request takes on an otherwise idle
//! machine) and at the heavy-route concurrency (under load).

use std::net::SocketAddr;

use super::report::{self, met, Row};
use super::tools::{self, HttpLoad, PgTarget, Runner, SqlLoad};
use super::{floor, SeriesFacts};

pub async fn measure(
    addr: Option<SocketAddr>,
    heavy: &Runner,
    pg: &PgTarget,
    series: &SeriesFacts,
    days: u32,
) -> anyhow::Result<Vec<Row>> {
    let path = format!("/api/v1/sensors/{}/series?from=-{days}d&points=1000", series.sensor);
    let headers = vec![("Accept-Encoding".to_string(), "gzip".to_string())];
    let raw = floor::series(&series.sensor, days, series.step_s, None);
    let one = Runner { connections: 1, threads: 1, warmup_seconds: 0, ..heavy.clone() };
    let raw_run = one.sql(pg, &SqlLoad { name: "series-raw".into(), script: raw }, 1).await?;
    println!("series: raw-data SQL, one client {}", report::figures(&raw_run));
    tools::settle().await;
    let mut rows = Vec::new();
    for runner in [Runner { connections: 1, threads: 1, ..heavy.clone() }, heavy.clone()] {
        let connections = runner.connections;
        let service_run = match addr {
            Some(addr) => {
                let load = HttpLoad { name: "series".into(), paths: vec![path.clone()], headers: headers.clone() };
                Some(runner.http(addr, &load).await?)
            }
            None => None,
        };
        if let Some(run) = &service_run {
            println!("series, {connections} connections: service {}; CPU {}", report::figures(run), report::cpu(run));
            tools::settle().await;
        }
        let rollup = floor::series(&series.sensor, days, series.step_s, Some(&series.source));
        let rollup_run = runner.sql(pg, &SqlLoad { name: "series-rollup".into(), script: rollup }, connections).await?;
        println!("series, {connections} connections: bare SQL over the rollup {}", report::figures(&rollup_run));
        tools::settle().await;
        rows.push(Row {
            measure: format!(
                "one sensor's {days} days at points=1000 ({} points of {} s from `{}`), {connections} connection{}",
                series.points,
                series.step_s,
                series.source,
                if connections == 1 { "" } else { "s" }
            ),
            verdict: format!(
                "p99 < 50 ms: {}",
                met(service_run.as_ref().is_some_and(|r| r.p99_ms < 50.0 && r.errors == 0))
            ),
            service: service_run,
            floor: Some(rollup_run),
            note: if connections == 1 {
                format!(
                    "raw-data SQL (date_bin over {} rows), one client: p50 {:.0} ms, p99 {:.0} ms",
                    series.raw_rows, raw_run.p50_ms, raw_run.p99_ms
                )
            } else {
                String::new()
            },
        });
    }
    Ok(rows)
}
