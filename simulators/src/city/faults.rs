//! Sensor faults for the `faults` scenario, and the two broken gauges of the
//! `typhoon` scenario. Sensor health comes before hazard: the platform must
//! turn these into maintenance alerts, not flood alerts, and must survive the
//! garbage.

use rand::Rng;

use crate::payload::garbage::Garbage;
use crate::payload::Message;
use crate::reading::{Reading, Value};
use crate::registry::{Kind, Sensor};
use crate::rng::SimRng;

/// What is wrong with one sensor.
#[derive(Debug, Clone, PartialEq)]
pub enum SensorFault {
    /// From `from_ms` on, keeps reporting the same values (a jammed float,
    /// a frozen firmware loop): only `ts` changes.
    Stuck { from_ms: i64, frozen: Option<Reading> },
    /// From `from_ms` on, says nothing (dead battery, lost SIM).
    Silent { from_ms: i64 },
    /// Each reading has probability `p` of a wild spike (EMI, a bird on the
    /// ultrasonic sensor).
    Spiky { p: f64 },
    /// A radar/ultrasonic stage gauge that catches false echoes (wind-driven
    /// rain, debris, insects on the transducer) in bursts: from each time in
    /// `at_ms` (ascending), the next `len` readings report `echo_m` instead of
    /// the water.
    EchoBursts { at_ms: Vec<i64>, len: u32, echo_m: f64, left: u32 },
}

/// Fault bookkeeping for the whole city.
#[derive(Debug, Clone)]
pub struct Faults {
    per_sensor: Vec<Option<SensorFault>>,
    rng: SimRng,
    /// Mean interval between garbage messages, simulated seconds.
    pub garbage_every_s: f64,
    /// Share of messages published twice (QoS 1 redelivery, gateway retries).
    pub duplicate_p: f64,
    pub spikes: u64,
}

impl Faults {
    /// Gives ~4 % of non-streetlight sensors each fault, starting within the
    /// first two simulated hours.
    pub fn assign(sensors: &[Sensor], start_ms: i64, seed: u64) -> Self {
        let mut rng = SimRng::derive(seed, "faults");
        let per_sensor = sensors
            .iter()
            .map(|s| {
                if s.kind() == Kind::Streetlight {
                    return None;
                }
                let from_ms = start_ms + rng.random_range(0..2 * 3_600_000);
                match rng.random_range(0..100) {
                    0..=3 => Some(SensorFault::Stuck { from_ms, frozen: None }),
                    4..=7 => Some(SensorFault::Silent { from_ms }),
                    8..=11 => Some(SensorFault::Spiky { p: 0.15 }),
                    _ => None,
                }
            })
            .collect();
        Self { per_sensor, rng, garbage_every_s: 20.0, duplicate_p: 0.02, spikes: 0 }
    }

    /// The typhoon's two broken river gauges, chosen from the seed: one
    /// whose float jams on debris an hour in, before the rivers rise (it
    /// repeats its last value while the river goes through its warning
    /// levels), and one that
    /// catches false echoes in short bursts every 12-25 minutes while the
    /// storm lasts (wind-driven rain in its beam), each echo well above its red warning level. No garbage, no
    /// duplicates: the storm's data are otherwise clean.
    pub fn typhoon(sensors: &[Sensor], start_ms: i64, seed: u64) -> Self {
        let mut rng = SimRng::derive(seed, "typhoon-faults");
        let mut per_sensor = vec![None; sensors.len()];
        let rivers: Vec<usize> = (0..sensors.len())
            .filter(|&i| sensors[i].kind() == Kind::WaterLevel && sensors[i].subkind() == "river")
            .collect();
        if rivers.len() >= 2 {
            let stuck = rivers[rng.random_range(0..rivers.len())];
            let spiky = loop {
                let pick = rivers[rng.random_range(0..rivers.len())];
                if pick != stuck {
                    break pick;
                }
            };
            let hour = 3_600_000;
            per_sensor[stuck] = Some(SensorFault::Stuck { from_ms: start_ms + hour, frozen: None });
            let mut at_ms = Vec::new();
            // From when the gauges report every minute (storm mode), so the
            // bursts fall among dense readings, as a false echo in a storm
            // does (the ingest spike test caps a credible change at 2 m
            // whatever the cadence, so it would catch them either way).
            let mut t = start_ms + rng.random_range(60 * 60_000..75 * 60_000);
            while t < start_ms + 12 * hour {
                at_ms.push(t);
                t += rng.random_range(12 * 60_000..25 * 60_000);
            }
            let red = sensors[spiky].props.thresholds.as_ref().and_then(|t| t.warning_1_m).unwrap_or(4.0);
            // Where the transducer hangs above the water: a false echo reads as
            // water up at the bridge deck.
            let echo_m = ((red + rng.random_range(2.0..4.0)) * 1000.0).round() / 1000.0;
            per_sensor[spiky] = Some(SensorFault::EchoBursts { at_ms, len: 2, echo_m, left: 0 });
        }
        Self { per_sensor, rng, garbage_every_s: f64::INFINITY, duplicate_p: 0.0, spikes: 0 }
    }

