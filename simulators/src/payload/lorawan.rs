//! LoRaWAN uplinks as network servers publish them over MQTT:
//! ChirpStack v4's integration `event/up` JSON and The Things Stack v3's
//! `up` messages, each carrying the vendor-decoded payload.
//!
//! All radio timestamps equal the reading's time, so whichever one the
//! daemon picks (`time`, `received_at`, rx metadata) gives the same `ts`.

use rand::Rng;
use serde_json::json;

use super::{base64, Message};
use crate::profiles::Profile;
use crate::reading::Reading;
use crate::registry::{Kind, Sensor};
use crate::rng::{fnv1a, SimRng};
use crate::timefmt::write_datetime;

/// ChirpStack tenant of the city government.
const CHIRPSTACK_TENANT: (&str, &str) = ("6f1c2a9e-3b7d-4e5f-9a1b-2c3d4e5f6a7b", "Kaohsiung City Government");
/// The Things Stack tenant id (`app@tenant` in topics).
const TTS_TENANT: &str = "kaohsiung";

/// Per-device uplink state: frame counter, radio conditions.
#[derive(Debug, Clone)]
pub struct LoraDevice {
    pub f_cnt: u32,
    pub battery_v: f64,
    /// Mean RSSI at the serving gateway, dBm (devices don't move).
    pub rssi_dbm: f64,
    pub spreading_factor: u8,
}

impl LoraDevice {
    pub fn new(rng: &mut SimRng) -> Self {
        let rssi = rng.random_range(-118.0..-70.0);
        // ADR settles far devices on slower data rates.
        let sf = match rssi {
            r if r < -110.0 => 10,
            r if r < -100.0 => 9,
            r if r < -90.0 => 8,
            _ => 7,
        };
        Self {
            f_cnt: rng.random_range(0..5000),
            battery_v: rng.random_range(3.4..3.65),
            rssi_dbm: rssi,
            spreading_factor: sf,
        }
    }
}

/// Application (id, name) for a sensor, per kind of fleet.
fn application(kind: Kind, subkind: &str) -> (&'static str, &'static str) {
    match (kind, subkind) {
        (Kind::FloodDepth, _) => ("0b6a2f4e-1c3d-4a5b-8e9f-1a2b3c4d5e61", "kh-flood-sensors"),
        (Kind::WaterLevel, _) => ("0b6a2f4e-1c3d-4a5b-8e9f-1a2b3c4d5e62", "kh-sewer-level"),
        _ => ("0b6a2f4e-1c3d-4a5b-8e9f-1a2b3c4d5e63", "kh-air-quality"),
    }
}

/// A UUID-shaped id derived from `label` (stable across runs).
fn stable_uuid(label: &str) -> String {
    uuid_from(fnv1a(label.as_bytes()), fnv1a(format!("{label}#").as_bytes()))
}

/// A random UUIDv4-shaped id.
fn random_uuid(rng: &mut SimRng) -> String {
    uuid_from(rng.random(), rng.random())
}

