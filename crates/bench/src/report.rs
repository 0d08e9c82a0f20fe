//! The CPU summary printed at the end of `citygauge-bench` (and its JSON).

use std::fmt::Write;

use citygauge_bench::cpu::CpuUse;

/// One measured run: what it stored and what each process spent.
pub struct Run<'a> {
    pub name: &'static str,
    /// Readings (or rows, or messages for the broker-alone single run).
    pub items: u64,
    pub cpu: &'a CpuUse,
}

/// The columns, in order. The load generator runs in the benchmark process,
/// which is also the COPY client of the raw run and the plain subscriber of
/// the broker-alone runs: those share the last column.
const COLUMNS: [(&str, &[&str]); 4] = [
    ("daemon", &["daemon"]),
    ("postgres", &["postgres"]),
    ("broker", &["broker"]),
    ("load", &["publisher", "client", "publisher+subscriber"]),
];

fn column_us(run: &Run<'_>, names: &[&str]) -> Option<f64> {
    names.iter().find_map(|name| run.cpu.part_us(name, run.items))
}

/// A table of microseconds of CPU per stored reading, one row per run, and
/// the ratio issue 8 sets a target for (daemon per pack reading against
/// PostgreSQL per raw COPY row, at most 0.25).
pub fn cpu_table(runs: &[Run<'_>]) -> String {
    let mut out = String::from(
        "\nCPU time per stored reading (us; load = this process: publisher, COPY client or plain subscriber)\n",
    );
    let _ = write!(out, "{:<22}", "run");
    for (column, _) in COLUMNS {
        let _ = write!(out, "{column:>10}");
    }
    let _ = writeln!(out, "{:>10}", "total");
    for run in runs {
        let _ = write!(out, "{:<22}", run.name);
        let mut total = 0.0;
        for (_, names) in COLUMNS {
            match column_us(run, names) {
                Some(us) => {
                    total += us;
                    let _ = write!(out, "{us:>10.2}");
                }
                None => {
                    let _ = write!(out, "{:>10}", "-");
                }
            }
        }
        let _ = writeln!(out, "{total:>10.2}");
    }
    if let Some(ratio) = daemon_to_copy_ratio(runs) {
        let _ = writeln!(out, "daemon per pack reading / PostgreSQL per raw COPY row: {ratio:.2} (target <= 0.25)");
    }
    out
}

fn daemon_to_copy_ratio(runs: &[Run<'_>]) -> Option<f64> {
    let raw = runs.iter().find(|run| run.name == "raw binary COPY")?;
    let packs = runs.iter().find(|run| run.name == "SenML packs")?;
    let postgres = raw.cpu.part_us("postgres", raw.items).filter(|us| *us > 0.0)?;
    Some(packs.cpu.part_us("daemon", packs.items)? / postgres)
}

/// `{"runs": [{"run": ..., "items": ..., "cpu_us_per_item": {"daemon": ...}}], "daemon_to_copy_ratio": ...}`.
pub fn cpu_json(runs: &[Run<'_>]) -> serde_json::Value {
    serde_json::json!({
        "runs": runs
            .iter()
            .map(|run| serde_json::json!({
                "run": run.name,
                "items": run.items,
                "cpu_us_per_item": run.cpu.json(run.items),
            }))
            .collect::<Vec<_>>(),
        "daemon_to_copy_ratio": daemon_to_copy_ratio(runs),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_table_puts_each_process_in_its_column_and_computes_the_ratio() {
        let raw =
            CpuUse { parts: vec![("postgres", Duration::from_millis(300)), ("client", Duration::from_millis(50))] };
        let packs = CpuUse {
            parts: vec![
                ("daemon", Duration::from_millis(150)),
                ("postgres", Duration::from_millis(400)),
                ("broker", Duration::from_millis(60)),
                ("publisher", Duration::from_millis(20)),
            ],
        };
        let runs = [
            Run { name: "raw binary COPY", items: 100_000, cpu: &raw },
            Run { name: "SenML packs", items: 100_000, cpu: &packs },
        ];
        let table = cpu_table(&runs);
        let raw_line = table.lines().find(|l| l.starts_with("raw binary COPY")).unwrap();
        let cells: Vec<&str> = raw_line["raw binary COPY".len()..].split_whitespace().collect();
        assert_eq!(cells, ["-", "3.00", "-", "0.50", "3.50"], "{table}");
        let packs_line = table.lines().find(|l| l.starts_with("SenML packs")).unwrap();
        assert!(packs_line.ends_with("1.50      4.00      0.60      0.20      6.30"), "{table}");
        assert!(table.contains("raw COPY row: 0.50 (target <= 0.25)"), "{table}");
        let json = cpu_json(&runs);
        assert_eq!(json["runs"][1]["cpu_us_per_item"]["daemon"], 1.5);
        assert_eq!(json["daemon_to_copy_ratio"], 0.5);
    }
}
