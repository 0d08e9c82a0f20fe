//! Every CAP document citygauge renders validates against the official
//! OASIS CAP 1.2 schema (tests/fixtures/CAP-v1.2.xsd) with xmllint, Update
//! and Cancel messages reference the earlier ones exactly, and the Atom feed
//! of active alerts is well-formed and has what RFC 4287 requires.
//!
//! xmllint comes from Debian's libxml2-utils. With CITYGAUGE_REQUIRE_XMLLINT=1
//! (deploy/test.sh sets it) a missing xmllint is installed or the test fails;
//! without it, the schema step is skipped with a note when xmllint is absent
//! (the parse-back checks always run).

mod cap_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use cap_support::{parse, state, Parsed, DISTRICTS, TRICKY_ZH};
use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use citygauge_alerts::model::{Certainty, Urgency};
use citygauge_alerts::{atom, cap, AlertKey, Area, Change, Message, MessageRef, MsgStatus, MsgType, RuleId, Severity};

const XSD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/CAP-v1.2.xsd");
const ATOM_RNG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/atom.rng");

fn taipei() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap()
}

fn at(h: u32, m: u32) -> DateTime<FixedOffset> {
    taipei().with_ymd_and_hms(2026, 9, 1, h, m, 0).unwrap()
}

fn message(
    alert_id: i64,
    n: u32,
    key: AlertKey,
    change: Change,
    sent: DateTime<FixedOffset>,
    earlier: &[&Message],
) -> Message {
    let sender = "citygauge.kaohsiung.example".to_string();
    let mut st = state(key.rule, 1, Severity::Moderate, Some("Sanmin"), None);
    st.sensor_id = (!key.subject.starts_with("district:")).then(|| key.subject.clone());
    Message {
        alert_id,
        identifier: format!("{sender}:{alert_id}:{n}"),
        sender,
        sender_name: "高雄市水利局 Kaohsiung Water Resources Bureau".into(),
        sent,
        status: MsgStatus::Actual,
        msg_type: MsgType::for_change(change).unwrap(),
        references: earlier
            .iter()
            .map(|m| MessageRef { sender: m.sender.clone(), identifier: m.identifier.clone(), sent: m.sent })
            .collect(),
        key,
        change,
        state: st,
    }
}

/// A river gauge's alert: raised yellow, escalated red, cleared.
fn river_chain() -> Vec<Message> {
    let key = AlertKey::sensor(RuleId::WaterLevel, "kh-wl-0001");
    let mut raised = message(7, 1, key.clone(), Change::Raised, at(8, 0), &[]);
    raised.state.area = Some(Area::Circle { lon: 120.317, lat: 22.647, radius_m: 500.0 });
    let mut escalated = message(7, 2, key.clone(), Change::Escalated, at(9, 12), &[&raised]);
    escalated.state = state(RuleId::WaterLevel, 3, Severity::Extreme, Some("Sanmin"), raised.state.area.clone());
    escalated.state.sensor_id = Some("kh-wl-0001".into());
    escalated.state.lead_time_s = Some(40 * 60);
    let mut cleared = message(7, 3, key, Change::Resolved, at(13, 45), &[&raised, &escalated]);
    cleared.state = escalated.state.clone();
    vec![raised, escalated, cleared]
}

