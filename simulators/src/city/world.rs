//! The simulated city: physics stepped in simulated time, sensors reporting
//! at their cadence, gateways packing SenML, faults. Pure and synchronous:
//! `advance_to` returns the messages due, and the async runner publishes them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use rand::Rng;

use super::faults::{Faults, SensorFault};
use super::sensors::{Model, SimSensor};
use super::{CityStats, Scenario};
use crate::payload::senml::SenmlStyle;
use crate::payload::{canonical, lorawan, senml, Message};
use crate::physics::air::AirRegion;
use crate::physics::light::{sun_times, LampFault, SunTimes};
use crate::physics::rain::RainField;
use crate::profiles::profile;
use crate::reading::Reading;
use crate::registry::{Registry, Sensor, Transport};
use crate::rng::SimRng;
use crate::timefmt::taipei_hour;

/// Physics time step, simulated ms.
const STEP_MS: i64 = 60_000;

/// Something scheduled in simulated time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A scheduled report; books the next one.
    Scheduled(usize),
    /// An out-of-schedule event report (a streetlight fault appearing or
    /// being repaired).
    Unscheduled(usize),
    GatewayFlush(usize),
    Garbage,
}

/// A SenML gateway buffering its sensors' readings.
#[derive(Debug, Clone)]
struct Gateway {
    id: String,
    style: SenmlStyle,
    buffer: Vec<Reading>,
}

/// The whole simulated city.
#[derive(Debug)]
pub struct City {
    sensors: Vec<SimSensor>,
    registry: Vec<Sensor>,
    gateways: Vec<Gateway>,
    rain: RainField,
    air: AirRegion,
    rng: SimRng,
    faults: Option<Faults>,
    queue: BinaryHeap<Reverse<(i64, Event)>>,
    start_ms: i64,
    /// Physics has been integrated up to here.
    now_ms: i64,
    sun: SunTimes,
    pub stats: CityStats,
}

impl City {
    pub fn new(registry: &Registry, scenario: Scenario, start_ms: i64, seed: u64) -> Self {
        let mut rng = SimRng::derive(seed, "city");
        let mut sensors: Vec<SimSensor> =
            registry.sensors.iter().map(|s| SimSensor::new(s, start_ms, &mut rng)).collect();
        let mut gateways: Vec<Gateway> = Vec::new();
        let mut gateway_index: HashMap<String, usize> = HashMap::new();
        for s in &mut sensors {
            if s.sensor.transport() == Transport::Senml {
                let id = s.sensor.props.installation.gateway_id.clone().unwrap_or_else(|| "kh-gw-default".into());
                let idx = *gateway_index.entry(id.clone()).or_insert_with(|| {
                    gateways.push(Gateway { style: SenmlStyle::for_gateway(&id), id, buffer: Vec::new() });
                    gateways.len() - 1
                });
                s.gateway = Some(idx);
            }
        }
        let mut queue = BinaryHeap::new();
        // Spread first reports over one cadence so sensors don't all fire at once.
        for (i, s) in sensors.iter().enumerate() {
            let phase = rng.random_range(0.0..s.cadence_s) as i64 * 1000;
            queue.push(Reverse((start_ms + phase, Event::Scheduled(i))));
        }
        for i in 0..gateways.len() {
            queue.push(Reverse((start_ms + rng.random_range(60..300) * 1000, Event::GatewayFlush(i))));
        }
        let faults = match scenario {
            Scenario::Faults => Some(Faults::assign(&registry.sensors, start_ms, seed)),
            Scenario::Typhoon => Some(Faults::typhoon(&registry.sensors, start_ms, seed)),
            Scenario::Calm => None,
        };
        if let Some(f) = faults.as_ref().filter(|f| f.makes_garbage()) {
            queue.push(Reverse((start_ms + (f.garbage_every_s * 1000.0) as i64, Event::Garbage)));
        }
        let stats = CityStats {
            scenario: format!("{scenario:?}").to_lowercase(),
            sensors: sensors.len(),
            ..Default::default()
        };
        Self {
            rain: RainField::new(scenario.weather(), start_ms, seed),
            air: AirRegion::new(seed),
            registry: registry.sensors.clone(),
            sensors,
            gateways,
            rng,
            faults,
            queue,
            start_ms,
            now_ms: start_ms,
            sun: sun_times(start_ms),
            stats,
        }
    }

    /// The sensors given a fault (the `faults` scenario's many, the
    /// typhoon's stuck and spiking river gauges), with their fault.
    pub fn faulty_sensors(&self) -> Vec<(&str, &SensorFault)> {
        self.faults.iter().flat_map(|f| f.faulty()).map(|(i, f)| (&*self.registry[i].id, f)).collect()
    }

    /// The highest true value of each sensor's primary measurement so far
    /// (before any fault: what the water really did).
    pub fn true_peaks(&self) -> impl Iterator<Item = (&str, f64)> {
        self.sensors.iter().map(|s| (&*s.sensor.id, s.peak))
    }

