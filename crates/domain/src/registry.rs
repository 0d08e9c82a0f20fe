//! The sensor registry as the normaliser sees it: which sensor an id or device
//! EUI names, its kind, and the installation facts that normalisation needs.

use crate::FastHashMap as HashMap;
use std::fmt;
use std::str::FromStr;

use crate::kind::Kind;
use crate::DomainError;

pub mod file;

/// Life-cycle state of a sensor in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SensorStatus {
    /// Confirmed by an operator (or imported).
    Active,
    /// Auto-registered when unknown data arrived; waits for an operator.
    Pending,
    /// Taken out of service; its data is rejected for inspection.
    Retired,
}

impl SensorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SensorStatus::Active => "active",
            SensorStatus::Pending => "pending",
            SensorStatus::Retired => "retired",
        }
    }
}

impl fmt::Display for SensorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SensorStatus {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(SensorStatus::Active),
            "pending" => Ok(SensorStatus::Pending),
            "retired" => Ok(SensorStatus::Retired),
            other => Err(DomainError::invalid("status", format!("`{other}` is not active, pending or retired"))),
        }
    }
}

/// What normalisation needs to know about one sensor.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorInfo {
    pub id: String,
    pub kind: Kind,
    pub status: SensorStatus,
    /// Millimetres of rain per tip of a tipping-bucket gauge.
    pub bucket_mm: Option<f64>,
    /// Valid range of the sensor's main value in its canonical unit, from the
    /// installation metadata (`valid_min`, `valid_max`); overrides the kind's.
    pub valid_min: Option<f64>,
    pub valid_max: Option<f64>,
    /// LoRaWAN device EUI, lowercase hex.
    pub dev_eui: Option<String>,
    /// Name of the LoRaWAN field map this device's payload uses.
    pub device_profile: Option<String>,
}

impl SensorInfo {
    /// A sensor known only by its id and kind (as when auto-registered).
    pub fn new(id: impl Into<String>, kind: Kind, status: SensorStatus) -> Self {
        SensorInfo {
            id: id.into(),
            kind,
            status,
            bucket_mm: None,
            valid_min: None,
            valid_max: None,
            dev_eui: None,
            device_profile: None,
        }
    }
}

/// A sensor seen for the first time: the store registers it as `pending`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NewSensor {
    pub id: String,
    pub kind: Kind,
    pub dev_eui: Option<String>,
    pub device_profile: Option<String>,
}

/// An in-memory snapshot of the registry, indexed by id, by device EUI and by
/// alias (other names a sensor is sent under, `installation.aliases`).
/// Kept current by [`Registry::apply`] with the rows that changed, so the
/// indexes follow an update (a new EUI, fewer aliases) as a reload would.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    by_id: HashMap<String, SensorInfo>,
    id_by_eui: HashMap<String, String>,
    id_by_alias: HashMap<String, String>,
    /// Each sensor's aliases, to drop them when its row changes.
    aliases_by_id: HashMap<String, Vec<String>>,
    /// How many sensors held are `pending` (the cap counts them).
    pending: usize,
}

/// One sensor as the store reads it: what normalisation needs, and the other
/// names it is sent under.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryEntry {
    pub sensor: SensorInfo,
    pub aliases: Vec<String>,
}

/// What [`Registry::apply`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Sensors added or changed.
    pub changed: usize,
    /// New pending sensors not held: the registry already holds the cap.
    pub skipped: usize,
}

/// What a name sent in place of a sensor id (a SenML name, a URN) means.
#[derive(Debug, Clone, PartialEq)]
pub enum NamedSensor<'r> {
    /// A registered sensor: by its id, an alias, a configured URN prefix and
    /// its id, or its device EUI (`urn:dev:mac:<EUI-64>`, `urn:dev:ow:<id>`).
    Registered(&'r SensorInfo),
    /// A configured URN prefix and an id the registry does not know (yet):
    /// the id without the prefix, so it is registered as itself.
    Unregistered(String),
    /// Nothing matched: the name is the id.
    AsIs,
}

