//! Per-sensor simulation state: which physical model a sensor watches, how it
//! reports, and turning model state into a [`Reading`].

use rand::Rng;

use crate::geo::{chainages, sample_from_km, LonLat};
use crate::payload::lorawan::LoraDevice;
use crate::physics::air::{AirRegion, AirSensor};
use crate::physics::hydro::{LevelGauge, LevelKind, Pond};
use crate::physics::light::{Lamp, LampFault, SunTimes};
use crate::reading::{Field, Reading, Value};
use crate::registry::places::{nearest_district, river};
use crate::registry::{Kind, Sensor, Transport};
use crate::rng::{fnv1a, SimRng};
use crate::timefmt::TsStyle;

/// A rain gauge's accumulators.
#[derive(Debug, Clone)]
pub struct RainGauge {
    /// Rain fallen since the last report, mm.
    pub since_report_mm: f64,
    /// Cumulative counter (counter-type gauges), mm since logger start.
    pub counter_mm: f64,
    /// Water in the bucket that hasn't tipped yet, mm.
    pub bucket_remainder_mm: f64,
    pub last_report_ms: i64,
}

/// The physical model behind a sensor.
#[derive(Debug, Clone)]
pub enum Model {
    Rain(RainGauge),
    Level(LevelGauge),
    Flood(Pond),
    Air(AirSensor),
    Lamp(Lamp),
}

/// One simulated sensor.
#[derive(Debug, Clone)]
pub struct SimSensor {
    pub sensor: Sensor,
    pub model: Model,
    pub ts_style: TsStyle,
    pub lora: Option<LoraDevice>,
    /// Index of the SenML gateway forwarding this sensor.
    pub gateway: Option<usize>,
    /// Readings held back by loggers that upload in batches.
    pub pending: Vec<Reading>,
    pub batch_size: usize,
    pub cadence_s: f64,
    /// Where rain is sampled: the upstream river course for river gauges, the
    /// sensor's own location otherwise.
    pub catchment: Vec<LonLat>,
    /// Current (catchment-mean) rain intensity, mm/h.
    pub rain_mmh: f64,
    /// Highest value of the primary measurement so far (for the run summary).
    pub peak: f64,
    /// When a streetlight's current fault will be repaired.
    pub repair_at_ms: Option<i64>,
    /// Timestamp of the latest report, epoch ms.
    pub last_ts_ms: i64,
}

impl SimSensor {
    pub fn new(sensor: &Sensor, start_ms: i64, rng: &mut SimRng) -> Self {
        let inst = &sensor.props.installation;
        let thresholds = sensor.props.thresholds.clone().unwrap_or_default();
        let base = inst.base_level_m.unwrap_or(0.5);
        let mut catchment = vec![sensor.at];
        let model = match (sensor.kind(), sensor.subkind()) {
            (Kind::Rainfall, _) => Model::Rain(RainGauge {
                since_report_mm: 0.0,
                counter_mm: rng.random_range(0.0..2000.0_f64).round(),
                bucket_remainder_mm: 0.0,
                last_report_ms: start_ms,
            }),
            (Kind::WaterLevel, "river") => {
                let course = inst.river.as_deref().and_then(river);
                let km = inst.river_km.unwrap_or(0.0);
                let (upstream_km, tide) = match course {
                    Some(r) => {
                        catchment.extend(sample_from_km(r.course, km, 1.0));
                        let total = *chainages(r.course).last().unwrap_or(&0.0);
                        ((total - km).max(0.0), r.tide_amp_m * (-km / 4.0).exp())
                    }
                    None => (5.0, 0.0),
                };
                let w1 = thresholds.warning_1_m.unwrap_or(base + 2.5);
                Model::Level(LevelGauge::river(base, w1, upstream_km, tide))
            }
            (Kind::WaterLevel, "sewer") => {
                let high = thresholds.high_m.unwrap_or(base + 1.0);
                // A few sewers are silting up: their level creeps up for days.
                let sediment = if rng.random_bool(0.06) { rng.random_range(0.01..0.03) } else { 0.0 };
                Model::Level(LevelGauge::sewer(base, high, sediment))
            }
            (Kind::WaterLevel, _) => Model::Level(LevelGauge::drainage(base, thresholds.high_m.unwrap_or(base + 1.2))),
            (Kind::FloodDepth, _) => Model::Flood(Pond::new(
                inst.drain_capacity_mmh.unwrap_or(50.0),
                rng.random_range(0.4..1.0),
                rng.random_range(0.3..0.6),
            )),
            (Kind::AirQuality, _) => {
                let industrial = nearest_district(sensor.at).industrial;
                Model::Air(AirSensor::new(rng, industrial, inst.gases.unwrap_or(false)))
            }
            (Kind::Streetlight, _) => Model::Lamp(Lamp::new(
                inst.rated_w.unwrap_or(100.0),
                rng.random_range(300.0..6000.0_f64).round(),
                [50.0, 60.0, 70.0][rng.random_range(0..3)],
            )),
        };
        let lorawan = matches!(sensor.transport(), Transport::Chirpstack | Transport::Tts);
        // NB-IoT sewer loggers save power by uploading three readings at once.
        let batch_size = if sensor.subkind() == "sewer" && sensor.transport() == Transport::Canonical { 3 } else { 1 };
        let default_cadence = match sensor.kind() {
            Kind::Rainfall | Kind::FloodDepth => 600,
            Kind::WaterLevel if sensor.subkind() == "river" => 600,
            Kind::WaterLevel | Kind::AirQuality => 300,
            Kind::Streetlight => 900,
        };
        Self {
            ts_style: TsStyle::ALL[(fnv1a(sensor.id.as_bytes()) % TsStyle::ALL.len() as u64) as usize],
            lora: lorawan.then(|| LoraDevice::new(rng)),
            gateway: None,
            pending: Vec::new(),
            batch_size,
            cadence_s: f64::from(inst.cadence_s.unwrap_or(default_cadence)),
            catchment,
            rain_mmh: 0.0,
            peak: f64::MIN,
            repair_at_ms: None,
            last_ts_ms: i64::MIN / 2,
            model,
            sensor: sensor.clone(),
        }
    }

