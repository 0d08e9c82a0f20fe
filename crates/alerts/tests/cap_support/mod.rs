//! Helpers of the CAP tests: alert states to render, and a small reader
//! (quick-xml) that parses a rendered document back into its elements.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use citygauge_alerts::model::{Certainty, Urgency};
use citygauge_alerts::{AlertState, Area, Evidence, RuleId, Severity};
use quick_xml::events::Event;
use quick_xml::Reader;

/// The districts citygauge-sim's registry places sensors in.
pub const DISTRICTS: [&str; 18] = [
    "Sanmin", "Lingya", "Qianzhen", "Zuoying", "Gushan", "Xiaogang", "Fengshan", "Nanzi", "Gangshan", "Renwu",
    "Niaosong", "Daliao", "Xinxing", "Qianjin", "Yancheng", "Qijin", "Dashe", "Linyuan",
];

/// Chinese text with every character XML must escape.
pub const TRICKY_ZH: &str = "三民區「愛河」水位 > 一級警戒 & <注意> \"快\" 'A'";

pub fn state(rule: RuleId, grade: u8, severity: Severity, district: Option<&str>, area: Option<Area>) -> AlertState {
    let (event_en, event_zh) = rule.event_name();
    let mut details = serde_json::Map::new();
    details.insert("note".into(), "a&b <c> \"d\"".into());
    details.insert("rain_3h_mm".into(), 101.5.into());
    details.insert("nested".into(), serde_json::json!({"skipped": true}));
    let first = Utc.with_ymd_and_hms(2026, 9, 1, 0, 50, 0).unwrap();
    AlertState {
        grade,
        level: format!("level_{grade}"),
        severity,
        urgency: Urgency::Immediate,
        certainty: Certainty::Observed,
        headline_en: if rule == RuleId::WaterLevel {
            "Red: level 1 at kh-wl-0001 & rising <fast>".into()
        } else {
            format!("{event_en} & more <grade {grade}>")
        },
        headline_zh: if rule == RuleId::WaterLevel { TRICKY_ZH.into() } else { format!("{event_zh}：{TRICKY_ZH}") },
        description_en: format!("{event_en}: the reading is 3.2 m > 3.0 m & rising."),
        description_zh: format!("{event_zh}：水位 3.2 公尺 > 3.0 公尺，持續上升 & 注意。"),
        instruction_en: "Move to higher ground; avoid underpasses.".into(),
        instruction_zh: "請往高處移動，避開地下道。".into(),
        sensor_id: None,
        district: district.map(str::to_string),
        area,
        value: Some(3.2),
        unit: Some("m".into()),
        lead_time_s: Some(2400),
        evidence: vec![
            Evidence {
                sensor_id: "kh-wl-0001".into(),
                ts: first + chrono::Duration::minutes(5),
                name: "level_m".into(),
                value: 3.2,
            },
            Evidence { sensor_id: "kh-wl-0001".into(), ts: first, name: "level_m".into(), value: 3.1 },
        ],
        details,
    }
}

/// One element of a parsed document.
pub struct Element {
    pub path: String,
    pub text: String,
    pub attrs: HashMap<String, String>,
}

/// A document parsed back, element by element, in document order.
pub struct Parsed(pub Vec<Element>);

pub fn parse(xml: &str) -> Parsed {
    struct Frame {
        name: String,
        text: String,
        attrs: HashMap<String, String>,
    }
    let attrs_of = |e: &quick_xml::events::BytesStart| -> HashMap<String, String> {
        e.attributes()
            .map(|a| {
                let a = a.expect("attribute");
                (
                    a.key.as_ref().to_string(),
                    a.normalized_value(quick_xml::XmlVersion::Implicit1_0).expect("attribute value").into_owned(),
                )
            })
            .collect()
    };
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Frame> = Vec::new();
    let mut out = Vec::new();
    let path = |stack: &[Frame], name: &str| {
        let mut parts: Vec<&str> = stack.iter().map(|f| f.name.as_str()).collect();
        parts.push(name);
        parts.join("/")
    };
    loop {
        match reader.read_event().unwrap_or_else(|e| panic!("not well-formed XML: {e}\n{xml}")) {
            Event::Start(e) => {
                stack.push(Frame { name: e.name().as_ref().to_string(), text: String::new(), attrs: attrs_of(&e) })
            }
            Event::Empty(e) => {
                let name = e.name().as_ref().to_string();
                out.push(Element { path: path(&stack, &name), text: String::new(), attrs: attrs_of(&e) });
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().expect("character reference") {
                    Some(c) => c.to_string(),
                    None => quick_xml::escape::resolve_predefined_entity(&r.xml10_content())
                        .unwrap_or_else(|| panic!("unknown entity {r:?}"))
                        .to_string(),
                };
                stack.last_mut().expect("text inside an element").text.push_str(&resolved);
            }
            Event::End(_) => {
                let frame = stack.pop().expect("balanced");
                out.push(Element { path: path(&stack, &frame.name), text: frame.text, attrs: frame.attrs });
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(stack.is_empty(), "unclosed elements");
    // End events come children first; document order is by start, which for
    // the tests' purposes (same-path siblings) is preserved.
    Parsed(out)
}

impl Parsed {
    /// The texts of every element at `path` (`alert/info/headline`).
    pub fn all(&self, path: &str) -> Vec<String> {
        self.0.iter().filter(|e| e.path == path).map(|e| e.text.clone()).collect()
    }

    /// The text of the only element at `path`.
    pub fn one(&self, path: &str) -> String {
        let all = self.all(path);
        assert_eq!(all.len(), 1, "expected one {path}, found {all:?}");
        all.into_iter().next().unwrap()
    }

    pub fn attr(&self, path: &str, name: &str) -> String {
        let element = self.0.iter().find(|e| e.path == path).unwrap_or_else(|| panic!("no {path}"));
        element.attrs.get(name).cloned().unwrap_or_else(|| panic!("no {path}@{name}"))
    }

    pub fn elements(&self, path: &str) -> Vec<HashMap<String, String>> {
        self.0.iter().filter(|e| e.path == path).map(|e| e.attrs.clone()).collect()
    }

    /// The CAP parameters of the document (the same in each info block).
    pub fn parameters(&self) -> HashMap<String, String> {
        let names = self.all("alert/info/parameter/valueName");
        let values = self.all("alert/info/parameter/value");
        assert_eq!(names.len(), values.len());
        names.into_iter().zip(values).collect()
    }
}