/// RFC 9039 device URNs whose identifier is a 64-bit device id, matched
/// against the registry's `dev_eui`.
const EUI_URN_PREFIXES: [&str; 2] = ["urn:dev:mac:", "urn:dev:ow:"];

impl Registry {
    pub fn new(sensors: impl IntoIterator<Item = SensorInfo>) -> Self {
        let mut registry = Registry::default();
        for sensor in sensors {
            registry.insert(sensor);
        }
        registry
    }

    /// Adds a sensor, or replaces the one with its id (and its EUI index).
    pub fn insert(&mut self, sensor: SensorInfo) {
        self.forget_eui(&sensor.id);
        if let Some(eui) = &sensor.dev_eui {
            self.id_by_eui.insert(normalise_eui(eui), sensor.id.clone());
        }
        if sensor.status == SensorStatus::Pending {
            self.pending += 1;
        }
        if let Some(old) = self.by_id.insert(sensor.id.clone(), sensor) {
            if old.status == SensorStatus::Pending {
                self.pending -= 1;
            }
        }
    }

    /// Forgets a sensor, its EUI and its aliases.
    pub fn remove(&mut self, id: &str) -> Option<SensorInfo> {
        self.forget_eui(id);
        self.set_aliases(id, Vec::new());
        let old = self.by_id.remove(id)?;
        if old.status == SensorStatus::Pending {
            self.pending -= 1;
        }
        Some(old)
    }

    fn forget_eui(&mut self, id: &str) {
        let Some(eui) = self.by_id.get(id).and_then(|s| s.dev_eui.as_deref()) else { return };
        let eui = normalise_eui(eui);
        if self.id_by_eui.get(&eui).is_some_and(|owner| owner == id) {
            self.id_by_eui.remove(&eui);
        }
    }

    /// Makes `aliases` the other names of sensor `id`, replacing the ones it had.
    fn set_aliases(&mut self, id: &str, aliases: Vec<String>) {
        for old in self.aliases_by_id.remove(id).unwrap_or_default() {
            if self.id_by_alias.get(&old).is_some_and(|owner| owner == id) {
                self.id_by_alias.remove(&old);
            }
        }
        for alias in &aliases {
            self.id_by_alias.insert(alias.clone(), id.to_string());
        }
        if !aliases.is_empty() {
            self.aliases_by_id.insert(id.to_string(), aliases);
        }
    }

    /// Applies rows read from the store (new or changed sensors). A pending
    /// sensor not held yet is skipped once `max_pending` pending sensors are
    /// held, so no number of registrations grows the registry past the cap;
    /// it is then unknown to ingest, whose cap rejects it too.
    pub fn apply(&mut self, entries: impl IntoIterator<Item = RegistryEntry>, max_pending: usize) -> Applied {
        let mut applied = Applied::default();
        for RegistryEntry { sensor, mut aliases } in entries {
            let old = self.by_id.get(&sensor.id);
            aliases.sort_unstable();
            aliases.dedup();
            let same_aliases = self.aliases_by_id.get(&sensor.id).map_or(aliases.is_empty(), |a| *a == aliases);
            if old == Some(&sensor) && same_aliases {
                continue;
            }
            let was_pending = old.is_some_and(|s| s.status == SensorStatus::Pending);
            if sensor.status == SensorStatus::Pending && !was_pending && self.pending >= max_pending {
                applied.skipped += 1;
                // A sensor held as active or retired that became pending
                // again is no longer what the registry says: forget it.
                self.remove(&sensor.id);
                continue;
            }
            let id = sensor.id.clone();
            self.insert(sensor);
            self.set_aliases(&id, aliases);
            applied.changed += 1;
        }
        applied
    }

    /// Pending sensors held.
    pub fn pending_count(&self) -> usize {
        self.pending
    }

    pub fn get(&self, id: &str) -> Option<&SensorInfo> {
        self.by_id.get(id)
    }

