//! The city rule sections: defaults validate and round-trip, every bad
//! setting is refused with an error naming its field, overrides apply per
//! station.

use citygauge_alerts::RuleSet;

fn refused(toml: &str) -> String {
    RuleSet::from_toml(toml).expect_err(toml).to_string()
}

#[test]
fn the_city_defaults_round_trip() {
    let rules = RuleSet::default();
    let text = toml::to_string(&rules).unwrap();
    assert!(
        text.contains("[streetlight.outage]") && text.contains("[air.hotspot]") && text.contains("[sewer.sediment]")
    );
    assert_eq!(RuleSet::from_toml(&text).unwrap(), rules);
    assert_eq!(rules.air.raise_at, "unhealthy_sensitive");
    assert_eq!(rules.streetlight.on_below_elevation_deg, -0.833);
}

#[test]
fn bad_settings_name_their_field() {
    for (toml, field) in [
        ("[air]\nraise_at = 'moderate'\n", "air.raise_at"),
        ("[air]\nmargin_aqi = -1.0\n", "air.margin_aqi"),
        ("[air.confirm]\nraise_readings = 0\n", "air.confirm.raise_readings"),
        ("[air.hotspot]\nmin_neighbours = 0\n", "air.hotspot.min_neighbours"),
        ("[air.hotspot]\nratio = 0.5\n", "air.hotspot.ratio"),
        ("[streetlight]\non_below_elevation_deg = -30.0\n", "streetlight.on_below_elevation_deg"),
        ("[streetlight]\ngrace_after_dusk_min = -5\n", "streetlight.grace_after_dusk_min"),
        ("[streetlight]\ndefault_power_band_w = [100.0, 50.0]\n", "streetlight.default_power_band_w"),
        ("[streetlight]\nfault_clear_readings = 0\n", "streetlight.fault_clear_readings"),
        ("[streetlight.power]\nclear_readings = 0\n", "streetlight.power.clear_readings"),
        ("[sewer]\ndry_after_rain_h = 1000\n", "sewer.dry_after_rain_h"),
        ("[sewer.ingress]\nmargin_m = 0.2\n", "sewer.ingress.margin_m"),
        ("[sewer.sediment]\nmin_days = 30\n", "sewer.sediment.min_days"),
        ("[sewer.sediment]\nmin_r2 = 1.5\n", "sewer.sediment.min_r2"),
        ("[sewer.odd_hours]\nstart_hour = 25\n", "sewer.odd_hours.start_hour"),
        ("[sewer.odd_hours]\nend_hour = 1\n", "sewer.odd_hours.end_hour"),
        (
            "[[overrides]]\nsensors = ['aq-1']\n[overrides.set.air]\nmargin_aqi = 99.0\n",
            "overrides[0].set.air.margin_aqi",
        ),
    ] {
        let err = refused(toml);
        assert!(err.contains(field), "{toml:?}: {err}");
    }
    let err = refused("[streetlight]\nno_such = 1\n");
    assert!(err.contains("no_such"), "{err}");
}

#[test]
fn a_night_window_may_span_midnight() {
    let rules = RuleSet::from_toml("[sewer.odd_hours]\nstart_hour = 23\nend_hour = 4\n").unwrap();
    assert_eq!((rules.sewer.odd_hours.start_hour, rules.sewer.odd_hours.end_hour), (23, 4));
}
