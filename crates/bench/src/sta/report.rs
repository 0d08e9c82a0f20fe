//! The results table (Markdown, ready for BENCHMARKS.md) and the verdicts.

use crate::query::report::{met, thousands};
use crate::query::tools::Measured;

/// One request measured every way.
#[derive(Debug, Clone)]
pub struct Case {
    pub measure: String,
    /// At the fixed rate (open-loop), or closed-loop for `$count`.
    pub service: Measured,
    pub floor: Measured,
    pub service_ceiling: Option<Measured>,
    pub floor_ceiling: Option<Measured>,
    /// `None`: only "no request over 1 s" applies.
    pub rate: Option<f64>,
}

/// The targets: p99 < 50 ms at the rate, within 1.5x of the bare
/// SQL's p99, no request over 1 s, and (ours) no error and the rate kept.
pub fn verdict(c: &Case) -> (bool, String) {
    let slow = c.service.max_ms < 1_000.0;
    match c.rate {
        None => (slow && c.service.errors == 0, format!("max < 1 s: {}", met(slow && c.service.errors == 0))),
        Some(rate) => {
            let kept = c.service.rate() >= rate * 0.97 && c.service.errors == 0;
            let p99 = c.service.p99_ms < 50.0;
            let ratio = c.service.p99_ms <= 1.5 * c.floor.p99_ms;
            let all = kept && p99 && ratio && slow;
            (
                all,
                format!(
                    "rate kept {}, p99 < 50 ms {}, ≤ 1.5x SQL {}, max < 1 s {}",
                    yes(kept),
                    yes(p99),
                    yes(ratio),
                    yes(slow)
                ),
            )
        }
    }
}

fn yes(ok: bool) -> &'static str {
    if ok {
        "✓"
    } else {
        "✗"
    }
}

pub fn latency(m: &Measured) -> String {
    let errors = if m.errors > 0 { format!(", **{} errors**", m.errors) } else { String::new() };
    format!("{} req/s; p50 {:.2} / p99 {:.2} / max {:.1} ms{errors}", thousands(m.rate()), m.p50_ms, m.p99_ms, m.max_ms)
}

pub fn table(cases: &[Case]) -> String {
    let mut out = String::from(
        "| request | citygauge: achieved rate; p50 / p99 / max | CPU cores: load tool / service / machine | \
         bare SQL (pgbench): rate; p50 / p99 / max | p99 ratio | ceiling, closed-loop: citygauge / bare SQL | targets |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for c in cases {
        let ratio = if c.floor.p99_ms > 0.0 { format!("{:.2}x", c.service.p99_ms / c.floor.p99_ms) } else { "".into() };
        let ceiling = match (&c.service_ceiling, &c.floor_ceiling) {
            (Some(s), Some(f)) => format!("{} / {} req/s", thousands(s.rate()), thousands(f.rate())),
            _ => String::new(),
        };
        let (ok, detail) = verdict(c);
        out.push_str(&format!(
            "| {} | {} | {:.2} / {:.2} / {:.2} | {} | {ratio} | {ceiling} | {}: {detail} |\n",
            c.measure,
            latency(&c.service),
            c.service.tool_cores,
            c.service.service_cores,
            c.service.machine_cores,
            latency(&c.floor),
            met(ok),
        ));
    }
    out
}
