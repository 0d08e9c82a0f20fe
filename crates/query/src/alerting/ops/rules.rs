//! The rule set in force and its history (`alert_rule_sets`, newest last).
//! With no row, the rules are the `--alert-rules-file` if given, else the
//! built-in defaults; the evaluator installs the same.

use std::path::Path;

use chrono::{DateTime, Utc};
use citygauge_alerts::{AlertError, RuleSet};
use serde::Serialize;
use serde_json::{json, Value};
use tokio_postgres::{GenericClient, Row};
use utoipa::ToSchema;

use super::{notify, CONFIG_CHANNEL};
use crate::alerting::auth::Operator;
use crate::QueryError;

/// The rules in force and where they come from.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RulesInForce {
    /// `database` (set through the API), `file` (`--alert-rules-file`) or `default`.
    pub source: String,
    #[serde(flatten)]
    pub record: Option<RuleSetRecord>,
    /// The whole rule set (`citygauge_alerts::RuleSet`).
    #[schema(value_type = Object)]
    pub rules: Value,
}

/// One stored rule set.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RuleSetRecord {
    pub id: i64,
    pub changed_by: String,
    pub changed_at: DateTime<Utc>,
    pub note: Option<String>,
}

impl RuleSetRecord {
    fn from_row(row: &Row) -> RuleSetRecord {
        RuleSetRecord { id: row.get(0), changed_by: row.get(1), changed_at: row.get(2), note: row.get(3) }
    }
}

pub async fn current_rules(client: &impl GenericClient, file: Option<&Path>) -> Result<RulesInForce, QueryError> {
    let row = client
        .query_opt("SELECT id, changed_by, changed_at, note, rules FROM alert_rule_sets ORDER BY id DESC LIMIT 1", &[])
        .await?;
    if let Some(row) = row {
        return Ok(RulesInForce {
            source: "database".into(),
            record: Some(RuleSetRecord::from_row(&row)),
            rules: row.get(4),
        });
    }
    if let Some(path) = file {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| QueryError::Config(format!("--alert-rules-file {}: {e}", path.display())))?;
        let rules = RuleSet::from_toml(&text)
            .map_err(|e| QueryError::Config(format!("--alert-rules-file {}: {e}", path.display())))?;
        return Ok(RulesInForce { source: "file".into(), record: None, rules: rules.to_json() });
    }
    Ok(RulesInForce { source: "default".into(), record: None, rules: RuleSet::default().to_json() })
}

/// Records `rules` (already validated) as the set in force and tells the evaluator.
pub async fn put_rules(
    client: &mut tokio_postgres::Client,
    rules: &RuleSet,
    who: &Operator,
    note: Option<&str>,
) -> Result<RulesInForce, QueryError> {
    let tx = client.transaction().await?;
    let value = rules.to_json();
    let row = tx
        .query_one(
            "INSERT INTO alert_rule_sets (rules, changed_by, note) VALUES ($1, $2, $3) \
             RETURNING id, changed_by, changed_at, note",
            &[&value, &who.name, &note],
        )
        .await?;
    let record = RuleSetRecord::from_row(&row);
    notify(&tx, CONFIG_CHANNEL, &json!({"what": "rules", "id": record.id})).await?;
    tx.commit().await?;
    Ok(RulesInForce { source: "database".into(), record: Some(record), rules: value })
}

/// Stored rule sets, newest first, with their rules.
pub async fn rules_history(client: &impl GenericClient, limit: i64) -> Result<Vec<RulesInForce>, QueryError> {
    let rows = client
        .query(
            "SELECT id, changed_by, changed_at, note, rules FROM alert_rule_sets ORDER BY id DESC LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| RulesInForce {
            source: "database".into(),
            record: Some(RuleSetRecord::from_row(row)),
            rules: row.get(4),
        })
        .collect())
}

/// `value` as a rule set, or 400 `invalid` naming the offending field.
pub fn parse_rules(value: Value) -> Result<RuleSet, QueryError> {
    match RuleSet::from_json(value.clone()) {
        Ok(rules) => Ok(rules),
        // serde says what is wrong but not where: find where by walking the
        // document alongside the defaults.
        Err(AlertError::RulesSyntax(why)) => {
            let field = first_mismatch(&RuleSet::default().to_json(), &value, "").unwrap_or_else(|| "rules".into());
            Err(QueryError::invalid(field, why))
        }
        Err(other) => Err(other.into()),
    }
}

/// The first field of `given` that the defaults do not have, or whose JSON
/// type differs from the default's.
fn first_mismatch(default: &Value, given: &Value, path: &str) -> Option<String> {
    let here = || Some(if path.is_empty() { "rules".to_string() } else { path.to_string() });
    match (default, given) {
        (Value::Object(d), Value::Object(g)) => g.iter().find_map(|(k, v)| {
            let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            match d.get(k) {
                Some(dv) => first_mismatch(dv, v, &p),
                // An empty default object may be an open map (any key).
                None if d.is_empty() => None,
                None => Some(p),
            }
        }),
        (Value::Array(d), Value::Array(g)) => {
            let template = d.first()?;
            g.iter().enumerate().find_map(|(i, v)| first_mismatch(template, v, &format!("{path}[{i}]")))
        }
        (Value::Null, _) => None,
        (Value::Object(_), _) | (Value::Array(_), _) => here(),
        (Value::Number(_), v) if !v.is_number() => here(),
        (Value::String(_), v) if !v.is_string() => here(),
        (Value::Bool(_), v) if !v.is_boolean() => here(),
        _ => None,
    }
}