/// One Alert per rule, cycling areas (circle, polygon, district only) and
/// statuses (Actual, Exercise, Test).
fn every_rule() -> Vec<Message> {
    RuleId::ALL
        .iter()
        .enumerate()
        .map(|(i, &rule)| {
            let district = DISTRICTS[i % DISTRICTS.len()];
            let key = match rule {
                RuleId::DistrictRainfall => AlertKey::district(rule, district),
                _ => AlertKey::sensor(rule, &format!("kh-{}-{i:04}", rule.as_str())),
            };
            let mut m = message(100 + i as i64, 1, key, Change::Raised, at(10, i as u32), &[]);
            let (lon, lat) = (120.30 + i as f64 * 0.005, 22.60 + i as f64 * 0.004);
            let area = match i % 3 {
                0 => Some(Area::Circle { lon, lat, radius_m: 250.0 + i as f64 * 100.0 }),
                1 => Some(Area::Polygon {
                    ring: vec![(lon, lat), (lon + 0.01, lat), (lon + 0.01, lat + 0.01), (lon, lat + 0.01), (lon, lat)],
                }),
                _ => None,
            };
            let severity = [Severity::Minor, Severity::Moderate, Severity::Severe, Severity::Extreme][i % 4];
            let sensor = m.state.sensor_id.clone();
            m.state = state(rule, (i % 3 + 1) as u8, severity, Some(district), area);
            m.state.sensor_id = sensor;
            m.status = [MsgStatus::Actual, MsgStatus::Exercise, MsgStatus::Test][i % 3];
            m
        })
        .collect()
}

fn xmllint() -> Option<PathBuf> {
    if std::env::var("CITYGAUGE_REQUIRE_XMLLINT").as_deref() == Ok("1") {
        let found = citygauge_stack::ensure_xmllint();
        return Some(found.expect(
            "CITYGAUGE_REQUIRE_XMLLINT=1: xmllint (Debian libxml2-utils) is missing and could not be installed",
        ));
    }
    match Command::new("xmllint").arg("--version").output() {
        Ok(out) if out.status.success() => Some(PathBuf::from("xmllint")),
        _ => {
            eprintln!("skipping the CAP schema check: xmllint (Debian libxml2-utils) is not installed; CITYGAUGE_REQUIRE_XMLLINT=1 makes it required");
            None
        }
    }
}

/// Runs xmllint over the files; `Err` carries its report.
fn lint(xmllint: &Path, schema: Option<&str>, files: &[PathBuf]) -> Result<(), String> {
    let mut cmd = Command::new(xmllint);
    cmd.arg("--noout");
    match schema {
        Some(rng) if rng.ends_with(".rng") => cmd.args(["--relaxng", rng]),
        Some(xsd) => cmd.args(["--schema", xsd]),
        None => &mut cmd,
    };
    let out = cmd.args(files).output().expect("running xmllint");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn write_all(dir: &Path, docs: &[(String, String)]) -> Vec<PathBuf> {
    docs.iter()
        .map(|(name, xml)| {
            let path = dir.join(name);
            std::fs::write(&path, xml).unwrap();
            path
        })
        .collect()
}

#[test]
fn cap_documents_validate_against_the_oasis_schema() {
    let mut messages = river_chain();
    messages.extend(every_rule());
    let mut utc = messages[0].clone();
    utc.identifier.push_str("-utc");
    utc.sent = Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap().fixed_offset();
    messages.push(utc);
    let mut docs = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let xml = cap::render_linked(m, "https://city.example/").unwrap_or_else(|e| panic!("{}: {e}", m.identifier));
        let parsed = parse(&xml);
        assert_eq!(parsed.one("alert/identifier"), m.identifier);
        assert_eq!(parsed.all("alert/info/language"), ["zh-TW", "en-US"]);
        docs.push((format!("cap-{i:02}-{}.xml", m.key.rule.as_str()), xml));
    }
    // Bare `render` (no web link) validates too.
    docs.push(("cap-unlinked.xml".into(), cap::render(&messages[1]).unwrap()));
    let Some(xmllint) = xmllint() else { return };
    let dir = citygauge_stack::throwaway_dir("cg-cap-").unwrap();
    let files = write_all(dir.path(), &docs);
    if let Err(report) = lint(&xmllint, Some(XSD), &files) {
        panic!("CAP documents do not validate against CAP-v1.2.xsd:\n{report}");
    }
    // The schema does reject what CAP forbids: a `Z` time, a missing scope.
    let good = &docs[0].1;
    let broken = [
        good.replacen("+08:00</sent>", "Z</sent>", 1),
        good.replacen("<scope>Public</scope>", "", 1),
        good.replacen("<status>Actual</status>", "<status>Real</status>", 1),
    ];
    for (i, xml) in broken.iter().enumerate() {
        assert_ne!(xml, good);
        let files = write_all(dir.path(), &[(format!("broken-{i}.xml"), xml.clone())]);
        assert!(lint(&xmllint, Some(XSD), &files).is_err(), "the schema accepted broken document {i}");
    }
}

