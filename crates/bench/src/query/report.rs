//! The results table (Markdown, ready for BENCHMARKS.md).

use super::sse::SseResult;
use super::tools::Measured;

/// One line of the table: the service's figures, the floor's, and the target.
#[derive(Debug, Clone)]
pub struct Row {
    pub measure: String,
    pub service: Option<Measured>,
    pub floor: Option<Measured>,
    /// A second floor figure shown beside the first (e.g. the raw-data SQL).
    pub note: String,
    pub verdict: String,
}

pub fn figures(m: &Measured) -> String {
    let errors = if m.errors > 0 { format!(", **{} errors**", m.errors) } else { String::new() };
    format!("{} req/s, p50 {:.2} ms, p99 {:.2} ms{errors}", thousands(m.rate()), m.p50_ms, m.p99_ms)
}

pub fn cpu(m: &Measured) -> String {
    format!("{:.2} / {:.2} / {:.2}", m.tool_cores, m.service_cores, m.machine_cores)
}

pub fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The service/floor throughput ratio.
pub fn ratio(service: &Measured, floor: &Measured) -> Option<f64> {
    (floor.rate() > 0.0).then(|| service.rate() / floor.rate())
}

pub fn met(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**not met**"
    }
}

pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| measure | citygauge query | CPU cores: wrk / service / machine | bare SQL floor (pgbench) | CPU cores: pgbench / service / machine | ratio | target |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let (service, service_cpu) =
            row.service.as_ref().map_or((String::new(), String::new()), |m| (figures(m), cpu(m)));
        let (mut floor, floor_cpu) =
            row.floor.as_ref().map_or((String::new(), String::new()), |m| (figures(m), cpu(m)));
        if !row.note.is_empty() {
            floor = if floor.is_empty() { row.note.clone() } else { format!("{floor}; {}", row.note) };
        }
        let ratio = match (&row.service, &row.floor) {
            (Some(s), Some(f)) => ratio(s, f).map_or(String::new(), |r| match r {
                r if r >= 10.0 => format!("{r:.0}x"),
                r => format!("{r:.1}x"),
            }),
            _ => String::new(),
        };
        out.push_str(&format!(
            "| {} | {service} | {service_cpu} | {floor} | {floor_cpu} | {ratio} | {} |\n",
            row.measure, row.verdict
        ));
    }
    out
}

pub fn sse(result: &SseResult) -> String {
    format!(
        "| SSE clients (each one district) | {} over {} districts |\n\
         | readings committed (Store::write, 50 ms batches) | {} at {:.0} readings/s; write p99 {:.1} ms |\n\
         | deliveries (reading x client) | {} of {} expected ({:.2} %) in {} events |\n\
         | batch built -> client: p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |\n\
         | commit returned -> client: p50 / p99 | {:.1} / {:.1} ms |\n\
         | starved / disconnected clients / wrong-district readings | {} / {} / {} |\n\
         | query service peak RSS (VmHWM) / CPU | {:.1} MB / {:.2} cores (machine {:.2}) |\n",
        result.clients,
        result.districts,
        result.readings_written,
        result.write_rate,
        result.write_p99_ms,
        result.deliveries,
        result.expected_deliveries,
        100.0 * result.deliveries as f64 / result.expected_deliveries.max(1) as f64,
        result.events,
        result.p50_ms,
        result.p99_ms,
        result.max_ms,
        result.commit_p50_ms,
        result.commit_p99_ms,
        result.starved,
        result.disconnected,
        result.wrong_district,
        result.service_rss_mb,
        result.service_cores,
        result.machine_cores,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        let service = Measured { requests: 100_000, seconds: 10.0, p50_ms: 1.0, p99_ms: 3.0, ..Measured::default() };
        let floor = Measured { requests: 500, seconds: 10.0, ..Measured::default() };
        assert_eq!(ratio(&service, &floor), Some(200.0));
        let table = table(&[Row {
            measure: "overview".into(),
            service: Some(service),
            floor: Some(floor),
            note: String::new(),
            verdict: met(true).into(),
        }]);
        assert!(table.contains("| overview | 10,000 req/s, p50 1.00 ms, p99 3.00 ms |"), "{table}");
        assert!(table.contains("| 200x | **met** |"), "{table}");
    }
}
