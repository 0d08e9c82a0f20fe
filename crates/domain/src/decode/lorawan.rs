//! LoRaWAN network-server uplinks: ChirpStack v4 (`.../event/up`) and The Things
//! Stack v3 (`v3/.../up`), JSON integration format.
//!
//! The device EUI names the sensor through the registry; the decoded payload
//! (ChirpStack `object`, TTS `uplink_message.decoded_payload`) carries vendor
//! field names and units, mapped to our columns by a per-device-profile field
//! map from configuration. Fields the map does not name (battery, RSSI...) are
//! ignored. A device not in the registry is auto-registered as `lora-{eui}` when
//! its profile is known (ChirpStack sends its device profile name).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::Value;

use super::{field_value, DecodeContext, DeviceIdentity, RawRecord, Records};
use crate::kind::{Field, Kind};
use crate::registry::normalise_eui;
use crate::time;
use crate::unit::Unit;
use crate::DomainError;

/// A field map as written in the configuration file:
/// ```toml
/// [lorawan.profiles.flood-radar-v1]
/// kind = "flood_depth"
/// [lorawan.profiles.flood-radar-v1.fields]
/// water_depth_mm = { column = "depth_cm", unit = "mm" }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceProfileConfig {
    pub kind: String,
    pub fields: BTreeMap<String, FieldMapConfig>,
    /// A field of the decoded payload holding the measurement time, when the
    /// device sends one; otherwise the network server's receive time is used.
    #[serde(default)]
    pub time_field: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMapConfig {
    /// Our column (or its alias) the payload field feeds.
    pub column: String,
    /// The unit the device sends; the column's canonical unit when absent.
    #[serde(default)]
    pub unit: Option<String>,
    /// A factor applied before unit conversion (a vendor's 0.1 mm steps: 0.1).
    #[serde(default)]
    pub scale: Option<f64>,
}

/// A validated field map.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceProfile {
    pub kind: Kind,
    /// Payload path (dots for nesting) to column, unit and scale.
    pub fields: Vec<(String, Field, Option<Unit>, f64)>,
    pub time_field: Option<String>,
}

/// Every configured device profile, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceProfiles(HashMap<String, DeviceProfile>);

impl DeviceProfiles {
    /// Validates the configured profiles; errors name the offending option.
    pub fn compile(config: &BTreeMap<String, DeviceProfileConfig>) -> Result<Self, DomainError> {
        let mut profiles = HashMap::new();
        for (name, profile) in config {
            let option = format!("lorawan.profiles.{name}");
            let kind: Kind = profile
                .kind
                .parse()
                .map_err(|e: DomainError| DomainError::invalid(format!("{option}.kind"), e.to_string()))?;
            if profile.fields.is_empty() {
                return Err(DomainError::invalid(format!("{option}.fields"), "maps no field"));
            }
            let mut fields = Vec::new();
            for (path, map) in &profile.fields {
                let option = format!("{option}.fields.{path}");
                let field = Field::from_name_or_alias(&map.column)
                    .filter(|f| f.kind() == kind)
                    .ok_or_else(|| DomainError::invalid(&option, format!("`{}` is not a {kind} column", map.column)))?;
                let unit = map
                    .unit
                    .as_deref()
                    .map(Unit::parse)
                    .transpose()
                    .map_err(|e| DomainError::invalid(&option, e.to_string()))?;
                super::convert(field, 1.0, unit).map_err(|e| DomainError::invalid(&option, e.to_string()))?;
                fields.push((path.clone(), field, unit, map.scale.unwrap_or(1.0)));
            }
            profiles.insert(name.clone(), DeviceProfile { kind, fields, time_field: profile.time_field.clone() });
        }
        Ok(DeviceProfiles(profiles))
    }

    pub fn get(&self, name: &str) -> Option<&DeviceProfile> {
        self.0.get(name)
    }
}

/// ChirpStack v4 `event/up`. The body's `deviceInfo.devEui` must be the EUI
/// in the topic: broker ACLs are written per topic, so a body naming another
/// device is refused (`identity_mismatch`), never stored under either.
pub fn decode_chirpstack(topic_eui: &str, doc: &Value, ctx: &DecodeContext<'_>) -> Result<Records, DomainError> {
    let device_info = doc.get("deviceInfo");
    let body_eui = device_info.and_then(|d| d.get("devEui")).and_then(Value::as_str);
    if let Some(body_eui) = body_eui {
        if normalise_eui(body_eui) != normalise_eui(topic_eui) {
            return Err(DomainError::IdentityMismatch(format!(
                "the topic names device EUI `{}` but the uplink's deviceInfo.devEui is `{}`",
                short(topic_eui),
                short(body_eui)
            )));
        }
    }
    let eui = body_eui.unwrap_or(topic_eui);
    let profile_hint = device_info.and_then(|d| d.get("deviceProfileName")).and_then(Value::as_str);
    let object = doc.get("object").unwrap_or(&Value::Null);
    uplink(eui, profile_hint, object, doc.get("time"), ctx)
}

