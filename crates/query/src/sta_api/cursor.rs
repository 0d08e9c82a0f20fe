//! The opaque `$skiptoken` of `@iot.nextLink`: the sort-key values of the
//! last entity of a page (the `$orderby` keys, then the id). The next page
//! starts strictly after them, so entities arriving meanwhile neither shift
//! the pages (no repeats) nor push entities past the boundary (no skips),
//! unlike `$skip`. The values are bound as parameters when used; a token a
//! client altered can at worst select another page or get a 400.

/// The longest token accepted (hex of a small JSON array).
const MAX_TOKEN_CHARS: usize = 8 * 1024;

pub fn encode(values: &[Option<String>]) -> String {
    hex::encode(serde_json::to_vec(values).unwrap_or_default())
}

pub fn decode(token: &str) -> Result<Vec<Option<String>>, String> {
    let bad = || "is not a token this server issued".to_string();
    if token.len() > MAX_TOKEN_CHARS {
        return Err(bad());
    }
    let bytes = hex::decode(token).map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_refusal() {
        let v = vec![Some("2026-11-30 16:00:00+00".to_string()), None, Some("'; DROP TABLE x".into())];
        assert_eq!(super::decode(&super::encode(&v)).unwrap(), v);
        assert!(super::decode("zz").is_err());
        assert!(super::decode(&hex::encode("{}")).is_err());
    }
}
