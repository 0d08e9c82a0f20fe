//! CAP 1.2 documents (OASIS Common Alerting Protocol) for alert messages,
//! written with quick-xml so every text is escaped by the library, never by
//! hand.
//!
//! One [`Message`] becomes one `<alert>`: the header (identifier, sender,
//! sent with the city's explicit offset, status, msgType, `references` to
//! every earlier message of the alert) and two `<info>` blocks, `zh-TW`
//! first (Taiwan's platform shows the first block) then `en-US`, each with
//! the same area: a circle or polygon around the affected place plus the
//! district's `Taiwan_Geocode_103` town code when the district is known.
//!
//! Choices CAP leaves to the sender, made here once:
//! - `expires`: `sent` plus [`validity`] (hazards and diagnoses 12 h,
//!   maintenance 72 h, an all-clear 1 h). Consumers drop an expired alert,
//!   and the engine only re-notifies on a change of grade, so the validity
//!   is long enough to outlast a storm's plateau.
//! - `responseType`: see [`response_types`]; a Cancel is `AllClear`.
//! - A Cancel keeps the last state's figures (grade, level, value in the
//!   parameters) but says it cleared: urgency `Past`, severity `Minor`,
//!   certainty `Observed` (an all-clear is not an extreme event, and feeds
//!   that sort by severity must not show it as one), headline prefixed.

use std::io;

use chrono::{DateTime, Duration, FixedOffset};
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;
use serde_json::Value;

use crate::geocode::{self, Town};
use crate::model::{AlertState, Area, Certainty, Class, Message, MsgType, Severity, Urgency};
use crate::AlertError;

/// The CAP 1.2 XML namespace.
pub const NAMESPACE: &str = "urn:oasis:names:tc:emergency:cap:1.2";

/// The media type of a CAP document.
pub const MEDIA_TYPE: &str = "application/cap+xml";

/// The CAP 1.2 XML document for `message`, without a `web` link (use
/// [`render_linked`] where the service's public URL is known).
pub fn render(message: &Message) -> Result<String, AlertError> {
    render_doc(message, None)
}

/// The CAP 1.2 document for `message`, whose `<web>` links the alert at
/// `{base_url}/api/v1/alerts/{alert_id}`.
pub fn render_linked(message: &Message, base_url: &str) -> Result<String, AlertError> {
    render_doc(message, Some(base_url.trim_end_matches('/')))
}

/// How long a message stays in force after it is sent.
pub fn validity(message: &Message) -> Duration {
    if message.msg_type == MsgType::Cancel {
        return Duration::hours(1);
    }
    match message.key.rule.class() {
        Class::Hazard | Class::Diagnosis => Duration::hours(12),
        Class::Maintenance => Duration::hours(72),
    }
}

/// What people should do. Hazards scale with severity (Evacuate only when
/// Extreme: a red river level or the worst rain class), road flooding adds
/// Avoid; diagnoses ask the public to Monitor; maintenance needs nothing
/// from the public (None); a Cancel is AllClear.
pub fn response_types(message: &Message) -> Vec<&'static str> {
    if message.msg_type == MsgType::Cancel {
        return vec!["AllClear"];
    }
    let rule = message.key.rule;
    match rule.class() {
        Class::Maintenance => vec!["None"],
        Class::Diagnosis => vec!["Monitor"],
        Class::Hazard => {
            let mut out = vec![match message.state.severity {
                Severity::Extreme => "Evacuate",
                Severity::Severe => "Prepare",
                _ => "Monitor",
            }];
            if rule == crate::model::RuleId::RoadFlooding {
                out.push("Avoid");
            }
            out
        }
    }
}

