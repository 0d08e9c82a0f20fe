//! Layering: flags > `CITYGAUGE_*` variables > the TOML file > defaults.
//!
//! Every top-level key of the file is an option of some subcommand, spelled
//! with underscores (`batch_max_rows = 5000`). A key is applied only where the
//! option was left at its default, by handing clap `--batch-max-rows=5000`, so
//! clap validates file values exactly like flags and its errors name the
//! option. LoRaWAN field maps, which have no flag, live in `[lorawan.profiles]`.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use citygauge_domain::decode::DeviceProfileConfig;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use serde::Deserialize;

use crate::cli::{Cli, Command};

/// Where `citygauge dev` finds its configuration when none is given.
const DEV_DEFAULT_CONFIG: &str = "deploy/citygauge.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LorawanSection {
    #[serde(default)]
    profiles: BTreeMap<String, DeviceProfileConfig>,
}

pub fn parse() -> anyhow::Result<Cli> {
    parse_from(std::env::args_os().collect())
}

pub fn parse_from(mut argv: Vec<OsString>) -> anyhow::Result<Cli> {
    // --help, --version and usage errors print and exit as clap does.
    let matches = Cli::command().try_get_matches_from(&argv).unwrap_or_else(|e| e.exit());
    let explicit = matches.get_one::<PathBuf>("config").cloned();
    let is_dev = matches.subcommand_name() == Some("dev");
    let path =
        explicit.or_else(|| (is_dev && Path::new(DEV_DEFAULT_CONFIG).exists()).then(|| DEV_DEFAULT_CONFIG.into()));
    let Some(path) = path else {
        return Ok(Cli::from_arg_matches(&matches)?);
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("--config {}", path.display()))?;
    let table: toml::Table = text.parse().with_context(|| format!("{}: not valid TOML", path.display()))?;

    let mut command = Cli::command();
    command.build();
    let known: HashSet<String> = all_arg_ids(&command);
    let (leaf, leaf_matches) = leaf(&command, &matches);
    for (key, value) in &table {
        if key == "lorawan" {
            continue;
        }
        if !known.contains(key) {
            bail!("{}: unknown option `{key}` (options are spelled like `batch_max_rows`)", path.display());
        }
        let Some(arg) = leaf.get_arguments().find(|a| a.get_id() == key.as_str()) else {
            continue; // an option of another subcommand
        };
        if !matches!(leaf_matches.value_source(key), None | Some(ValueSource::DefaultValue)) {
            continue; // set by a flag or a CITYGAUGE_* variable, which win
        }
        let flag = format!("--{}", arg.get_long().unwrap_or(key));
        match value {
            // A switch that defaults to true takes its value (`--orphan-takeover=false`).
            toml::Value::Boolean(b) if arg.get_action().takes_values() => argv.push(format!("{flag}={b}").into()),
            toml::Value::Boolean(true) => argv.push(flag.into()),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                let items: Vec<String> = items.iter().map(|v| scalar(key, v, &path)).collect::<anyhow::Result<_>>()?;
                argv.push(format!("{flag}={}", items.join(",")).into());
            }
            other => argv.push(format!("{flag}={}", scalar(key, other, &path)?).into()),
        }
    }
    let matches = Cli::command()
        .try_get_matches_from(&argv)
        .map_err(|e| anyhow::anyhow!("{} (set in {})", e.to_string().trim_end(), path.display()))?;
    let mut cli = Cli::from_arg_matches(&matches)?;

    if let Some(section) = table.get("lorawan") {
        let section: LorawanSection =
            section.clone().try_into().with_context(|| format!("{}: [lorawan]", path.display()))?;
        match &mut cli.command {
            Command::Ingest(config) => config.device_profiles = section.profiles,
            Command::Dev(args) => args.ingest.device_profiles = section.profiles,
            _ => {}
        }
    }
    Ok(cli)
}

fn scalar(key: &str, value: &toml::Value, path: &Path) -> anyhow::Result<String> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        _ => bail!("{}: option `{key}` takes a string, number or list, not {}", path.display(), value.type_str()),
    })
}

fn all_arg_ids(command: &clap::Command) -> HashSet<String> {
    let mut ids: HashSet<String> = command.get_arguments().map(|a| a.get_id().to_string()).collect();
    for sub in command.get_subcommands() {
        ids.extend(all_arg_ids(sub));
    }
    ids
}