    /// Whether this city gets garbage messages at all.
    pub fn makes_garbage(&self) -> bool {
        self.garbage_every_s.is_finite()
    }

    pub fn fault(&self, idx: usize) -> Option<&SensorFault> {
        self.per_sensor.get(idx).and_then(Option::as_ref)
    }

    /// Passes a reading through the sensor's fault; `None` means it's silent.
    pub fn apply(&mut self, idx: usize, reading: Reading) -> Option<Reading> {
        match self.per_sensor.get_mut(idx).and_then(Option::as_mut) {
            None => Some(reading),
            Some(SensorFault::Silent { from_ms }) if reading.ts_ms >= *from_ms => None,
            Some(SensorFault::Stuck { from_ms, frozen }) if reading.ts_ms >= *from_ms => {
                let stuck = frozen.get_or_insert_with(|| reading.clone());
                Some(Reading { ts_ms: reading.ts_ms, ..stuck.clone() })
            }
            Some(SensorFault::Spiky { p }) if self.rng.random_bool(*p) => {
                self.spikes += 1;
                Some(spike(reading, &mut self.rng))
            }
            Some(SensorFault::EchoBursts { at_ms, len, echo_m, left }) => {
                if at_ms.first().is_some_and(|&t| reading.ts_ms >= t) {
                    at_ms.remove(0);
                    *left = *len;
                }
                if *left == 0 {
                    return Some(reading);
                }
                *left -= 1;
                self.spikes += 1;
                let mut r = reading;
                for (_, v) in &mut r.values {
                    if matches!(v, Value::Num(_)) {
                        *v = Value::Num(*echo_m);
                    }
                }
                Some(r)
            }
            Some(_) => Some(reading),
        }
    }

    /// Simulated ms until the next garbage message.
    pub fn next_garbage_in_ms(&mut self) -> i64 {
        let u: f64 = self.rng.random::<f64>().max(1e-9);
        (-u.ln() * self.garbage_every_s * 1000.0) as i64
    }

    /// The sensors given a fault, by index.
    pub fn faulty(&self) -> impl Iterator<Item = (usize, &SensorFault)> {
        self.per_sensor.iter().enumerate().filter_map(|(i, f)| Some((i, f.as_ref()?)))
    }

    /// A random garbage message; oversized ones are rare (they're heavy).
    pub fn garbage(&mut self, sensors: &[Sensor], ts_ms: i64) -> (Garbage, Message) {
        let kind = loop {
            let g = Garbage::ALL[self.rng.random_range(0..Garbage::ALL.len())];
            if g != Garbage::Oversized || self.rng.random_bool(0.1) {
                break g;
            }
        };
        let sensor = &sensors[self.rng.random_range(0..sensors.len())];
        (kind, kind.message(sensor, ts_ms, &mut self.rng))
    }

    /// Whether to publish this message twice.
    pub fn duplicate(&mut self) -> bool {
        self.rng.random_bool(self.duplicate_p)
    }
}

/// Replaces one numeric value with an implausible one: ten times the value,
/// negative, or a logger's error code.
fn spike(mut reading: Reading, rng: &mut SimRng) -> Reading {
    let numeric: Vec<usize> =
        (0..reading.values.len()).filter(|&i| matches!(reading.values[i].1, Value::Num(_))).collect();
    if let Some(&i) = numeric.get(rng.random_range(0..numeric.len().max(1))) {
        let v = reading.values[i].1.as_f64().unwrap_or(0.0);
        reading.values[i].1 = Value::Num(match rng.random_range(0..3) {
            0 => (v.abs() + 1.0) * 10.0,
            1 => -(v.abs() + 5.0),
            _ => 9999.0,
        });
    }
    reading
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Field;
    use crate::registry::{generate, GenerateOptions};

    fn reading(ts_ms: i64, level: f64) -> Reading {
        let mut r = Reading::new("kh-wl-0001".into(), ts_ms);
        r.num(Field::LevelM, level);
        r
    }

    #[test]
    fn stuck_repeats_values_silent_drops_spiky_spikes() {
        let reg = generate(&GenerateOptions { streetlights: 0, ..Default::default() });
        let mut f = Faults::assign(&reg.sensors, 0, 1);
        f.per_sensor = vec![
            Some(SensorFault::Stuck { from_ms: 1000, frozen: None }),
            Some(SensorFault::Silent { from_ms: 1000 }),
            Some(SensorFault::Spiky { p: 1.0 }),
        ];
        assert_eq!(f.apply(0, reading(0, 1.0)).unwrap().values[0].1, Value::Num(1.0));
        assert_eq!(f.apply(0, reading(1000, 2.0)).unwrap().values[0].1, Value::Num(2.0));
        let later = f.apply(0, reading(5000, 3.0)).unwrap();
        assert_eq!((later.ts_ms, &later.values[0].1), (5000, &Value::Num(2.0)));
        assert!(f.apply(1, reading(500, 1.0)).is_some());
        assert!(f.apply(1, reading(1500, 1.0)).is_none());
        assert_ne!(f.apply(2, reading(0, 1.0)).unwrap().values[0].1, Value::Num(1.0));
        assert_eq!(f.spikes, 1);
    }
}