/// A CAP 1.2 DateTime: seconds precision and an explicit numeric offset;
/// UTC is written `-00:00` as CAP 1.2 requires (never `Z` nor `+00:00`).
pub fn cap_time(fixed: &DateTime<FixedOffset>) -> String {
    let stamp = fixed.format("%Y-%m-%dT%H:%M:%S").to_string();
    let offset = fixed.offset().local_minus_utc();
    if offset == 0 {
        return format!("{stamp}-00:00");
    }
    let sign = if offset < 0 { '-' } else { '+' };
    let abs = offset.unsigned_abs();
    format!("{stamp}{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60)
}

/// `sender,identifier,sent` of each earlier message, space-separated.
pub fn references(message: &Message) -> String {
    message
        .references
        .iter()
        .map(|r| format!("{},{},{}", r.sender, r.identifier, cap_time(&r.sent)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The CAP `circle` (`lat,lon radius_km`) or `polygon` (`lat,lon` pairs,
/// closed) of an area; `Err` for one CAP could not carry.
pub fn area_shape(area: &Area) -> Result<(&'static str, String), AlertError> {
    let bad = |why: String| Err(AlertError::Document(format!("area: {why}")));
    match area {
        Area::Circle { lon, lat, radius_m } => {
            check_point(*lon, *lat)?;
            if !(radius_m.is_finite() && *radius_m > 0.0) {
                return bad(format!("circle radius {radius_m} m is not positive"));
            }
            Ok(("circle", format!("{},{} {}", coord(*lat), coord(*lon), trim(format!("{:.3}", radius_m / 1000.0)))))
        }
        Area::Polygon { ring } => {
            let mut points: Vec<(f64, f64)> = ring.clone();
            for &(lon, lat) in &points {
                check_point(lon, lat)?;
            }
            if points.first() != points.last() {
                points.push(points[0]);
            }
            if points.len() < 4 {
                return bad(format!("a polygon needs at least 3 distinct points, got {}", ring.len()));
            }
            let pairs: Vec<String> =
                points.iter().map(|&(lon, lat)| format!("{},{}", coord(lat), coord(lon))).collect();
            Ok(("polygon", pairs.join(" ")))
        }
    }
}

fn check_point(lon: f64, lat: f64) -> Result<(), AlertError> {
    if lon.is_finite() && lat.is_finite() && (-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat) {
        Ok(())
    } else {
        Err(AlertError::Document(format!("area: ({lon}, {lat}) is not a WGS 84 lon/lat")))
    }
}

/// Six decimals (about 0.1 m) without trailing zeros.
fn coord(v: f64) -> String {
    trim(format!("{v:.6}"))
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// CAP forbids spaces, commas and the restricted characters `<` and `&` in
/// identifiers and senders (they are joined into `references`).
fn check_id(field: &str, value: &str) -> Result<(), AlertError> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || matches!(c, ',' | '<' | '&')) {
        return Err(AlertError::Document(format!("{field} {value:?} is empty or has a space, comma, < or &")));
    }
    Ok(())
}

/// The district an alert names, from its state or a `district:<name>` subject.
fn district(message: &Message) -> Option<&str> {
    message.state.district.as_deref().or_else(|| message.key.subject.strip_prefix("district:"))
}

fn render_doc(message: &Message, base_url: Option<&str>) -> Result<String, AlertError> {
    check_id("identifier", &message.identifier)?;
    check_id("sender", &message.sender)?;
    for r in &message.references {
        check_id("references identifier", &r.identifier)?;
        check_id("references sender", &r.sender)?;
        if r.identifier == message.identifier {
            return Err(AlertError::Document(format!("message {} references itself", message.identifier)));
        }
    }
    if message.msg_type != MsgType::Alert && message.references.is_empty() {
        // An Update or Cancel supersedes earlier messages: without them a
        // receiver cannot tell which alert it changes.
        return Err(AlertError::Document(format!(
            "{} message {} references no earlier message",
            message.msg_type.as_str(),
            message.identifier
        )));
    }
    let shape = message.state.area.as_ref().map(area_shape).transpose()?;
    let town = district(message).and_then(geocode::town);

    let mut doc = Doc::new();
    doc.decl().map_err(io_error)?;
    write_alert(&mut doc, message, base_url, shape.as_ref(), town).map_err(io_error)?;
    doc.finish()
}

fn write_alert(
    doc: &mut Doc,
    m: &Message,
    base_url: Option<&str>,
    shape: Option<&(&'static str, String)>,
    town: Option<&Town>,
) -> io::Result<()> {
    doc.open("alert", &[("xmlns", NAMESPACE)])?;
    doc.leaf("identifier", &m.identifier)?;
    doc.leaf("sender", &m.sender)?;
    doc.leaf("sent", &cap_time(&m.sent))?;
    doc.leaf("status", m.status.as_str())?;
    doc.leaf("msgType", m.msg_type.as_str())?;
    let source = match &m.state.sensor_id {
        Some(sensor) => format!("citygauge {} rule, sensor {sensor}", m.key.rule.as_str()),
        None => format!("citygauge {} rule, {}", m.key.rule.as_str(), m.key.subject),
    };
    doc.leaf("source", &source)?;
    doc.leaf("scope", "Public")?;
    let note = match m.status {
        crate::model::MsgStatus::Exercise => Some("Exercise: a drill, not a real event. 演習訊息，非實際事件。"),
        crate::model::MsgStatus::Test => Some("Test message: disregard. 測試訊息，請勿理會。"),
        _ => None,
    };
    if let Some(note) = note {
        doc.leaf("note", note)?;
    }
    if !m.references.is_empty() {
        doc.leaf("references", &references(m))?;
    }
    // Every message of one alert shares the incident, so receivers can group them.
    doc.leaf("incidents", &format!("{}:{}", m.sender, m.alert_id))?;
    for lang in [Lang::Zh, Lang::En] {
        write_info(doc, m, lang, base_url, shape, town)?;
    }
    doc.close("alert")
}

#[derive(Clone, Copy, PartialEq)]
enum Lang {
    Zh,
    En,
}

impl Lang {
    fn pick<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }
}

fn write_info(
    doc: &mut Doc,
    m: &Message,
    lang: Lang,
    base_url: Option<&str>,
    shape: Option<&(&'static str, String)>,
    town: Option<&Town>,
) -> io::Result<()> {
    let s = &m.state;
    let cancel = m.msg_type == MsgType::Cancel;
    let (event_en, event_zh) = m.key.rule.event_name();
    doc.open("info", &[])?;
    doc.leaf("language", lang.pick("zh-TW", "en-US"))?;
    doc.leaf("category", m.key.rule.cap_category())?;
    doc.leaf("event", lang.pick(event_zh, event_en))?;
    for response in response_types(m) {
        doc.leaf("responseType", response)?;
    }
    let (urgency, severity, certainty) = if cancel {
        (Urgency::Past, Severity::Minor, Certainty::Observed)
    } else {
        (s.urgency, s.severity, s.certainty)
    };
    doc.leaf("urgency", urgency_str(urgency))?;
    doc.leaf("severity", severity.as_str())?;
    doc.leaf("certainty", certainty_str(certainty))?;
    doc.leaf("effective", &cap_time(&m.sent))?;
    if !cancel {
        // When the condition began: the earliest reading behind it.
        if let Some(first) = s.evidence.iter().map(|e| e.ts).min() {
            doc.leaf("onset", &cap_time(&first.with_timezone(m.sent.offset())))?;
        }
    }
    doc.leaf("expires", &cap_time(&(m.sent + validity(m))))?;
    doc.leaf("senderName", &m.sender_name)?;
    let headline = lang.pick(&s.headline_zh, &s.headline_en);
    let headline = fallback(headline, lang.pick(event_zh, event_en));
    if cancel {
        doc.leaf("headline", &format!("{}{headline}", lang.pick("解除：", "Cleared: ")))?;
    } else {
        doc.leaf("headline", headline)?;
    }
    let description = fallback(lang.pick(&s.description_zh, &s.description_en), headline);
    if cancel {
        let lifted = lang.pick("警戒已解除。", "The alert has been lifted.");
        doc.leaf("description", &format!("{lifted} {description}"))?;
    } else {
        doc.leaf("description", description)?;
    }
    let instruction = if cancel {
        (m.key.rule.class() == Class::Hazard).then(|| lang.pick("無須再採取防範行動。", "No further action is needed."))
    } else {
        Some(lang.pick(&s.instruction_zh, &s.instruction_en)).filter(|i| !i.trim().is_empty())
    };
    if let Some(instruction) = instruction {
        doc.leaf("instruction", instruction)?;
    }
    if let Some(base) = base_url {
        doc.leaf("web", &format!("{base}/api/v1/alerts/{}", m.alert_id))?;
    }
    for (name, value) in parameters(m) {
        doc.open("parameter", &[])?;
        doc.leaf("valueName", &name)?;
        doc.leaf("value", &value)?;
        doc.close("parameter")?;
    }
    doc.open("area", &[])?;
    doc.leaf("areaDesc", &area_desc(m, lang, town))?;
    if let Some((element, text)) = shape {
        doc.leaf(element, text)?;
    }
    if let Some(town) = town {
        doc.open("geocode", &[])?;
        doc.leaf("valueName", geocode::VALUE_NAME)?;
        doc.leaf("value", town.code)?;
        doc.close("geocode")?;
    }
    doc.close("area")?;
    doc.close("info")
}

fn fallback<'a>(text: &'a str, otherwise: &'a str) -> &'a str {
    if text.trim().is_empty() {
        otherwise
    } else {
        text
    }
}

/// Language-independent figures as `valueName`/`value` pairs (the same in
/// both info blocks): the rule, the grade and level, the figure and its
/// unit, the lead time, and the rule's scalar details (`detail.<name>`).
pub fn parameters(m: &Message) -> Vec<(String, String)> {
    let s: &AlertState = &m.state;
    let mut out = vec![
        ("rule".to_string(), m.key.rule.as_str().to_string()),
        ("subject".to_string(), m.key.subject.clone()),
        ("alert_id".to_string(), m.alert_id.to_string()),
        ("change".to_string(), m.change.as_str().to_string()),
        ("grade".to_string(), s.grade.to_string()),
        ("level".to_string(), s.level.clone()),
    ];
    if let Some(sensor) = &s.sensor_id {
        out.push(("sensor_id".into(), sensor.clone()));
    }
    if let Some(district) = district(m) {
        out.push(("district".into(), district.to_string()));
    }
    if let Some(value) = s.value.filter(|v| v.is_finite()) {
        out.push(("value".into(), trim(format!("{value:.3}"))));
        if let Some(unit) = &s.unit {
            out.push(("unit".into(), unit.clone()));
        }
    }
    if let Some(lead) = s.lead_time_s {
        out.push(("lead_time_s".into(), lead.to_string()));
        out.push(("lead_time_min".into(), (lead / 60).to_string()));
    }
    for (name, value) in &s.details {
        let text = match value {
            Value::String(t) => t.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => continue,
        };
        out.push((format!("detail.{name}"), text));
    }
    out
}

/// `高雄市三民區（測站 kh-wl-0001）` / `Sanmin District, Kaohsiung City (sensor kh-wl-0001)`.
fn area_desc(m: &Message, lang: Lang, town: Option<&Town>) -> String {
    let place = match (town, district(m)) {
        (Some(t), _) => Some(lang.pick(&t.full_zh(), &t.full_en()).to_string()),
        (None, Some(d)) => Some(match lang {
            Lang::Zh => d.to_string(),
            Lang::En => format!("{d} District"),
        }),
        (None, None) => None,
    };
    match (place, &m.state.sensor_id) {
        (Some(place), Some(sensor)) => match lang {
            Lang::Zh => format!("{place}（測站 {sensor}）"),
            Lang::En => format!("{place} (sensor {sensor})"),
        },
        (Some(place), None) => place,
        (None, Some(sensor)) => {
            lang.pick(&format!("測站 {sensor} 周邊"), &format!("Around sensor {sensor}")).to_string()
        }
        (None, None) => {
            lang.pick(&format!("{} 監測範圍", m.key.subject), &format!("Area of {}", m.key.subject)).to_string()
        }
    }
}

fn urgency_str(u: Urgency) -> &'static str {
    match u {
        Urgency::Immediate => "Immediate",
        Urgency::Expected => "Expected",
        Urgency::Future => "Future",
        Urgency::Past => "Past",
        Urgency::Unknown => "Unknown",
    }
}

fn certainty_str(c: Certainty) -> &'static str {
    match c {
        Certainty::Observed => "Observed",
        Certainty::Likely => "Likely",
        Certainty::Possible => "Possible",
        Certainty::Unlikely => "Unlikely",
        Certainty::Unknown => "Unknown",
    }
}

fn io_error(e: io::Error) -> AlertError {
    AlertError::Document(format!("writing XML: {e}"))
}

/// An indented UTF-8 XML document written event by event; quick-xml escapes
/// every text and attribute. Shared with the Atom feed.
pub(crate) struct Doc {
    writer: Writer<Vec<u8>>,
}

impl Doc {
    pub(crate) fn new() -> Doc {
        Doc { writer: Writer::new_with_indent(Vec::new(), b' ', 2) }
    }

    pub(crate) fn decl(&mut self) -> io::Result<()> {
        self.writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
    }

    pub(crate) fn open(&mut self, name: &str, attrs: &[(&str, &str)]) -> io::Result<()> {
        let start = BytesStart::new(name).with_attributes(attrs.iter().copied());
        self.writer.write_event(Event::Start(start))
    }

    pub(crate) fn close(&mut self, name: &str) -> io::Result<()> {
        self.writer.write_event(Event::End(BytesEnd::new(name)))
    }

    pub(crate) fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) -> io::Result<()> {
        let start = BytesStart::new(name).with_attributes(attrs.iter().copied());
        self.writer.write_event(Event::Empty(start))
    }

    /// `<name>text</name>`, with characters XML 1.0 cannot carry even
    /// escaped (C0 controls but tab and newlines) replaced by U+FFFD.
    pub(crate) fn leaf(&mut self, name: &str, text: &str) -> io::Result<()> {
        let clean: String = text.chars().map(|c| if xml_char(c) { c } else { '\u{FFFD}' }).collect();
        self.writer.create_element(name).write_text_content(BytesText::new(&clean))?;
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<String, AlertError> {
        let mut bytes = self.writer.into_inner();
        bytes.push(b'\n');
        String::from_utf8(bytes).map_err(|e| AlertError::Document(format!("not UTF-8: {e}")))
    }
}

fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || !(c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}')
}