/// The subcommand actually invoked, however deep, and its matches.
fn leaf<'a>(command: &'a clap::Command, matches: &'a ArgMatches) -> (&'a clap::Command, &'a ArgMatches) {
    match matches.subcommand() {
        Some((name, sub_matches)) => match command.find_subcommand(name) {
            Some(sub) => leaf(sub, sub_matches),
            None => (command, matches),
        },
        None => (command, matches),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(file: &str, args: &[&str]) -> anyhow::Result<Cli> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("citygauge.toml");
        std::fs::write(&path, file)?;
        let mut argv: Vec<OsString> = vec!["citygauge".into(), "--config".into(), path.into()];
        argv.extend(args.iter().map(OsString::from));
        parse_from(argv)
    }

    fn ingest(cli: Cli) -> citygauge_ingest::IngestConfig {
        match cli.command {
            Command::Ingest(config) => *config,
            other => panic!("not ingest: {other:?}"),
        }
    }

    #[test]
    fn a_switch_on_by_default_can_be_switched_off_in_the_file() {
        assert!(!ingest(parse_with("orphan_takeover = false\n", &["ingest"]).unwrap()).orphan_takeover);
        assert!(ingest(parse_with("orphan_takeover = true\n", &["ingest"]).unwrap()).orphan_takeover);
        assert!(ingest(parse_with("", &["ingest"]).unwrap()).orphan_takeover);
    }

    #[test]
    fn file_values_apply_and_flags_win() {
        let file = "batch_max_rows = 5000\nmqtt_topics = [\"a/#\", \"b/#\"]\nflush_interval_ms = 50\n";
        let config = ingest(parse_with(file, &["ingest", "--flush-interval-ms", "20"]).unwrap());
        assert_eq!(config.batch_max_rows, 5000);
        assert_eq!(config.mqtt_topics, ["a/#", "b/#"]);
        assert_eq!(config.flush_interval_ms, 20, "the flag wins over the file");
    }

    #[test]
    fn mistakes_in_the_file_name_the_option() {
        let unknown = parse_with("batch_rows = 1\n", &["ingest"]).unwrap_err().to_string();
        assert!(unknown.contains("unknown option `batch_rows`"), "{unknown}");
        let invalid = parse_with("batch_max_rows = \"many\"\n", &["ingest"]).unwrap_err().to_string();
        assert!(invalid.contains("--batch-max-rows"), "{invalid}");
        let profile = "[lorawan.profiles.x]\nkind = \"flood_depth\"\nfeilds = {}\n";
        assert!(parse_with(profile, &["ingest"]).unwrap_err().to_string().contains("[lorawan]"));
    }

    #[test]
    fn device_profiles_come_from_the_file() {
        let file = "[lorawan.profiles.radar]\nkind = \"flood_depth\"\n[lorawan.profiles.radar.fields]\nwater_depth_mm = { column = \"depth_cm\", unit = \"mm\" }\n";
        let config = ingest(parse_with(file, &["ingest"]).unwrap());
        assert!(config.device_profiles.contains_key("radar"));
        config.validate().unwrap();
    }

    /// The sample documents real options: valid as shipped, and with every
    /// commented-out option switched on.
    #[test]
    fn the_sample_config_is_valid() {
        let sample = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/citygauge.toml")).unwrap();
        let config = ingest(parse_with(&sample, &["ingest"]).unwrap());
        config.validate().unwrap();
        assert!(config.device_profiles.len() >= 3, "the demo city's LoRaWAN profiles");
        let uncommented: String = sample
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest
                        .split_once(" = ")
                        .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_')) =>
                {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(uncommented.matches("\nmqtt_").count() >= 8, "options were uncommented");
        let config = ingest(parse_with(&uncommented, &["ingest"]).unwrap());
        config.validate().unwrap();
        assert_eq!(config.mqtt_shared_group.as_deref(), Some("ingest"));
        // The query service's section is real too.
        let cli = parse_with(&uncommented, &["query"]).unwrap();
        let Command::Query(query) = cli.command else { panic!("not query") };
        query.validate().unwrap();
        assert_eq!(query.wet_min_cm, 1.0);
        assert_eq!(query.sse_coalesce_ms, 150, "the query options were uncommented");
    }

    #[test]
    fn query_options_layer_the_same_way() {
        let file = "stale_factor = 5.0\nsse_max_clients = 10\nweb_dir = \"/srv/web\"\n";
        let cli = parse_with(file, &["query", "--sse-max-clients", "20"]).unwrap();
        let Command::Query(config) = cli.command else { panic!("not query") };
        assert_eq!((config.stale_factor, config.sse_max_clients), (5.0, 20), "the flag wins over the file");
        assert_eq!(config.web_dir, std::path::Path::new("/srv/web"));
        let bad = parse_with("stale_factor = \"high\"\n", &["query"]).unwrap_err().to_string();
        assert!(bad.contains("--stale-factor"), "{bad}");
    }

    #[test]
    fn options_of_other_subcommands_are_ignored() {
        let cli = parse_with("batch_max_rows = 5000\n", &["migrate"]).unwrap();
        assert!(matches!(cli.command, Command::Migrate(_)));
    }
}
