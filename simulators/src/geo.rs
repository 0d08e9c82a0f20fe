//! Small planar geometry helpers. The city spans ~40 km, so an equirectangular
//! projection around 22.6 N is accurate to well under 1 %, which is plenty for
//! rain cells and river chainages.

/// Kilometres per degree of latitude.
pub const KM_PER_DEG_LAT: f64 = 110.57;
/// Reference latitude of the simulated city (Kaohsiung).
pub const CITY_LAT: f64 = 22.63;
/// Reference longitude of the simulated city.
pub const CITY_LON: f64 = 120.32;

/// Kilometres per degree of longitude at the city's latitude.
pub fn km_per_deg_lon() -> f64 {
    111.32 * CITY_LAT.to_radians().cos()
}

/// A WGS84 point, `lon` first as in GeoJSON.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LonLat {
    pub lon: f64,
    pub lat: f64,
}

impl LonLat {
    pub const fn new(lon: f64, lat: f64) -> Self {
        Self { lon, lat }
    }

    /// Offset in km (east, north) from `origin`.
    pub fn km_from(self, origin: LonLat) -> (f64, f64) {
        ((self.lon - origin.lon) * km_per_deg_lon(), (self.lat - origin.lat) * KM_PER_DEG_LAT)
    }

    /// The point `east_km`, `north_km` away.
    pub fn offset_km(self, east_km: f64, north_km: f64) -> LonLat {
        LonLat::new(self.lon + east_km / km_per_deg_lon(), self.lat + north_km / KM_PER_DEG_LAT)
    }

    pub fn distance_km(self, other: LonLat) -> f64 {
        let (e, n) = self.km_from(other);
        e.hypot(n)
    }
}

/// Cumulative length in km at each vertex of a polyline (first vertex = 0).
pub fn chainages(line: &[LonLat]) -> Vec<f64> {
    let mut acc = 0.0;
    let mut out = Vec::with_capacity(line.len());
    for (i, p) in line.iter().enumerate() {
        if i > 0 {
            acc += p.distance_km(line[i - 1]);
        }
        out.push(acc);
    }
    out
}

/// The point at `km` along a polyline, clamped to its ends.
pub fn point_at_km(line: &[LonLat], km: f64) -> LonLat {
    let ch = chainages(line);
    for i in 1..line.len() {
        if km <= ch[i] {
            let seg = (ch[i] - ch[i - 1]).max(1e-9);
            let f = ((km - ch[i - 1]) / seg).clamp(0.0, 1.0);
            let (a, b) = (line[i - 1], line[i]);
            return LonLat::new(a.lon + (b.lon - a.lon) * f, a.lat + (b.lat - a.lat) * f);
        }
    }
    *line.last().expect("polyline has points")
}

/// Sample points every ~`step_km` along the polyline from `from_km` to its end
/// (upstream when chainage runs from the mouth): the catchment a river gauge
/// integrates rain over.
pub fn sample_from_km(line: &[LonLat], from_km: f64, step_km: f64) -> Vec<LonLat> {
    let total = *chainages(line).last().unwrap_or(&0.0);
    let mut km = from_km.min(total);
    let mut out = Vec::new();
    while km <= total + 1e-9 {
        out.push(point_at_km(line, km));
        km += step_km;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_minute_of_latitude_is_about_1_84_km() {
        let a = LonLat::new(120.3, 22.6);
        let b = LonLat::new(120.3, 22.6 + 1.0 / 60.0);
        assert!((a.distance_km(b) - 1.843).abs() < 0.01);
    }

    #[test]
    fn point_at_km_interpolates_and_clamps() {
        let line = [LonLat::new(120.30, 22.60), LonLat::new(120.30, 22.70)];
        let total = chainages(&line)[1];
        let mid = point_at_km(&line, total / 2.0);
        assert!((mid.lat - 22.65).abs() < 1e-9);
        assert_eq!(point_at_km(&line, total * 2.0), line[1]);
        assert_eq!(sample_from_km(&line, 0.0, total / 4.0).len(), 5);
    }
}