#[test]
fn cap_update_and_cancel_reference_every_earlier_message_exactly() {
    let chain = river_chain();
    let docs: Vec<Parsed> = chain.iter().map(|m| parse(&cap::render(m).unwrap())).collect();
    assert_eq!(docs.iter().map(|d| d.one("alert/msgType")).collect::<Vec<_>>(), ["Alert", "Update", "Cancel"]);
    assert!(docs[0].all("alert/references").is_empty());
    for (i, doc) in docs.iter().enumerate().skip(1) {
        // What the earlier documents themselves say, not what the messages hold.
        let expected: Vec<String> = docs[..i]
            .iter()
            .map(|d| format!("{},{},{}", d.one("alert/sender"), d.one("alert/identifier"), d.one("alert/sent")))
            .collect();
        let references = doc.one("alert/references");
        assert_eq!(references.split(' ').collect::<Vec<_>>(), expected, "message {i}");
        // All messages of one alert share the incident.
        assert_eq!(doc.one("alert/incidents"), docs[0].one("alert/incidents"));
    }
    assert_eq!(
        docs[2].one("alert/references"),
        "citygauge.kaohsiung.example,citygauge.kaohsiung.example:7:1,2026-09-01T08:00:00+08:00 \
         citygauge.kaohsiung.example,citygauge.kaohsiung.example:7:2,2026-09-01T09:12:00+08:00"
    );
}

#[test]
fn cap_document_carries_the_alert_in_both_languages() {
    let chain = river_chain();
    let doc = parse(&cap::render_linked(&chain[1], "https://city.example").unwrap());
    assert_eq!(doc.attr("alert", "xmlns"), cap::NAMESPACE);
    assert_eq!(doc.one("alert/sent"), "2026-09-01T09:12:00+08:00");
    assert_eq!(doc.one("alert/status"), "Actual");
    assert_eq!(doc.one("alert/scope"), "Public");
    assert_eq!(doc.all("alert/info/category"), ["Geo", "Geo"]);
    assert_eq!(doc.all("alert/info/event"), ["河川水位警戒", "River water level warning"]);
    assert_eq!(doc.all("alert/info/responseType"), ["Evacuate", "Evacuate"]);
    assert_eq!(doc.all("alert/info/severity"), ["Extreme", "Extreme"]);
    assert_eq!(doc.all("alert/info/urgency"), ["Immediate", "Immediate"]);
    assert_eq!(doc.all("alert/info/effective")[0], "2026-09-01T09:12:00+08:00");
    assert_eq!(doc.all("alert/info/onset")[0], "2026-09-01T08:50:00+08:00", "the earliest evidence");
    assert_eq!(doc.all("alert/info/expires")[0], "2026-09-01T21:12:00+08:00");
    assert_eq!(
        doc.all("alert/info/headline"),
        [TRICKY_ZH.to_string(), "Red: level 1 at kh-wl-0001 & rising <fast>".into()]
    );
    assert_eq!(doc.all("alert/info/web")[0], "https://city.example/api/v1/alerts/7");
    assert_eq!(doc.all("alert/info/area/circle"), ["22.647,120.317 0.5", "22.647,120.317 0.5"]);
    assert_eq!(doc.all("alert/info/area/geocode/valueName")[0], "Taiwan_Geocode_103");
    assert_eq!(doc.all("alert/info/area/geocode/value"), ["6400500", "6400500"]);
    assert_eq!(
        doc.all("alert/info/area/areaDesc"),
        ["高雄市三民區（測站 kh-wl-0001）", "Sanmin District, Kaohsiung City (sensor kh-wl-0001)"]
    );
    let params = doc.parameters();
    for (name, value) in [("rule", "water_level"), ("grade", "3"), ("level", "level_3"), ("lead_time_min", "40")] {
        assert_eq!(params.get(name).map(String::as_str), Some(value), "{name}");
    }
    assert_eq!(params.get("detail.note").map(String::as_str), Some("a&b <c> \"d\""));
    assert!(!doc.all("alert/info/description")[0].is_empty());
}