    /// Reporting interval now. Hydrological sensors switch to storm mode when
    /// it rains on them (or the whole city is in a typhoon): rain gauges and
    /// wet flood sensors every minute, rivers every 2 min (every minute in a
    /// typhoon), battery-powered sewer loggers every 2 min.
    pub fn cadence_now_s(&self, storminess: f64) -> f64 {
        let stormy = storminess > 0.3 || self.rain_mmh > 1.0;
        match (&self.model, stormy) {
            (Model::Rain(_), true) => 60.0,
            (Model::Level(g), true) => match g.kind {
                LevelKind::River if storminess > 0.3 => 60.0,
                LevelKind::River | LevelKind::Sewer => 120.0,
                LevelKind::Drainage => 60.0,
            },
            (Model::Flood(p), _) if stormy || p.depth_cm() > 0.0 => 60.0,
            _ => self.cadence_s,
        }
    }

    /// Produces the sensor's reading at `ts_ms`.
    pub fn read(
        &mut self,
        ts_ms: i64,
        hour: f64,
        abs_h: f64,
        sun: SunTimes,
        air: &AirRegion,
        rng: &mut SimRng,
    ) -> Reading {
        let mut r = Reading::new(self.sensor.id.clone(), ts_ms);
        let bucket_mm = self.sensor.props.installation.bucket_mm.unwrap_or(0.5);
        let subkind = self.sensor.props.subkind.as_deref().unwrap_or("");
        let rain_now = self.rain_mmh;
        let primary = match &mut self.model {
            Model::Rain(g) => {
                let interval_s = ((ts_ms - g.last_report_ms) / 1000).max(1);
                g.last_report_ms = ts_ms;
                let fallen = std::mem::take(&mut g.since_report_mm);
                match subkind {
                    "tipping_bucket" => {
                        let water = g.bucket_remainder_mm + fallen;
                        let tips = (water / bucket_mm).floor();
                        g.bucket_remainder_mm = water - tips * bucket_mm;
                        r.push(Field::RainTips, Value::Int(tips as i64));
                    }
                    "counter" => {
                        // Loggers occasionally reboot and restart their counter.
                        if rng.random_bool(0.002) {
                            g.counter_mm = 0.0;
                        }
                        g.counter_mm += (fallen * 10.0).round() / 10.0;
                        r.num(Field::RainCounterMm, g.counter_mm);
                    }
                    _ => {
                        r.num(Field::RainMm, fallen);
                    }
                }
                if subkind != "counter" {
                    r.push(Field::IntervalS, Value::Int(interval_s));
                }
                fallen
            }
            Model::Level(g) => {
                let level = g.level_m(hour, abs_h) + 0.003 * rng.gaussian();
                r.num(Field::LevelM, level.max(0.0));
                level
            }
            Model::Flood(p) => {
                let depth = p.depth_cm();
                // Noise only on real water: a dry road reads exactly 0.
                let depth = if depth > 0.0 { (depth + 0.3 * rng.gaussian()).max(0.0) } else { 0.0 };
                r.num(Field::DepthCm, depth);
                depth
            }
            Model::Air(a) => {
                let s = a.sample(hour, air, rain_now, rng);
                r.num(Field::Pm25, s.pm25)
                    .num(Field::Pm10, s.pm10)
                    .num(Field::TempC, s.temp_c)
                    .num(Field::RhPct, s.rh_pct);
                if let Some((o3, no2, co, so2)) = s.gases {
                    r.num(Field::O3, o3).num(Field::No2, no2).num(Field::Co, co).num(Field::So2, so2);
                }
                s.pm25
            }
            Model::Lamp(l) if l.fault == Some(LampFault::CommTimeout) => {
                // The controller is unreachable: the lighting management
                // system reports the fault on its behalf, with no measurements.
                r.push(Field::Fault, Value::Str(LampFault::CommTimeout.code()));
                0.0
            }
            Model::Lamp(l) => {
                let s = l.state(hour, sun, rng);
                r.push(Field::LampOn, Value::Bool(s.on)).push(Field::DimPct, Value::Int(s.dim_pct.round() as i64));
                r.num(Field::PowerW, s.power_w).num(Field::EnergyKwh, l.energy_kwh);
                r.num(Field::VoltageV, s.voltage_v).num(Field::CurrentA, s.current_a);
                r.push(Field::Fault, l.fault.map_or(Value::Null, |f| Value::Str(f.code())));
                s.power_w
            }
        };
        self.peak = self.peak.max(primary);
        r
    }
}