/// Formats two 64-bit halves as a version-4, variant-1 UUID.
fn uuid_from(a: u64, b: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

fn dev_addr(sensor: &Sensor) -> String {
    // 0x26 prefix: a NetID-style address block like TTN's.
    format!("26{:06x}", fnv1a(sensor.id.as_bytes()) & 0xff_ffff)
}

fn utc_time(ts_ms: i64, suffix: &[u8]) -> String {
    let mut buf = Vec::with_capacity(32);
    write_datetime(&mut buf, ts_ms, 0, true, suffix);
    String::from_utf8(buf).expect("ascii")
}

/// AS923-1 uplink channels used in Taiwan, Hz.
fn frequency(rng: &mut SimRng) -> u64 {
    923_200_000 + 200_000 * rng.random_range(0..8u64)
}

/// Gateway serving a device (a handful per city, by district).
fn gateway_eui(sensor: &Sensor) -> String {
    format!("0016c001{:08x}", fnv1a(sensor.props.district.as_bytes()) & 0xffff_ffff)
}

/// ChirpStack v4 `application/{app}/device/{devEui}/event/up`.
pub fn chirpstack(sensor: &Sensor, profile: &Profile, dev: &mut LoraDevice, r: &Reading, rng: &mut SimRng) -> Message {
    dev.f_cnt = dev.f_cnt.wrapping_add(1);
    let up = profile.encode(r, dev.battery_v);
    let (app_id, app_name) = application(sensor.kind(), sensor.subkind());
    let dev_eui = sensor.props.dev_eui.clone().unwrap_or_default();
    let time = utc_time(r.ts_ms, b"+00:00");
    let payload = json!({
        "deduplicationId": random_uuid(rng),
        "time": time,
        "deviceInfo": {
            "tenantId": CHIRPSTACK_TENANT.0,
            "tenantName": CHIRPSTACK_TENANT.1,
            "applicationId": app_id,
            "applicationName": app_name,
            "deviceProfileId": stable_uuid(profile.name),
            "deviceProfileName": profile.name,
            "deviceName": &*sensor.id,
            "devEui": dev_eui,
            "deviceClassEnabled": "CLASS_A",
            "tags": {"sensor_id": &*sensor.id, "district": sensor.props.district},
        },
        "devAddr": dev_addr(sensor),
        "adr": true,
        "dr": 12 - dev.spreading_factor,
        "fCnt": dev.f_cnt,
        "fPort": profile.f_port,
        "confirmed": false,
        "data": base64(&up.raw),
        "object": up.decoded,
        "rxInfo": [{
            "gatewayId": gateway_eui(sensor),
            "uplinkId": rng.random::<u32>(),
            "gwTime": time,
            "nsTime": time,
            "rssi": dev.rssi_dbm.round() as i64 + rng.random_range(-3..=3),
            "snr": ((dev.rssi_dbm + 125.0) / 4.0 + rng.gaussian()).clamp(-15.0, 12.0).round(),
            "channel": rng.random_range(0..8),
            "context": base64(&rng.random::<u32>().to_be_bytes()),
            "metadata": {"region_config_id": "as923", "region_common_name": "AS923"},
            "crcStatus": "CRC_OK",
        }],
        "txInfo": {
            "frequency": frequency(rng),
            "modulation": {"lora": {"bandwidth": 125_000, "spreadingFactor": dev.spreading_factor, "codeRate": "CR_4_5"}},
        },
    });
    let topic = format!("application/{app_id}/device/{dev_eui}/event/up");
    Message::new(topic, serde_json::to_vec(&payload).expect("JSON values serialise"))
}

/// LoRa time on air for the payload, seconds (SX1276 datasheet formula,
/// 125 kHz, CR 4/5, explicit header, 8-symbol preamble, 13-byte MAC overhead).
fn airtime_s(payload_len: usize, sf: u8) -> f64 {
    let sf_f = f64::from(sf);
    let t_sym = 2f64.powf(sf_f) / 125_000.0;
    let de = if sf >= 11 { 1.0 } else { 0.0 };
    let pl = (payload_len + 13) as f64;
    let n = ((8.0 * pl - 4.0 * sf_f + 28.0 + 16.0) / (4.0 * (sf_f - 2.0 * de))).ceil().max(0.0) * 5.0 + 8.0;
    (12.25 + n) * t_sym
}

/// The Things Stack v3 `v3/{app}@{tenant}/devices/{device}/up`.
pub fn tts(sensor: &Sensor, profile: &Profile, dev: &mut LoraDevice, r: &Reading, rng: &mut SimRng) -> Message {
    dev.f_cnt = dev.f_cnt.wrapping_add(1);
    let up = profile.encode(r, dev.battery_v);
    let (_, app) = application(sensor.kind(), sensor.subkind());
    let time = utc_time(r.ts_ms, b"Z");
    let device_id = sensor.id.to_string();
    let timestamp = rng.random::<u32>();
    let rssi = dev.rssi_dbm.round() as i64 + rng.random_range(-3..=3);
    let payload = json!({
        "end_device_ids": {
            "device_id": device_id,
            "application_ids": {"application_id": app},
            // TTS writes EUIs in upper case.
            "dev_eui": sensor.props.dev_eui.as_deref().unwrap_or_default().to_uppercase(),
            "join_eui": "70B3D57ED0000000",
            "dev_addr": dev_addr(sensor).to_uppercase(),
        },
        "correlation_ids": [format!("as:up:{}", random_uuid(rng)), format!("gs:uplink:{}", random_uuid(rng))],
        "received_at": time,
        "uplink_message": {
            "session_key_id": base64(&rng.random::<u128>().to_be_bytes()),
            "f_port": profile.f_port,
            "f_cnt": dev.f_cnt,
            "frm_payload": base64(&up.raw),
            "decoded_payload": up.decoded,
            "rx_metadata": [{
                "gateway_ids": {"gateway_id": format!("kh-gw-{}", sensor.props.district.to_lowercase()), "eui": gateway_eui(sensor).to_uppercase()},
                "time": time,
                "timestamp": timestamp,
                "rssi": rssi,
                "channel_rssi": rssi,
                "snr": ((dev.rssi_dbm + 125.0) / 4.0).clamp(-15.0, 12.0).round(),
                "uplink_token": base64(&rng.random::<u128>().to_be_bytes()),
                "received_at": time,
            }],
            "settings": {
                "data_rate": {"lora": {"bandwidth": 125_000, "spreading_factor": dev.spreading_factor, "coding_rate": "4/5"}},
                "frequency": frequency(rng).to_string(),
                "timestamp": timestamp,
                "time": time,
            },
            "received_at": time,
            "consumed_airtime": format!("{:.6}s", airtime_s(up.raw.len(), dev.spreading_factor)),
            "network_ids": {"net_id": "000013", "tenant_id": TTS_TENANT, "cluster_id": "as1"},
        },
    });
    let topic = format!("v3/{app}@{TTS_TENANT}/devices/{device_id}/up");
    Message::new(topic, serde_json::to_vec(&payload).expect("JSON values serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::LonLat;
    use crate::payload::test_util::unbase64;
    use crate::profiles::{profile, FLOOD_RADAR_V1};
    use crate::reading::Field;
    use crate::registry::{SensorProps, Transport};
    use serde_json::Value as Json;

    fn sensor() -> Sensor {
        let props = SensorProps {
            id: "kh-fd-0003".into(),
            kind: Kind::FloodDepth,
            subkind: None,
            name: "test".into(),
            district: "Sanmin".into(),
            installation: Default::default(),
            thresholds: None,
            dev_eui: Some("a84041000000abcd".into()),
            device_profile: Some(FLOOD_RADAR_V1.into()),
            transport: Some(Transport::Chirpstack),
            public: true,
        };
        Sensor::new(props, LonLat::new(120.31, 22.64))
    }

    fn reading() -> Reading {
        let mut r = Reading::new("kh-fd-0003".into(), 1_795_305_600_000);
        r.num(Field::DepthCm, 12.3);
        r
    }

    #[test]
    fn chirpstack_uplink_has_the_v4_shape() {
        let (s, mut rng) = (sensor(), SimRng::new(1));
        let mut dev = LoraDevice::new(&mut rng);
        let m = chirpstack(&s, profile(FLOOD_RADAR_V1).unwrap(), &mut dev, &reading(), &mut rng);
        assert_eq!(m.topic, "application/0b6a2f4e-1c3d-4a5b-8e9f-1a2b3c4d5e61/device/a84041000000abcd/event/up");
        let j: Json = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(j["time"], "2026-11-22T00:00:00.000+00:00");
        assert_eq!(j["deviceInfo"]["devEui"], "a84041000000abcd");
        assert_eq!(j["deviceInfo"]["deviceProfileName"], FLOOD_RADAR_V1);
        assert_eq!(j["object"]["water_depth_mm"], 123.0);
        assert_eq!(j["fCnt"], dev.f_cnt);
        assert_eq!(j["fPort"], 2);
        let raw = unbase64(j["data"].as_str().unwrap());
        assert_eq!(i16::from_be_bytes([raw[0], raw[1]]), 123);
        assert!(j["rxInfo"][0]["rssi"].is_i64() && j["txInfo"]["modulation"]["lora"]["spreadingFactor"].is_u64());
        for key in
            ["tenantId", "tenantName", "applicationId", "applicationName", "deviceProfileId", "deviceName", "tags"]
        {
            assert!(j["deviceInfo"].get(key).is_some(), "deviceInfo.{key}");
        }
    }

    #[test]
    fn tts_uplink_has_the_v3_shape() {
        let (s, mut rng) = (sensor(), SimRng::new(2));
        let mut dev = LoraDevice::new(&mut rng);
        let m = tts(&s, profile(FLOOD_RADAR_V1).unwrap(), &mut dev, &reading(), &mut rng);
        assert_eq!(m.topic, "v3/kh-flood-sensors@kaohsiung/devices/kh-fd-0003/up");
        let j: Json = serde_json::from_slice(&m.payload).unwrap();
        let ids = &j["end_device_ids"];
        assert_eq!(ids["dev_eui"], "A84041000000ABCD");
        assert_eq!(ids["application_ids"]["application_id"], "kh-flood-sensors");
        let up = &j["uplink_message"];
        assert_eq!(up["decoded_payload"]["water_depth_mm"], 123.0);
        assert_eq!(up["f_port"], 2);
        assert_eq!(unbase64(up["frm_payload"].as_str().unwrap()).len(), 4);
        assert_eq!(up["rx_metadata"][0]["time"], "2026-11-22T00:00:00.000Z");
        assert!(up["consumed_airtime"].as_str().unwrap().ends_with('s'));
        assert!(up["settings"]["data_rate"]["lora"]["spreading_factor"].is_u64());
    }

    #[test]
    fn airtime_matches_known_values() {
        // 4-byte application payload (17-byte PHY payload) at 125 kHz:
        // 51.5 ms at SF7, 329.7 ms at SF10, as LoRa airtime calculators give.
        assert!((airtime_s(4, 7) - 0.0515).abs() < 0.001, "{}", airtime_s(4, 7));
        assert!((airtime_s(4, 10) - 0.3297).abs() < 0.001, "{}", airtime_s(4, 10));
    }
}