    /// Simulated time of the next scheduled event.
    pub fn next_event_ms(&self) -> Option<i64> {
        self.queue.peek().map(|Reverse((t, _))| *t)
    }

    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Rain intensity at a point now (for tests and summaries).
    pub fn rain(&self) -> &RainField {
        &self.rain
    }

    /// Runs the city up to `until_ms`, appending due messages to `out`.
    pub fn advance_to(&mut self, until_ms: i64, out: &mut Vec<Message>) {
        while self.now_ms < until_ms {
            let step_end = (self.now_ms + STEP_MS).min(until_ms);
            while let Some(&Reverse((due, event))) = self.queue.peek() {
                if due > step_end {
                    break;
                }
                self.queue.pop();
                self.handle(due, event, out);
            }
            let dt_s = (step_end - self.now_ms) as f64 / 1000.0;
            self.step_physics(step_end, dt_s);
            self.now_ms = step_end;
        }
    }

    fn step_physics(&mut self, now_ms: i64, dt_s: f64) {
        self.rain.step(now_ms, dt_s);
        self.air.step(dt_s);
        self.sun = sun_times(now_ms);
        let hour = taipei_hour(now_ms);
        let lamp_fault_rate = 1.0 / (150.0 * 86_400.0); // one fault per lamp every ~5 months
        for i in 0..self.sensors.len() {
            let s = &mut self.sensors[i];
            if let Model::Lamp(lamp) = &mut s.model {
                lamp.step(hour, self.sun, dt_s);
                self.lamp_faults(i, now_ms, lamp_fault_rate, dt_s);
                continue;
            }
            let rain = &self.rain;
            s.rain_mmh = s.catchment.iter().map(|p| rain.intensity_at(*p)).sum::<f64>() / s.catchment.len() as f64;
            match &mut s.model {
                Model::Rain(g) => g.since_report_mm += s.rain_mmh * dt_s / 3600.0,
                Model::Level(g) => g.step(s.rain_mmh, dt_s),
                Model::Flood(p) => p.step(s.rain_mmh, dt_s),
                Model::Air(a) => a.step(s.rain_mmh, dt_s),
                Model::Lamp(_) => {}
            }
        }
    }

    /// Random lamp faults, repaired within the city's 4-hour response rule
    /// (give or take); each change is reported at once as an event.
    fn lamp_faults(&mut self, i: usize, now_ms: i64, rate: f64, dt_s: f64) {
        let s = &mut self.sensors[i];
        let Model::Lamp(lamp) = &mut s.model else { return };
        let changed = match (lamp.fault, s.repair_at_ms) {
            (Some(_), Some(at)) if now_ms >= at => {
                lamp.fault = None;
                s.repair_at_ms = None;
                true
            }
            (None, _) if self.rng.happens(rate, dt_s) => {
                let faults =
                    [LampFault::LampFailure, LampFault::LampFailure, LampFault::PowerLoss, LampFault::CommTimeout];
                lamp.fault = Some(faults[self.rng.random_range(0..faults.len())]);
                s.repair_at_ms = Some(now_ms + self.rng.random_range(2 * 3_600_000..6 * 3_600_000));
                self.stats.lamp_faults += 1;
                true
            }
            _ => false,
        };
        if changed {
            self.queue.push(Reverse((now_ms, Event::Unscheduled(i))));
        }
    }

    fn handle(&mut self, due: i64, event: Event, out: &mut Vec<Message>) {
        match event {
            Event::Scheduled(i) => self.report(i, due, true, out),
            Event::Unscheduled(i) => self.report(i, due, false, out),
            Event::GatewayFlush(g) => {
                self.flush_gateway(g, out);
                let period = if self.rain.storminess() > 0.3 { 60_000 } else { 300_000 };
                self.queue.push(Reverse((due + period, Event::GatewayFlush(g))));
            }
            Event::Garbage => {
                if let Some(f) = &mut self.faults {
                    let (_, msg) = f.garbage(&self.registry, due);
                    out.push(msg);
                    self.stats.garbage_messages += 1;
                    let next = due + f.next_garbage_in_ms().max(1000);
                    self.queue.push(Reverse((next, Event::Garbage)));
                }
            }
        }
    }

