//! MQTT topics and the payload format each one carries.
//!
//! | topic | format |
//! |---|---|
//! | `{prefix}/{kind}/{sensor_id}` | canonical JSON |
//! | `{prefix}/senml/{source...}` | SenML JSON pack (RFC 8428) |
//! | `application/{app}/device/{dev_eui}/event/up` | ChirpStack v4 uplink |
//! | `v3/{app}[@{tenant}]/devices/{device}/up` | The Things Stack v3 uplink |
//!
//! The topic is not the only word: a SenML content type or a SenML-shaped
//! payload makes a message SenML on other topics too (see
//! [`crate::normalise`]).

use crate::kind::Kind;
use crate::registry::validate_sensor_id;
use crate::DomainError;

/// The default prefix of the platform's own topics.
pub const DEFAULT_PREFIX: &str = "city";

/// Where a topic's payload goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Canonical { kind: Kind, sensor_id: &'a str },
    SenMl,
    ChirpStack { dev_eui: &'a str },
    TheThingsStack { device_id: &'a str },
}

pub fn route<'a>(topic: &'a str, prefix: &str) -> Result<Route<'a>, DomainError> {
    let parts: Vec<&str> = topic.split('/').collect();
    let unknown = || DomainError::UnknownTopic(topic.chars().take(128).collect());
    match parts.as_slice() {
        [p, "senml", rest @ ..] if *p == prefix && !rest.is_empty() => Ok(Route::SenMl),
        [p, kind, sensor_id] if *p == prefix => {
            let kind: Kind = kind.parse()?;
            validate_sensor_id(sensor_id)?;
            Ok(Route::Canonical { kind, sensor_id })
        }
        ["application", _, "device", dev_eui, "event", "up"] => Ok(Route::ChirpStack { dev_eui }),
        ["v3", _, "devices", device_id, "up"] => Ok(Route::TheThingsStack { device_id }),
        _ => Err(unknown()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_every_format() {
        assert_eq!(
            route("city/water_level/kh-wl-0012", "city").unwrap(),
            Route::Canonical { kind: Kind::WaterLevel, sensor_id: "kh-wl-0012" }
        );
        assert_eq!(route("city/senml/gw-7", "city").unwrap(), Route::SenMl);
        assert_eq!(route("city/senml/a/b", "city").unwrap(), Route::SenMl);
        assert_eq!(
            route("application/42/device/70b3d57ed0001234/event/up", "city").unwrap(),
            Route::ChirpStack { dev_eui: "70b3d57ed0001234" }
        );
        assert_eq!(
            route("v3/kh-flood@kaohsiung/devices/fd-17/up", "city").unwrap(),
            Route::TheThingsStack { device_id: "fd-17" }
        );
        assert_eq!(route("tw/rainfall/x", "tw").unwrap(), Route::Canonical { kind: Kind::Rainfall, sensor_id: "x" });
    }

    #[test]
    fn names_what_is_wrong_with_a_topic() {
        let reason = |t: &str| route(t, "city").unwrap_err().reason().as_str();
        assert_eq!(reason("city/lava/x"), "unknown_kind");
        assert_eq!(reason("city/rainfall/bad id"), "invalid_sensor_id");
        assert_eq!(reason("city/rainfall"), "unknown_topic");
        assert_eq!(reason("application/1/device/x/event/join"), "unknown_topic");
        assert_eq!(reason("elsewhere/rainfall/x"), "unknown_topic");
    }
}
