//! The CWA rainfall class table as configuration.
//!
//! Central Weather Administration classes (since 2015), grades 1..=4:
//! heavy rain 大雨 (80 mm / 24 h or 40 mm / 1 h), extremely heavy 豪雨
//! (200 mm / 24 h or 100 mm / 3 h), torrential 大豪雨 (350 mm / 24 h, and
//! 200 mm / 3 h where `torrential_3h` is on: CWA practice since about 2020),
//! extremely torrential 超大豪雨 (500 mm / 24 h).

use citygauge_domain::rain_window::Window;
use serde::{Deserialize, Serialize};

use crate::engine::debounce::Ladder;
use crate::engine::water::support;
use crate::model::Severity;
use crate::AlertError;

/// One class: the accumulations that reach it (any one suffices).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mm_1h: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mm_3h: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mm_24h: Option<f64>,
}

impl ClassRow {
    fn of(mm_1h: Option<f64>, mm_3h: Option<f64>, mm_24h: Option<f64>) -> ClassRow {
        ClassRow { mm_1h, mm_3h, mm_24h }
    }

    fn get(&self, window: Window) -> Option<f64> {
        match window {
            Window::Hour1 => self.mm_1h,
            Window::Hour3 => self.mm_3h,
            Window::Hour24 => self.mm_24h,
            Window::Min10 => None,
        }
    }
}

/// The four CWA classes, mildest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassTable {
    pub heavy: ClassRow,
    pub extremely_heavy: ClassRow,
    pub torrential: ClassRow,
    pub extremely_torrential: ClassRow,
}

impl Default for ClassTable {
    fn default() -> ClassTable {
        ClassTable {
            heavy: ClassRow::of(Some(40.0), None, Some(80.0)),
            extremely_heavy: ClassRow::of(None, Some(100.0), Some(200.0)),
            torrential: ClassRow::of(None, Some(200.0), Some(350.0)),
            extremely_torrential: ClassRow::of(None, None, Some(500.0)),
        }
    }
}

/// The windows the classes are defined on.
pub const CLASS_WINDOWS: [Window; 3] = [Window::Hour1, Window::Hour3, Window::Hour24];

/// Level names (grade 1..=4), as in `AlertState.level`.
pub const LEVELS: [&str; 4] = ["heavy_rain", "extremely_heavy_rain", "torrential_rain", "extremely_torrential_rain"];
pub const SEVERITIES: [Severity; 4] = [Severity::Moderate, Severity::Severe, Severity::Extreme, Severity::Extreme];
pub const NAMES_ZH: [&str; 4] = ["大雨", "豪雨", "大豪雨", "超大豪雨"];
pub const INSTRUCTIONS: [(&str, &str); 4] = [
    (
        "Heavy rain. Watch for water on roads and in low-lying areas; keep away from rivers and mountain areas.",
        "大雨：低窪地區及道路請注意積淹水，避免前往河邊及山區。",
    ),
    (
        "Extremely heavy rain. Flooding is likely: avoid underpasses, low-lying roads and riverbanks; beware of landslides in the hills.",
        "豪雨：請慎防淹水，避免行經地下道、低窪道路及河岸，山區慎防坍方落石。",
    ),
    (
        "Torrential rain. Serious flooding is likely: stay indoors away from low-lying areas and be ready to evacuate.",
        "大豪雨：可能發生嚴重淹水，請留在室內、遠離低窪地區，並做好撤離準備。",
    ),
    (
        "Extremely torrential rain. Severe flooding and landslides are likely: follow evacuation orders at once.",
        "超大豪雨：極可能發生嚴重淹水及坡地災害，請立即遵從撤離指示。",
    ),
];

impl ClassTable {
    fn rows(&self) -> [(&'static str, &ClassRow); 4] {
        [
            ("heavy", &self.heavy),
            ("extremely_heavy", &self.extremely_heavy),
            ("torrential", &self.torrential),
            ("extremely_torrential", &self.extremely_torrential),
        ]
    }

    pub fn validate(&self, path: &str) -> Result<(), AlertError> {
        for (name, row) in self.rows() {
            if row.mm_1h.is_none() && row.mm_3h.is_none() && row.mm_24h.is_none() {
                return Err(AlertError::invalid(format!("{path}.{name}"), "needs mm_1h, mm_3h or mm_24h"));
            }
            for (field, v) in [("mm_1h", row.mm_1h), ("mm_3h", row.mm_3h), ("mm_24h", row.mm_24h)] {
                if let Some(v) = v {
                    support::positive(&format!("{path}.{name}"), field, v)?;
                }
            }
        }
        for window in CLASS_WINDOWS {
            let field = format!("mm_{}", window.as_str());
            let fields: Vec<(String, Option<f64>)> =
                self.rows().iter().map(|(n, r)| (format!("{n}.{field}"), r.get(window))).collect();
            let refs: Vec<(&str, Option<f64>)> = fields.iter().map(|(n, v)| (n.as_str(), *v)).collect();
            support::ascending(path, &refs)?;
        }
        Ok(())
    }

    /// One ladder per class window (grades 1..=4); `torrential_3h` off drops
    /// the torrential 3 h threshold (the 2015 table).
    pub fn ladders(&self, torrential_3h: bool, margin_pct: f64) -> Vec<(Window, Ladder)> {
        CLASS_WINDOWS
            .into_iter()
            .filter_map(|w| {
                let thresholds: Vec<Option<f64>> =
                    self.rows()
                        .iter()
                        .map(|(name, row)| {
                            if *name == "torrential" && w == Window::Hour3 && !torrential_3h {
                                None
                            } else {
                                row.get(w)
                            }
                        })
                        .collect();
                let mut ladder = support::ladder(&thresholds, 0.0)?;
                let first = ladder.thresholds.iter().copied().find(|t| t.is_finite()).unwrap_or(0.0);
                ladder.margin = first * margin_pct / 100.0;
                Some((w, ladder))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use citygauge_domain::rain_window::{classify, ClassRules};
    use proptest::prelude::*;

    use super::*;

    fn grade(ladders: &[(Window, Ladder)], h1: f64, h3: f64, h24: f64) -> u8 {
        ladders
            .iter()
            .map(|(w, l)| {
                let v = match w {
                    Window::Hour1 => h1,
                    Window::Hour3 => h3,
                    _ => h24,
                };
                l.grade(v, 0)
            })
            .max()
            .unwrap_or(0)
    }

    proptest! {
        /// The default table is the CWA table of `citygauge_domain::rain_window::classify`.
        #[test]
        fn defaults_are_the_cwa_table(h1 in 0.0f64..150.0, h3 in 0.0f64..300.0, h24 in 0.0f64..700.0, t3 in any::<bool>()) {
            let ladders = ClassTable::default().ladders(t3, 10.0);
            let ours = grade(&ladders, h1, h3, h24);
            let cwa = classify(Some(h1), Some(h3), Some(h24), ClassRules { torrential_3h: t3 }) as u8;
            prop_assert_eq!(ours, cwa);
        }
    }

    #[test]
    fn the_table_must_ascend_and_name_the_field() {
        ClassTable::default().validate("rainfall.classes").unwrap();
        let mut bad = ClassTable::default();
        bad.torrential.mm_24h = Some(150.0);
        let err = bad.validate("rainfall.classes").unwrap_err().to_string();
        assert!(err.contains("rainfall.classes.torrential.mm_24h"), "{err}");
        let bad = ClassTable { heavy: ClassRow::default(), ..Default::default() };
        assert!(bad.validate("rainfall.classes").unwrap_err().to_string().contains("rainfall.classes.heavy"));
    }
}
