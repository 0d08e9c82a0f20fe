//! Sensors the registry does not know: `unknown_sensors = pending` registers
//! them as `pending` for an operator, up to `max_pending_sensors` pending
//! sensors; `reject` refuses their readings (`unknown_sensor`). Past the cap
//! a new id is refused (`pending_sensors_full`) and not registered, so no
//! number of new ids (one SenML pack can name thousands) grows the registry
//! without bound.

use crate::FastHashMap as HashMap;

use chrono::{DateTime, Duration, Utc};

use crate::kind::Kind;
use crate::registry::Registry;
use crate::DomainError;

/// What happens to a reading for a sensor the registry does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownSensors {
    /// Kept, and the sensor registered as `pending` (within the cap).
    #[default]
    Pending,
    /// Refused, reason `unknown_sensor`: only registered sensors write.
    Reject,
}

/// Pending sensors a registry may hold by default: plenty for a new batch of
/// devices an operator has yet to confirm, few enough to stay small.
pub const DEFAULT_MAX_PENDING_SENSORS: usize = 1_000;

/// How long a registration this normaliser made may wait to appear in the
/// registry before it stops holding a place under the cap: one the database
/// refused (a data error, set aside) must not hold it forever. A
/// registration forgotten too early is only sent again (a no-op) and counted
/// again.
const UNCONFIRMED_TTL: Duration = Duration::minutes(10);

/// Sensors this normaliser registered that the registry does not know yet.
#[derive(Debug, Default)]
pub(super) struct PendingSensors {
    /// Kind, and the receipt time of the reading that registered it.
    unconfirmed: HashMap<String, (Kind, DateTime<Utc>)>,
    /// When expired registrations were last dropped (by receipt time).
    expired_at: Option<DateTime<Utc>>,
}

impl PendingSensors {
    pub(super) fn kind_of(&self, id: &str) -> Option<Kind> {
        self.unconfirmed.get(id).map(|(kind, _)| *kind)
    }

    /// Forgets the registrations the registry now holds.
    pub(super) fn confirmed(&mut self, registry: &Registry) {
        self.unconfirmed.retain(|id, _| registry.get(id).is_none());
    }

    /// Pending sensors known: held by the registry, or registered here and
    /// on their way to it.
    pub(super) fn count(&self, registry: &Registry) -> usize {
        registry.pending_count() + self.unconfirmed.len()
    }

    /// Admits `id`, unknown to the registry, as a new pending sensor, or says
    /// why not.
    pub(super) fn admit(
        &mut self,
        id: &str,
        kind: Kind,
        received_at: DateTime<Utc>,
        registry: &Registry,
        policy: UnknownSensors,
        max_pending: usize,
    ) -> Result<(), DomainError> {
        if policy == UnknownSensors::Reject {
            return Err(DomainError::UnknownSensor(id.to_string()));
        }
        if self.count(registry) >= max_pending {
            self.expire(received_at);
            if self.count(registry) >= max_pending {
                return Err(DomainError::PendingSensorsFull { sensor_id: id.to_string(), max: max_pending });
            }
        }
        self.unconfirmed.insert(id.to_string(), (kind, received_at));
        Ok(())
    }

    /// Drops registrations older than [`UNCONFIRMED_TTL`]; at most once a
    /// second, as a flood of new ids at the cap would otherwise scan the map
    /// for every one of them.
    fn expire(&mut self, now: DateTime<Utc>) {
        if self.expired_at.is_some_and(|at| now - at < Duration::seconds(1) && at <= now) {
            return;
        }
        self.expired_at = Some(now);
        self.unconfirmed.retain(|_, (_, at)| now - *at < UNCONFIRMED_TTL);
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;
    use crate::registry::{RegistryEntry, SensorStatus};
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-11-22T00:00:00Z".parse().unwrap()
    }

    fn registry() -> Registry {
        let river = SensorInfo::new("kh-wl-0001", Kind::WaterLevel, SensorStatus::Active);
        let waiting = SensorInfo::new("kh-wl-0500", Kind::WaterLevel, SensorStatus::Pending);
        let old = SensorInfo::new("kh-wl-0099", Kind::WaterLevel, SensorStatus::Retired);
        Registry::new([river, waiting, old])
    }

    fn normaliser(unknown_sensors: UnknownSensors, max_pending_sensors: usize) -> Normaliser {
        Normaliser::new(NormaliseConfig { unknown_sensors, max_pending_sensors, ..NormaliseConfig::default() })
    }

    fn level(n: &mut Normaliser, registry: &Registry, id: &str) -> Decoded {
        let payload = json!({"ts": now().to_rfc3339(), "level_m": 2.0}).to_string();
        let topic = format!("city/water_level/{id}");
        let msg = Message { topic: &topic, payload: payload.as_bytes(), received_at: now(), content_type: None };
        n.normalise(&msg, registry)
    }