/// The Things Stack v3 `up`. The topic carries the device id: the body's
/// `end_device_ids.device_id` must be it, and when it is an EUI (`eui-<hex>`,
/// TTS's suggested id, or bare hex) so must `end_device_ids.dev_eui` be.
pub fn decode_tts(topic_device_id: &str, doc: &Value, ctx: &DecodeContext<'_>) -> Result<Records, DomainError> {
    let eui = doc
        .pointer("/end_device_ids/dev_eui")
        .and_then(Value::as_str)
        .ok_or_else(|| DomainError::invalid("end_device_ids.dev_eui", "missing"))?;
    if let Some(body_id) = doc.pointer("/end_device_ids/device_id").and_then(Value::as_str) {
        if body_id != topic_device_id {
            return Err(DomainError::IdentityMismatch(format!(
                "the topic names device `{}` but the uplink's end_device_ids.device_id is `{}`",
                short(topic_device_id),
                short(body_id)
            )));
        }
    }
    let topic_hex = topic_device_id.strip_prefix("eui-").unwrap_or(topic_device_id);
    if topic_hex.len() == 16
        && topic_hex.bytes().all(|b| b.is_ascii_hexdigit())
        && normalise_eui(topic_hex) != normalise_eui(eui)
    {
        return Err(DomainError::IdentityMismatch(format!(
            "the topic names device `{}` but the uplink's end_device_ids.dev_eui is `{}`",
            short(topic_device_id),
            short(eui)
        )));
    }
    let uplink_message = doc.get("uplink_message").unwrap_or(&Value::Null);
    // TTS has no profile name in the uplink; its device repository ids are
    // the nearest thing, as `brand/model`.
    let version = uplink_message.get("version_ids");
    let brand_model =
        version.and_then(|v| Some(format!("{}/{}", v.get("brand_id")?.as_str()?, v.get("model_id")?.as_str()?)));
    let decoded = uplink_message.get("decoded_payload").unwrap_or(&Value::Null);
    let time = uplink_message.get("received_at").or_else(|| doc.get("received_at"));
    uplink(eui, brand_model.as_deref(), decoded, time, ctx)
}

fn uplink(
    eui: &str,
    profile_hint: Option<&str>,
    decoded: &Value,
    server_time: Option<&Value>,
    ctx: &DecodeContext<'_>,
) -> Result<Records, DomainError> {
    let eui = normalise_eui(eui);
    if eui.len() != 16 {
        return Err(DomainError::UnknownDevice(eui));
    }
    let (sensor_id, profile_name, device) = match ctx.registry.by_dev_eui(&eui) {
        Some(sensor) => {
            let name = sensor.device_profile.as_deref().or(profile_hint).ok_or_else(|| {
                DomainError::UnknownDeviceProfile(format!("(sensor {} names no device profile)", sensor.id))
            })?;
            (sensor.id.clone(), name.to_string(), None)
        }
        None => {
            let name = profile_hint.ok_or_else(|| DomainError::UnknownDevice(eui.clone()))?;
            let identity = DeviceIdentity { dev_eui: eui.clone(), device_profile: name.to_string() };
            (format!("lora-{eui}"), name.to_string(), Some(identity))
        }
    };
    let profile =
        ctx.profiles.get(&profile_name).ok_or_else(|| DomainError::UnknownDeviceProfile(profile_name.clone()))?;
    if !decoded.is_object() {
        return Err(DomainError::invalid(
            "decoded payload",
            "missing: configure a payload codec on the network server",
        ));
    }

    let time_value = profile.time_field.as_deref().and_then(|path| lookup(decoded, path)).or(server_time);
    let ts = time_value.map(|t| time::parse_json(t, ctx.tz)).transpose()?;
    let mut fields = Vec::new();
    for (path, field, unit, scale) in &profile.fields {
        let Some(value) = lookup(decoded, path) else {
            continue;
        };
        let value = match (value.as_f64(), *scale) {
            (Some(n), scale) if scale != 1.0 => Value::from(n * scale),
            _ => value.clone(),
        };
        fields.push((*field, field_value(*field, &value, *unit)?));
    }
    if fields.is_empty() {
        return Err(DomainError::NoReadings);
    }
    Ok(vec![Ok(RawRecord { sensor_id, kind: profile.kind, ts, fields, device })])
}