    fn report(&mut self, i: usize, due: i64, scheduled: bool, out: &mut Vec<Message>) {
        let storminess = self.rain.storminess();
        let s = &mut self.sensors[i];
        // A sensor never reports twice in the same second, so (sensor_id, ts)
        // stays unique even when a fault event meets a scheduled report.
        let due = due.max(s.last_ts_ms + 1000);
        s.last_ts_ms = due;
        let hour = taipei_hour(due);
        let abs_h = due as f64 / 3_600_000.0;
        let reading = s.read(due, hour, abs_h, self.sun, &self.air, &mut self.rng);
        if scheduled {
            let cadence_ms = s.cadence_now_s(storminess) * 1000.0;
            let next = if storminess > 0.3 && !matches!(s.model, Model::Lamp(_) | Model::Air(_)) {
                // Storm mode: everyone reports on the minute, give or take a
                // few seconds of clock drift: bursts, as in real typhoons.
                let slot = cadence_ms as i64;
                (due / slot + 1) * slot + self.rng.random_range(0..3000)
            } else {
                due + (cadence_ms * self.rng.random_range(0.9..1.1)) as i64
            };
            // Loggers timestamp whole seconds.
            let next = next.max(due + 1000) / 1000 * 1000;
            self.queue.push(Reverse((next, Event::Scheduled(i))));
        }
        let reading = match &mut self.faults {
            Some(f) => match f.apply(i, reading) {
                Some(r) => r,
                None => return,
            },
            None => reading,
        };
        self.stats.readings += 1;
        let s = &mut self.sensors[i];
        match s.sensor.transport() {
            Transport::Canonical => {
                s.pending.push(reading);
                if s.pending.len() >= s.batch_size || storminess > 0.3 {
                    let msg = canonical::message(s.sensor.kind(), &s.pending, s.ts_style);
                    s.pending.clear();
                    self.stats.canonical_messages += 1;
                    self.emit(msg, out);
                }
            }
            Transport::Senml => {
                let g = s.gateway.expect("SenML sensors have a gateway");
                self.gateways[g].buffer.push(reading);
            }
            Transport::Chirpstack | Transport::Tts => {
                let Some(p) = s.sensor.props.device_profile.as_deref().and_then(profile) else {
                    return; // registry validation guarantees a known profile in practice
                };
                let dev = s.lora.as_mut().expect("LoRaWAN sensors have device state");
                let msg = if s.sensor.transport() == Transport::Chirpstack {
                    self.stats.chirpstack_uplinks += 1;
                    lorawan::chirpstack(&s.sensor, p, dev, &reading, &mut self.rng)
                } else {
                    self.stats.tts_uplinks += 1;
                    lorawan::tts(&s.sensor, p, dev, &reading, &mut self.rng)
                };
                self.emit(msg, out);
            }
        }
    }

    /// Sends everything still buffered (batching loggers, gateways), so every
    /// reading counted in the stats has been emitted. Called at the end of a run.
    pub fn flush(&mut self, out: &mut Vec<Message>) {
        for i in 0..self.sensors.len() {
            let s = &mut self.sensors[i];
            if !s.pending.is_empty() {
                let msg = canonical::message(s.sensor.kind(), &s.pending, s.ts_style);
                s.pending.clear();
                self.stats.canonical_messages += 1;
                self.emit(msg, out);
            }
        }
        for g in 0..self.gateways.len() {
            self.flush_gateway(g, out);
        }
    }

    fn flush_gateway(&mut self, g: usize, out: &mut Vec<Message>) {
        let gw = &mut self.gateways[g];
        if gw.buffer.is_empty() {
            return;
        }
        let readings = std::mem::take(&mut gw.buffer);
        // Keep packs to a size a constrained gateway would send.
        let mut msgs = Vec::new();
        for chunk in readings.chunks(60) {
            msgs.push(senml::message(&gw.id, chunk, gw.style));
        }
        for msg in msgs {
            self.stats.senml_packs += 1;
            self.emit(msg, out);
        }
    }

    /// Queues a message, sometimes twice in the `faults` scenario.
    fn emit(&mut self, msg: Message, out: &mut Vec<Message>) {
        if self.faults.as_mut().is_some_and(Faults::duplicate) {
            out.push(msg.clone());
            self.stats.duplicate_messages += 1;
        }
        out.push(msg);
    }

    /// Fills in the summary's peak-based fields.
    pub fn finish_stats(&mut self) -> CityStats {
        let mut stats = self.stats.clone();
        for s in &self.sensors {
            let t = s.sensor.props.thresholds.clone().unwrap_or_default();
            let reached = |threshold: Option<f64>| threshold.is_some_and(|v| s.peak >= v);
            stats.river_warning_3 += usize::from(reached(t.warning_3_m));
            stats.river_warning_2 += usize::from(reached(t.warning_2_m));
            stats.river_warning_1 += usize::from(reached(t.warning_1_m));
            stats.flood_alert_sites += usize::from(reached(t.alert_cm));
            match s.sensor.subkind() {
                "sewer" => stats.sewer_high += usize::from(reached(t.high_m)),
                _ => stats.drainage_high += usize::from(reached(t.high_m)),
            }
        }
        if let Some(f) = &self.faults {
            for i in 0..self.sensors.len() {
                match f.fault(i) {
                    Some(SensorFault::Stuck { .. }) => stats.stuck_sensors += 1,
                    Some(SensorFault::Silent { .. }) => stats.silent_sensors += 1,
                    Some(SensorFault::Spiky { .. } | SensorFault::EchoBursts { .. }) => stats.spiky_sensors += 1,
                    None => {}
                }
            }
            stats.spikes = f.spikes;
        }
        stats.sim_hours = (self.now_ms - self.start_ms) as f64 / 3_600_000.0;
        stats
    }
}