    fn reason(decoded: &Decoded) -> Option<&'static str> {
        decoded.rejection.as_ref().map(|r| r.reason.as_str())
    }

    fn ids(decoded: &Decoded) -> Vec<&str> {
        decoded.new_sensors.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn the_reject_policy_refuses_unknown_sensors_and_keeps_known_ones() {
        let registry = registry();
        let mut n = normaliser(UnknownSensors::Reject, 1_000);
        let out = level(&mut n, &registry, "kh-wl-0777");
        assert_eq!(reason(&out), Some("unknown_sensor"));
        assert!(out.readings.is_empty() && out.new_sensors.is_empty());
        assert!(out.rejection.unwrap().detail.contains("kh-wl-0777"));
        // Registered sensors, pending ones included, still write; retired ones keep their reason.
        for id in ["kh-wl-0001", "kh-wl-0500"] {
            let out = level(&mut n, &registry, id);
            assert_eq!((reason(&out), out.readings.len()), (None, 1), "{id}");
        }
        assert_eq!(reason(&level(&mut n, &registry, "kh-wl-0099")), Some("retired_sensor"));
        // A pack: the known sensor's record is kept, the unknown one refused.
        let pack = r#"[{"bn": "kh-wl-0001/", "n": "level", "v": 2}, {"bn": "kh-wl-0778/", "n": "level", "v": 3}]"#;
        let msg =
            Message { topic: "city/senml/gw-1", payload: pack.as_bytes(), received_at: now(), content_type: None };
        let out = n.normalise(&msg, &registry);
        assert_eq!((reason(&out), out.readings.len(), out.new_sensors.len()), (Some("unknown_sensor"), 1, 0));
    }

    #[test]
    fn the_pending_policy_registers_unknown_sensors_once() {
        let registry = registry();
        let mut n = normaliser(UnknownSensors::Pending, 1_000);
        let out = level(&mut n, &registry, "kh-wl-0777");
        assert_eq!((reason(&out), ids(&out)), (None, vec!["kh-wl-0777"]));
        let again = level(&mut n, &registry, "kh-wl-0777");
        assert_eq!((reason(&again), again.readings.len(), again.new_sensors.len()), (None, 1, 0));
    }

    #[test]
    fn a_pack_of_thousands_of_new_ids_stops_at_the_cap() {
        let registry = registry(); // already holds one pending sensor
        let mut n = normaliser(UnknownSensors::Pending, 100);
        let records: Vec<_> =
            (0..5_000).map(|i| json!({"bn": format!("fl-wl-{i:05}/"), "n": "level", "v": 1.0})).collect();
        let pack = serde_json::Value::Array(records).to_string();
        let msg =
            Message { topic: "city/senml/gw-1", payload: pack.as_bytes(), received_at: now(), content_type: None };
        let out = n.normalise(&msg, &registry);
        assert_eq!(out.new_sensors.len(), 99, "the registry's pending sensor counts too");
        assert_eq!(out.readings.len(), 99, "readings only for the sensors registered");
        let rejection = out.rejection.unwrap();
        assert_eq!(rejection.reason, RejectReason::PendingSensorsFull);
        assert!(
            rejection.detail.starts_with("4901 of 5000 records rejected; first, record 99:"),
            "{}",
            rejection.detail
        );
        assert!(rejection.detail.contains("max_pending_sensors"), "{}", rejection.detail);
        // Sensors already registered keep writing; the next new one is refused.
        assert_eq!(level(&mut n, &registry, "fl-wl-00007").readings.len(), 1);
        assert_eq!(level(&mut n, &registry, "kh-wl-0001").readings.len(), 1);
        assert_eq!(reason(&level(&mut n, &registry, "kh-wl-0888")), Some("pending_sensors_full"));
    }

    #[test]
    fn activating_pending_sensors_makes_room_under_the_cap() {
        let mut registry = registry();
        let mut n = normaliser(UnknownSensors::Pending, 3);
        for id in ["kh-wl-0601", "kh-wl-0602"] {
            assert_eq!(ids(&level(&mut n, &registry, id)), [id]);
        }
        assert_eq!(reason(&level(&mut n, &registry, "kh-wl-0603")), Some("pending_sensors_full"));
        // The store registered both; the registry learns of them, and then
        // an operator activates the old pending one.
        let pending = |id: &str| RegistryEntry {
            sensor: SensorInfo::new(id, Kind::WaterLevel, SensorStatus::Pending),
            aliases: Vec::new(),
        };
        registry.apply([pending("kh-wl-0601"), pending("kh-wl-0602")], 3);
        n.registry_refreshed(&registry);
        assert_eq!(reason(&level(&mut n, &registry, "kh-wl-0603")), Some("pending_sensors_full"));
        let active = RegistryEntry {
            sensor: SensorInfo::new("kh-wl-0500", Kind::WaterLevel, SensorStatus::Active),
            aliases: Vec::new(),
        };
        registry.apply([active], 3);
        n.registry_refreshed(&registry);
        assert_eq!(ids(&level(&mut n, &registry, "kh-wl-0603")), ["kh-wl-0603"]);
    }

    #[test]
    fn a_registration_that_never_reaches_the_registry_stops_holding_a_place() {
        let registry = Registry::default();
        let mut n = normaliser(UnknownSensors::Pending, 1);
        assert_eq!(ids(&level(&mut n, &registry, "kh-wl-0601")).len(), 1);
        assert_eq!(reason(&level(&mut n, &registry, "kh-wl-0602")), Some("pending_sensors_full"));
        // Its registration was refused by the database: after the grace time
        // the place is free again.
        let later = now() + UNCONFIRMED_TTL + Duration::seconds(1);
        let payload = json!({"ts": later.to_rfc3339(), "level_m": 2.0}).to_string();
        let msg = Message {
            topic: "city/water_level/kh-wl-0602",
            payload: payload.as_bytes(),
            received_at: later,
            content_type: None,
        };
        let out = n.normalise(&msg, &registry);
        assert_eq!((reason(&out), ids(&out)), (None, vec!["kh-wl-0602"]));
    }
}