/// An identifier from a message, cut for an error's detail.
fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Finds `a.b.c` in nested objects.
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::FieldValue;
    use crate::registry::{Registry, SensorInfo, SensorStatus};
    use chrono::Utc;
    use serde_json::json;

    fn profiles() -> DeviceProfiles {
        let config: BTreeMap<String, DeviceProfileConfig> = serde_json::from_value(json!({
            "flood-radar-v1": {"kind": "flood_depth", "fields": {"water_depth_mm": {"column": "depth_cm", "unit": "mm"}}},
            "air-box-f": {"kind": "air_quality", "fields": {
                "pm25": {"column": "pm2_5_ugm3"}, "env.temp_f": {"column": "temp_c", "unit": "degF"}, "co_x10": {"column": "co", "scale": 0.1}
            }}
        }))
        .unwrap();
        DeviceProfiles::compile(&config).unwrap()
    }

    fn registry() -> Registry {
        let mut known = SensorInfo::new("kh-fd-0007", Kind::FloodDepth, SensorStatus::Active);
        known.dev_eui = Some("70b3d57ed0001234".into());
        known.device_profile = Some("flood-radar-v1".into());
        Registry::new([known])
    }

    fn ctx<'a>(registry: &'a Registry, profiles: &'a DeviceProfiles) -> DecodeContext<'a> {
        DecodeContext::new(registry, profiles, chrono_tz::Asia::Taipei, Utc::now())
    }

    // Shaped after ChirpStack v4's documented `event/up` JSON.
    fn chirpstack_up(eui: &str, profile: &str, object: Value) -> Value {
        json!({
            "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
            "time": "2026-11-22T08:00:00.775023242+08:00",
            "deviceInfo": {"tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242", "tenantName": "Kaohsiung",
              "applicationId": "17c82e96-be03-4f38-aef3-f83d48582d97", "applicationName": "flood",
              "deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad", "deviceProfileName": profile,
              "deviceName": "fd-7", "devEui": eui, "tags": {}},
            "devAddr": "00189440", "adr": true, "dr": 1, "fCnt": 10, "fPort": 1, "confirmed": false, "data": "AHs=",
            "object": object,
            "rxInfo": [{"gatewayId": "0016c001f153a14c", "uplinkId": 4217106255u32, "rssi": -36, "snr": 10.5}],
            "txInfo": {"frequency": 923200000u32, "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7, "codeRate": "CR_4_5"}}}
        })
    }

    #[test]
    fn chirpstack_uplink_of_a_registered_device() {
        let (registry, profiles) = (registry(), profiles());
        let doc = chirpstack_up(
            "70b3d57ed0001234",
            "ignored-when-registered",
            json!({"water_depth_mm": 123, "battery_v": 3.61}),
        );
        let record =
            decode_chirpstack("70b3d57ed0001234", &doc, &ctx(&registry, &profiles)).unwrap().remove(0).unwrap();
        assert_eq!(record.sensor_id, "kh-fd-0007");
        assert_eq!(record.fields, vec![(Field::DepthCm, FieldValue::Number(12.3))]);
        assert_eq!(record.ts.unwrap().to_rfc3339(), "2026-11-22T00:00:00.775023242+00:00");
        assert_eq!(record.device, None);
    }

    #[test]
    fn an_unknown_chirpstack_device_is_registered_by_its_profile() {
        let (registry, profiles) = (registry(), profiles());
        let doc =
            chirpstack_up("a84041000181c8f2", "air-box-f", json!({"pm25": 12, "env": {"temp_f": 86}, "co_x10": 4}));
        let record =
            decode_chirpstack("a84041000181c8f2", &doc, &ctx(&registry, &profiles)).unwrap().remove(0).unwrap();
        assert_eq!(record.sensor_id, "lora-a84041000181c8f2");
        assert_eq!(record.kind, Kind::AirQuality);
        let temp = record.fields.iter().find(|(f, _)| *f == Field::TempC).unwrap();
        assert!(matches!(temp.1, FieldValue::Number(t) if (t - 30.0).abs() < 1e-9));
        let co = record.fields.iter().find(|(f, _)| *f == Field::Co).unwrap();
        assert!(matches!(co.1, FieldValue::Number(c) if (c - 0.4).abs() < 1e-9));
        assert_eq!(record.device.unwrap().device_profile, "air-box-f");

        let unknown_profile = chirpstack_up("a84041000181c8f3", "mystery", json!({"x": 1}));
        let err = decode_chirpstack("a84041000181c8f3", &unknown_profile, &ctx(&registry, &profiles)).unwrap_err();
        assert_eq!(err.reason().as_str(), "unknown_device_profile");
    }

    #[test]
    fn tts_uplink_maps_uppercase_eui_and_decoded_payload() {
        let (registry, profiles) = (registry(), profiles());
        // Shaped after The Things Stack v3's documented uplink message.
        let doc = json!({
            "end_device_ids": {"device_id": "fd-7", "application_ids": {"application_id": "kh-flood"},
              "dev_eui": "70B3D57ED0001234", "join_eui": "800000000000000C", "dev_addr": "00BCB929"},
            "correlation_ids": ["as:up:01E0WZGT6ZA5NAUE5P3N3JV7CD"],
            "received_at": "2026-11-22T00:00:01.861284Z",
            "uplink_message": {"session_key_id": "AXBSH1Pk6Z9W8+mwgNuOZQ==", "f_port": 1, "f_cnt": 25, "frm_payload": "AHs=",
              "decoded_payload": {"water_depth_mm": 40},
              "rx_metadata": [{"gateway_ids": {"gateway_id": "gw-1"}, "time": "2026-11-22T00:00:01.5Z", "rssi": -35, "snr": 5.2}],
              "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7}}, "frequency": "923200000"},
              "received_at": "2026-11-22T00:00:01.607Z", "consumed_airtime": "0.056576s"}
        });
        let record = decode_tts("fd-7", &doc, &ctx(&registry, &profiles)).unwrap().remove(0).unwrap();
        assert_eq!(record.sensor_id, "kh-fd-0007");
        assert_eq!(record.fields, vec![(Field::DepthCm, FieldValue::Number(4.0))]);
        assert_eq!(record.ts.unwrap().to_rfc3339(), "2026-11-22T00:00:01.607+00:00");

        let stranger =
            json!({"end_device_ids": {"dev_eui": "0004A30B001C0530"}, "uplink_message": {"decoded_payload": {"a": 1}}});
        assert_eq!(
            decode_tts("d", &stranger, &ctx(&registry, &profiles)).unwrap_err().reason().as_str(),
            "unknown_device"
        );
        let reason =
            |topic_id: &str| decode_tts(topic_id, &doc, &ctx(&registry, &profiles)).unwrap_err().reason().as_str();
        assert_eq!(reason("fd-8"), "identity_mismatch", "device_id differs");
        let by_eui = json!({"end_device_ids": {"device_id": "eui-70b3d57ed0001234", "dev_eui": "70B3D57ED0005678"},
            "uplink_message": {"decoded_payload": {"water_depth_mm": 40}}});
        let err = decode_tts("eui-70b3d57ed0001234", &by_eui, &ctx(&registry, &profiles)).unwrap_err();
        assert_eq!(err.reason().as_str(), "identity_mismatch");
        assert!(err.to_string().contains("70B3D57ED0005678"), "{err}");
    }

    #[test]
    fn a_chirpstack_body_naming_another_device_is_refused() {
        let (registry, profiles) = (registry(), profiles());
        let doc = chirpstack_up("70b3d57ed0001234", "flood-radar-v1", json!({"water_depth_mm": 1}));
        let err = decode_chirpstack("a84041000181c8f2", &doc, &ctx(&registry, &profiles)).unwrap_err();
        assert_eq!(err.reason().as_str(), "identity_mismatch");
        assert!(err.to_string().contains("a84041000181c8f2") && err.to_string().contains("70b3d57ed0001234"), "{err}");
        // Spelling differences are not a mismatch.
        assert!(decode_chirpstack("70-B3-D5-7E-D0-00-12-34", &doc, &ctx(&registry, &profiles)).is_ok());
    }

    #[test]
    fn profile_mistakes_name_the_option() {
        let bad: BTreeMap<String, DeviceProfileConfig> = serde_json::from_value(json!({
            "p": {"kind": "flood_depth", "fields": {"lvl": {"column": "level_m"}}}
        }))
        .unwrap();
        let err = DeviceProfiles::compile(&bad).unwrap_err().to_string();
        assert!(err.contains("lorawan.profiles.p.fields.lvl"), "{err}");
        let bad_unit: BTreeMap<String, DeviceProfileConfig> = serde_json::from_value(json!({
            "p": {"kind": "flood_depth", "fields": {"d": {"column": "depth_cm", "unit": "Cel"}}}
        }))
        .unwrap();
        assert!(DeviceProfiles::compile(&bad_unit).unwrap_err().to_string().contains("lorawan.profiles.p.fields.d"));
    }
}