#[test]
fn cap_cancel_is_an_all_clear_that_says_so() {
    let chain = river_chain();
    let doc = parse(&cap::render(&chain[2]).unwrap());
    assert_eq!(doc.all("alert/info/responseType"), ["AllClear", "AllClear"]);
    assert_eq!(doc.all("alert/info/urgency"), ["Past", "Past"]);
    assert_eq!(doc.all("alert/info/severity"), ["Minor", "Minor"]);
    let headlines = doc.all("alert/info/headline");
    assert!(headlines[0].starts_with("解除："), "{}", headlines[0]);
    assert!(headlines[1].starts_with("Cleared: "), "{}", headlines[1]);
    assert!(doc.all("alert/info/onset").is_empty());
    // The last state's figures stay.
    assert_eq!(doc.parameters().get("grade").map(String::as_str), Some("3"));
}

#[test]
fn cap_times_have_explicit_offsets_and_whole_seconds() {
    let mut m = river_chain().remove(0);
    m.sent = Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap().fixed_offset() + chrono::Duration::milliseconds(1500);
    let doc = parse(&cap::render(&m).unwrap());
    assert_eq!(doc.one("alert/sent"), "2026-09-01T00:00:01-00:00", "CAP writes UTC as -00:00");
    let minus = FixedOffset::west_opt(3 * 3600 + 30 * 60).unwrap().with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
    assert_eq!(cap::cap_time(&minus), "2026-01-02T03:04:05-03:30");
}

