//! The Atom 1.0 feed (RFC 4287) of active alerts: one entry per alert, its
//! latest message, linking the CAP document as `application/cap+xml` (the
//! way national alert hubs, NCDR's included, index CAP: a feed to poll, CAP
//! documents to fetch). Entries also carry the main CAP fields as
//! `cap:` extension elements, as the OASIS CAP feed practice does, so a
//! reader can filter on status and severity without fetching every document.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, SecondsFormat};

use crate::cap::{self, Doc};
use crate::model::{Message, MsgType, Severity};
use crate::AlertError;

/// The Atom namespace.
pub const NAMESPACE: &str = "http://www.w3.org/2005/Atom";

/// The media type of the feed.
pub const MEDIA_TYPE: &str = "application/atom+xml";

/// The feed's path under the service's base URL.
pub const PATH: &str = "/api/v1/alerts/feed.atom";

/// The Atom feed whose entries are the latest message of each active alert.
/// `base_url` is the service's public URL (entries link `{base_url}/api/v1/alerts/{id}.cap`).
/// Several messages of one alert collapse to the last sent; entries are
/// newest first.
pub fn feed(base_url: &str, updated: DateTime<FixedOffset>, latest: &[Message]) -> Result<String, AlertError> {
    let base = base_url.trim_end_matches('/');
    let mut by_alert: BTreeMap<i64, &Message> = BTreeMap::new();
    for m in latest {
        let keep = by_alert.get(&m.alert_id).is_none_or(|held| held.sent <= m.sent);
        if keep {
            by_alert.insert(m.alert_id, m);
        }
    }
    let mut entries: Vec<&Message> = by_alert.into_values().collect();
    entries.sort_by(|a, b| b.sent.cmp(&a.sent).then(b.alert_id.cmp(&a.alert_id)));
    write_feed(base, updated, &entries).map_err(|e| AlertError::Document(format!("writing the Atom feed: {e}")))
}

/// `urn:citygauge:message:<identifier>`, with anything outside the URN
/// character set percent-encoded so the id is a valid IRI whatever the
/// sender's name.
pub fn entry_id(identifier: &str) -> String {
    let mut out = String::from("urn:citygauge:message:");
    for b in identifier.bytes() {
        if b.is_ascii_alphanumeric() || b"-._:~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn time(t: &DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn write_feed(base: &str, updated: DateTime<FixedOffset>, entries: &[&Message]) -> Result<String, std::io::Error> {
    let self_href = format!("{base}{PATH}");
    let mut doc = Doc::new();
    doc.decl()?;
    doc.open("feed", &[("xmlns", NAMESPACE), ("xmlns:cap", cap::NAMESPACE), ("xml:lang", "zh-TW")])?;
    doc.leaf("id", &self_href)?;
    doc.leaf("title", "citygauge 警戒 / active alerts")?;
    doc.leaf("subtitle", "CAP 1.2 alerts in force, latest message of each")?;
    doc.leaf("updated", &time(&updated))?;
    doc.open("author", &[])?;
    let author = entries.first().map(|m| m.sender_name.as_str()).filter(|n| !n.is_empty()).unwrap_or("citygauge");
    doc.leaf("name", author)?;
    doc.close("author")?;
    doc.empty("link", &[("rel", "self"), ("type", MEDIA_TYPE), ("href", &self_href)])?;
    doc.leaf("generator", "citygauge")?;
    for m in entries {
        write_entry(&mut doc, base, m)?;
    }
    doc.close("feed")?;
    doc.finish().map_err(|e| std::io::Error::other(e.to_string()))
}

fn write_entry(doc: &mut Doc, base: &str, m: &Message) -> std::io::Result<()> {
    let s = &m.state;
    let headline = |zh: &str, en: &str| match (zh.trim().is_empty(), en.trim().is_empty()) {
        (false, false) => format!("{zh} / {en}"),
        (false, true) => zh.to_string(),
        (true, false) => en.to_string(),
        (true, true) => {
            let (en, zh) = m.key.rule.event_name();
            format!("{zh} / {en}")
        }
    };
    let published = m.references.first().map(|r| r.sent).unwrap_or(m.sent);
    doc.open("entry", &[])?;
    doc.leaf("id", &entry_id(&m.identifier))?;
    doc.leaf("title", &headline(&s.headline_zh, &s.headline_en))?;
    doc.leaf("updated", &time(&m.sent))?;
    doc.leaf("published", &time(&published))?;
    doc.leaf("summary", &headline(&s.description_zh, &s.description_en))?;
    let cap_href = format!("{base}/api/v1/alerts/{}.cap", m.alert_id);
    doc.empty("link", &[("rel", "alternate"), ("type", cap::MEDIA_TYPE), ("href", &cap_href)])?;
    let json_href = format!("{base}/api/v1/alerts/{}", m.alert_id);
    doc.empty("link", &[("rel", "related"), ("type", "application/json"), ("href", &json_href)])?;
    let label = m.key.rule.event_name().0;
    doc.empty("category", &[("term", m.key.rule.as_str()), ("label", label)])?;
    doc.leaf("cap:identifier", &m.identifier)?;
    doc.leaf("cap:sent", &cap::cap_time(&m.sent))?;
    doc.leaf("cap:status", m.status.as_str())?;
    doc.leaf("cap:msgType", m.msg_type.as_str())?;
    doc.leaf("cap:event", label)?;
    // As in the CAP document: an all-clear is Minor, whatever it cleared.
    let severity = if m.msg_type == MsgType::Cancel { Severity::Minor } else { s.severity };
    doc.leaf("cap:severity", severity.as_str())?;
    if let Some(district) = &s.district {
        doc.leaf("cap:areaDesc", district)?;
    }
    doc.close("entry")
}