    /// Makes `alias` another name of sensor `id` (an id always wins over an
    /// alias of another sensor). Registry files give them as
    /// `installation.aliases`; see [`file::SensorRecord::aliases`].
    pub fn insert_alias(&mut self, alias: impl Into<String>, id: impl Into<String>) {
        let (alias, id) = (alias.into(), id.into());
        let listed = self.aliases_by_id.entry(id.clone()).or_default();
        if let Err(at) = listed.binary_search(&alias) {
            listed.insert(at, alias.clone());
        }
        self.id_by_alias.insert(alias, id);
    }

    /// A registry of these records, aliases included.
    pub fn from_records(records: &[file::SensorRecord]) -> Self {
        let mut registry = Registry::new(records.iter().map(file::SensorRecord::info));
        for record in records {
            for alias in record.aliases() {
                registry.insert_alias(alias, record.id.clone());
            }
        }
        registry
    }

    pub fn by_alias(&self, alias: &str) -> Option<&SensorInfo> {
        self.id_by_alias.get(alias).and_then(|id| self.by_id.get(id))
    }

    /// Resolves a name a sensor was sent under: its id, an alias, a
    /// configured URN prefix followed by its id (`urn:dev:city:kh-aq-0201`),
    /// or a device URN carrying its EUI (`urn:dev:mac:0024befffe804ff1`).
    /// URN scheme and namespace compare case-insensitively (RFC 8141).
    pub fn lookup_name(&self, name: &str, urn_prefixes: &[String]) -> NamedSensor<'_> {
        if let Some(sensor) = self.by_id.get(name).or_else(|| self.by_alias(name)) {
            return NamedSensor::Registered(sensor);
        }
        if !name.starts_with(['u', 'U']) {
            return NamedSensor::AsIs;
        }
        for prefix in urn_prefixes {
            if let Some(rest) = strip_prefix_ignore_case(name, prefix).filter(|r| !r.is_empty()) {
                return match self.by_id.get(rest).or_else(|| self.by_alias(rest)) {
                    Some(sensor) => NamedSensor::Registered(sensor),
                    None => NamedSensor::Unregistered(rest.to_string()),
                };
            }
        }
        for prefix in EUI_URN_PREFIXES {
            if let Some(sensor) = strip_prefix_ignore_case(name, prefix).and_then(|eui| {
                let hex = eui.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
                hex.then(|| self.by_dev_eui(eui)).flatten()
            }) {
                return NamedSensor::Registered(sensor);
            }
        }
        NamedSensor::AsIs
    }

    pub fn by_dev_eui(&self, eui: &str) -> Option<&SensorInfo> {
        self.id_by_eui.get(&normalise_eui(eui)).and_then(|id| self.by_id.get(id))
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// Device EUIs compare as lowercase hex without separators: TTS sends them
/// uppercase, ChirpStack lowercase, and people write `70-B3-D5-...`.
pub fn normalise_eui(eui: &str) -> String {
    eui.chars().filter(char::is_ascii_hexdigit).map(|c| c.to_ascii_lowercase()).collect()
}

/// Sensor ids are stable text keys that also appear in MQTT topics and URLs.
pub fn validate_sensor_id(id: &str) -> Result<(), DomainError> {
    let ok = (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        && id.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(DomainError::InvalidSensorId(id.chars().take(64).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sensors_by_any_spelling_of_their_eui() {
        let mut sensor = SensorInfo::new("kh-fd-0001", Kind::FloodDepth, SensorStatus::Active);
        sensor.dev_eui = Some("70B3D57ED0001234".into());
        let registry = Registry::new([sensor]);
        for eui in ["70b3d57ed0001234", "70B3D57ED0001234", "70-b3-d5-7e-d0-00-12-34"] {
            assert_eq!(registry.by_dev_eui(eui).unwrap().id, "kh-fd-0001", "{eui}");
        }
    }

    #[test]
    fn urn_names_resolve_by_prefix_alias_and_eui() {
        let mut air = SensorInfo::new("kh-aq-0201", Kind::AirQuality, SensorStatus::Active);
        air.dev_eui = Some("0024befffe804ff1".into());
        let ow = SensorInfo::new("kh-aq-0202", Kind::AirQuality, SensorStatus::Active);
        let mut registry = Registry::new([air, ow]);
        registry.insert_alias("urn:dev:ow:10e2073a01080063", "kh-aq-0202");
        let prefixes = vec!["urn:dev:city:".to_string()];
        let id = |name: &str| match registry.lookup_name(name, &prefixes) {
            NamedSensor::Registered(s) => s.id.clone(),
            NamedSensor::Unregistered(id) => format!("new {id}"),
            NamedSensor::AsIs => format!("as is {name}"),
        };
        assert_eq!(id("kh-aq-0201"), "kh-aq-0201");
        assert_eq!(id("urn:dev:city:kh-aq-0201"), "kh-aq-0201");
        assert_eq!(id("URN:DEV:CITY:kh-aq-0201"), "kh-aq-0201");
        assert_eq!(id("urn:dev:city:kh-aq-0999"), "new kh-aq-0999");
        assert_eq!(id("urn:dev:mac:0024befffe804ff1"), "kh-aq-0201");
        assert_eq!(id("urn:dev:mac:0024BEFFFE804FF1"), "kh-aq-0201");
        assert_eq!(id("urn:dev:ow:10e2073a01080063"), "kh-aq-0202");
        assert_eq!(id("urn:dev:mac:0024befffe804ff2"), "as is urn:dev:mac:0024befffe804ff2");
        assert_eq!(id("urn:dev:city:"), "as is urn:dev:city:");
        assert_eq!(id("kh-aq-0999"), "as is kh-aq-0999");
    }

    #[test]
    fn changed_rows_update_the_indexes_and_pending_sensors_stop_at_the_cap() {
        let entry = |id: &str, status: SensorStatus, eui: Option<&str>, aliases: &[&str]| {
            let mut sensor = SensorInfo::new(id, Kind::AirQuality, status);
            sensor.dev_eui = eui.map(str::to_string);
            RegistryEntry { sensor, aliases: aliases.iter().map(|a| a.to_string()).collect() }
        };
        let mut registry = Registry::default();
        let first = [
            entry("kh-aq-0001", SensorStatus::Active, Some("0024befffe804ff1"), &["airbox-1"]),
            entry("new-1", SensorStatus::Pending, None, &[]),
            entry("new-2", SensorStatus::Pending, None, &[]),
            entry("new-3", SensorStatus::Pending, None, &[]),
        ];
        assert_eq!(registry.apply(first.clone(), 2), Applied { changed: 3, skipped: 1 });
        assert_eq!((registry.len(), registry.pending_count()), (3, 2));
        assert!(registry.get("new-3").is_none(), "past the cap");
        // The same rows again change nothing (a refresh reads recent rows twice).
        assert_eq!(registry.apply(first, 2), Applied { changed: 0, skipped: 1 });
        // An operator activates new-1 (room for new-3), and the sensor gets
        // a new EUI and other aliases.
        let second = [
            entry("new-1", SensorStatus::Active, None, &[]),
            entry("new-3", SensorStatus::Pending, None, &[]),
            entry("kh-aq-0001", SensorStatus::Active, Some("0024befffe804ff2"), &["airbox-9"]),
        ];
        assert_eq!(registry.apply(second, 2), Applied { changed: 3, skipped: 0 });
        assert_eq!((registry.len(), registry.pending_count()), (4, 2));
        assert!(registry.by_dev_eui("0024befffe804ff1").is_none());
        assert_eq!(registry.by_dev_eui("0024befffe804ff2").unwrap().id, "kh-aq-0001");
        assert!(registry.by_alias("airbox-1").is_none());
        assert_eq!(registry.by_alias("airbox-9").unwrap().id, "kh-aq-0001");
        registry.remove("new-3");
        assert_eq!((registry.len(), registry.pending_count()), (3, 1));
    }

    #[test]
    fn sensor_ids_are_safe_keys() {
        for ok in ["kh-wl-0012", "lora-70b3d57ed0001234", "urn:dev:ow:10e2073a"] {
            assert!(validate_sensor_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a/b", "a b", "é", &"x".repeat(65), "a+b", "#"] {
            assert!(validate_sensor_id(bad).is_err(), "{bad}");
        }
    }
}