#[test]
fn cap_areas_are_lat_lon_circles_in_km_or_closed_polygons() {
    let circle = Area::Circle { lon: 120.3, lat: 22.6, radius_m: 1234.0 };
    assert_eq!(cap::area_shape(&circle).unwrap(), ("circle", "22.6,120.3 1.234".to_string()));
    let open_ring = Area::Polygon { ring: vec![(120.0, 22.0), (120.1, 22.0), (120.1, 22.1)] };
    assert_eq!(cap::area_shape(&open_ring).unwrap(), ("polygon", "22,120 22,120.1 22.1,120.1 22,120".to_string()));
    for bad in [
        Area::Polygon { ring: vec![(120.0, 22.0), (120.1, 22.0)] },
        Area::Circle { lon: 120.0, lat: 22.0, radius_m: 0.0 },
        Area::Circle { lon: f64::NAN, lat: 22.0, radius_m: 10.0 },
        Area::Circle { lon: 22.0, lat: 120.0, radius_m: 10.0 },
    ] {
        assert!(cap::area_shape(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn cap_refuses_messages_it_cannot_publish_correctly() {
    let chain = river_chain();
    let mut orphan = chain[1].clone();
    orphan.references.clear();
    assert!(cap::render(&orphan).is_err(), "an Update must reference the Alert");
    let mut spaced = chain[0].clone();
    spaced.identifier = "kh 7 1".into();
    assert!(cap::render(&spaced).is_err());
    let mut comma = chain[0].clone();
    comma.sender = "a,b".into();
    assert!(cap::render(&comma).is_err());
}

#[test]
fn cap_statuses_and_rules_carry_through() {
    for m in every_rule() {
        let doc = parse(&cap::render(&m).unwrap());
        assert_eq!(doc.one("alert/status"), m.status.as_str());
        assert_eq!(doc.all("alert/info/category")[0], m.key.rule.cap_category());
        assert_eq!(doc.parameters().get("rule").map(String::as_str), Some(m.key.rule.as_str()));
        let town = citygauge_alerts::geocode::town(m.state.district.as_deref().unwrap()).unwrap();
        assert_eq!(doc.all("alert/info/area/geocode/value")[0], town.code);
        if m.status != MsgStatus::Actual {
            assert!(!doc.all("alert/note").is_empty(), "a {:?} message says so", m.status);
        }
        assert!(m.state.urgency == Urgency::Immediate && m.state.certainty == Certainty::Observed);
    }
}

#[test]
fn atom_feed_lists_each_active_alert_once_linking_its_cap() {
    let chain = river_chain();
    let rules = every_rule();
    let latest = vec![chain[0].clone(), chain[1].clone(), rules[0].clone(), rules[4].clone()];
    let xml = atom::feed("https://city.example/", at(14, 0), &latest).unwrap();
    let doc = parse(&xml);
    assert_eq!(doc.attr("feed", "xmlns"), atom::NAMESPACE);
    assert_eq!(doc.one("feed/id"), "https://city.example/api/v1/alerts/feed.atom");
    assert!(!doc.one("feed/title").is_empty());
    assert_eq!(doc.one("feed/updated"), "2026-09-01T14:00:00+08:00");
    assert!(!doc.one("feed/author/name").is_empty());
    let links = doc.elements("feed/link");
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].get("rel").map(String::as_str), Some("self"));
    assert_eq!(links[0].get("href").map(String::as_str), Some("https://city.example/api/v1/alerts/feed.atom"));
    // Alert 7 appears once, with its latest (escalated) message; newest first.
    let ids = doc.all("feed/entry/id");
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(ids[0], format!("urn:citygauge:message:{}", rules[4].identifier));
    assert!(ids.contains(&format!("urn:citygauge:message:{}", chain[1].identifier)));
    assert!(!ids.contains(&format!("urn:citygauge:message:{}", chain[0].identifier)));
    assert_eq!(doc.all("feed/entry/updated").len(), 3);
    assert_eq!(doc.all("feed/entry/summary").len(), 3);
    let alternates: Vec<_> = doc
        .elements("feed/entry/link")
        .into_iter()
        .filter(|l| l.get("rel").map(String::as_str) == Some("alternate"))
        .collect();
    assert_eq!(alternates.len(), 3);
    assert!(alternates.iter().all(|l| l.get("type").map(String::as_str) == Some("application/cap+xml")));
    let hrefs: Vec<_> = alternates.iter().map(|l| l["href"].clone()).collect();
    assert!(hrefs.contains(&"https://city.example/api/v1/alerts/7.cap".to_string()), "{hrefs:?}");
    let river = format!("{TRICKY_ZH} / Red: level 1 at kh-wl-0001 & rising <fast>");
    assert!(doc.all("feed/entry/title").contains(&river), "escaped titles round-trip");
    assert_eq!(doc.all("feed/entry/cap:status"), ["Exercise", "Actual", "Actual"]);
    // RFC 4287's Schematron rules, which xmllint does not run: every entry
    // has an alternate link (checked above) and the feed has an author.
    assert_eq!(doc.all("feed/author/name").len(), 1);
    if let Some(xmllint) = xmllint() {
        let dir = citygauge_stack::throwaway_dir("cg-atom-").unwrap();
        let empty = atom::feed("https://city.example", at(14, 0), &[]).unwrap();
        let files = write_all(dir.path(), &[("feed.atom".into(), xml.clone()), ("empty.atom".into(), empty)]);
        if let Err(report) = lint(&xmllint, Some(ATOM_RNG), &files) {
            panic!("the Atom feed does not validate against RFC 4287's grammar:\n{report}\n{xml}");
        }
        // The grammar does reject a feed without its id.
        let broken = xml.replacen("<id>https://city.example/api/v1/alerts/feed.atom</id>", "", 1);
        assert_ne!(broken, xml);
        let files = write_all(dir.path(), &[("broken.atom".into(), broken)]);
        assert!(lint(&xmllint, Some(ATOM_RNG), &files).is_err(), "the Atom grammar accepted a feed without id");
    }
}

#[test]
fn atom_feed_without_alerts_is_still_a_feed() {
    let doc = parse(&atom::feed("https://city.example", at(14, 0), &[]).unwrap());
    assert_eq!(doc.one("feed/id"), "https://city.example/api/v1/alerts/feed.atom");
    assert!(doc.all("feed/entry/id").is_empty());
}
