//! The webhook signature scheme: HMAC-SHA256 over `"{timestamp}.{body}"`.
//!
//! Every webhook request carries two headers:
//!
//! ```text
//! Citygauge-Timestamp: 1767225600
//! Citygauge-Signature: v1=5f0c...e3 (64 lowercase hex digits)
//! ```
//!
//! - the timestamp is the Unix time (seconds) at which the request was
//!   signed (each retry is signed afresh, so it is the time of the attempt);
//! - the signature is the lowercase hex HMAC-SHA256, keyed with the
//!   subscription's secret (the 64-character hex string shown once when the
//!   subscription was created, used as is: its ASCII bytes are the key), of
//!   the timestamp, a full stop, and the raw request body bytes exactly as
//!   received.
//!
//! A receiver verifies a request by:
//!
//! 1. reading the raw body before any JSON parsing (re-serialising changes
//!    the bytes);
//! 2. computing `hex(hmac_sha256(secret, timestamp + "." + body))` and
//!    comparing it with each `v1=` value of `Citygauge-Signature` (the
//!    header may list several, comma separated, e.g. while a secret is
//!    rotated) in constant time;
//! 3. rejecting the request when the timestamp is more than 5 minutes from
//!    its own clock (this bounds replays of a captured request);
//! 4. deduplicating on `Idempotency-Key` (the CAP identifier of the
//!    message): delivery is at least once, so the same message may arrive
//!    again after a timeout or a restart.
//!
//! In Python:
//!
//! ```python
//! import hashlib, hmac, time
//!
//! def verify(secret: str, headers, body: bytes, tolerance_s: int = 300) -> bool:
//!     ts = headers["Citygauge-Timestamp"]
//!     if abs(time.time() - int(ts)) > tolerance_s:
//!         return False
//!     expected = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
//!     sigs = [s.strip()[3:] for s in headers["Citygauge-Signature"].split(",") if s.strip().startswith("v1=")]
//!     return any(hmac.compare_digest(expected, s) for s in sigs)
//! ```
//!
//! From a shell, with the body saved to `body.json`:
//!
//! ```sh
//! printf '%s.' "$TS" | cat - body.json | openssl dgst -sha256 -hmac "$SECRET" -hex | sed 's/^.*= //'
//! ```
//!
//! This module is I/O-free: the clock is a parameter.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header carrying the signing time (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "Citygauge-Timestamp";
/// The header carrying `v1=<hex>`.
pub const SIGNATURE_HEADER: &str = "Citygauge-Signature";
/// The header carrying the message's identifier, stable across retries.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// The scheme's version prefix in the signature header.
pub const SCHEME: &str = "v1";
/// How far a request's timestamp may be from the receiver's clock.
pub const DEFAULT_TOLERANCE_S: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

/// Why a request's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The timestamp header is not a whole number of seconds.
    #[error("the timestamp header is not a Unix time in seconds")]
    BadTimestamp,
    /// The timestamp is outside the tolerance: a replay, or a skewed clock.
    #[error("the timestamp is {age_s} s from now, more than the {tolerance_s} s allowed")]
    Stale { age_s: i64, tolerance_s: i64 },
    /// No `v1=` value in the signature header.
    #[error("the signature header has no v1= value")]
    NoSignature,
    /// No `v1=` value matches the body.
    #[error("the signature does not match the body")]
    Mismatch,
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!("hmac accepts any key length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header's value (`v1=<lowercase hex>`) for `body` signed at
/// `timestamp` (Unix seconds).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let code = mac(secret.as_bytes(), &timestamp.to_string(), body).finalize().into_bytes();
    format!("{SCHEME}={}", hex::encode(code))
}

/// Checks a request as a receiver should: the timestamp within
/// `tolerance_s` of `now` (Unix seconds), and one of the header's `v1=`
/// values equal (in constant time) to the HMAC of the timestamp and body.
pub fn verify(
    secret: &str,
    header_ts: &str,
    header_sig: &str,
    body: &[u8],
    now: i64,
    tolerance_s: i64,
) -> Result<(), SignatureError> {
    let header_ts = header_ts.trim();
    let ts: i64 = header_ts.parse().map_err(|_| SignatureError::BadTimestamp)?;
    let age_s = now.saturating_sub(ts);
    if age_s.saturating_abs() > tolerance_s {
        return Err(SignatureError::Stale { age_s, tolerance_s });
    }
    let mut candidates = header_sig
        .split(',')
        .filter_map(|part| part.trim().strip_prefix("v1="))
        .filter_map(|hex_value| hex::decode(hex_value.trim()).ok())
        .peekable();
    if candidates.peek().is_none() {
        return Err(SignatureError::NoSignature);
    }
    // Each comparison is constant-time (`verify_slice`); which of several
    // values matched is not secret.
    let expected = mac(secret.as_bytes(), header_ts, body);
    if candidates.any(|candidate| expected.clone().verify_slice(&candidate).is_ok()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c";
    const BODY: &[u8] = br#"{"idempotency_key":"citygauge:1:1","alert_id":1}"#;
    const TS: i64 = 1_767_225_600;
    // Computed independently:
    // printf '%s' '1767225600.{"idempotency_key":"citygauge:1:1","alert_id":1}' \
    //   | openssl dgst -sha256 -hmac "$SECRET"
    const EXPECTED: &str = "v1=a35a2fc04d230329848ea8c9417406a15d7d55371596c964705b4ec056ceed37";

    #[test]
    fn known_vector() {
        assert_eq!(sign(SECRET, TS, BODY), EXPECTED);
    }

    #[test]
    fn rfc4231_case_2() {
        // The primitive itself, on RFC 4231's test case 2 ("Jefe").
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verifies_its_own_signature() {
        let sig = sign(SECRET, TS, BODY);
        assert_eq!(verify(SECRET, &TS.to_string(), &sig, BODY, TS + 10, DEFAULT_TOLERANCE_S), Ok(()));
        // Several values (rotation): any one matching is enough.
        let both = format!("v1=00ff, {sig}");
        assert_eq!(verify(SECRET, &TS.to_string(), &both, BODY, TS, DEFAULT_TOLERANCE_S), Ok(()));
    }

    #[test]
    fn refuses_tampering_and_replays() {
        let sig = sign(SECRET, TS, BODY);
        let ts = TS.to_string();
        let tampered = br#"{"idempotency_key":"citygauge:1:1","alert_id":2}"#;
        assert_eq!(verify(SECRET, &ts, &sig, tampered, TS, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify("other", &ts, &sig, BODY, TS, 300), Err(SignatureError::Mismatch));
        // The timestamp is signed: moving it breaks the signature.
        assert_eq!(verify(SECRET, &(TS + 1).to_string(), &sig, BODY, TS, 300), Err(SignatureError::Mismatch));
        assert_eq!(
            verify(SECRET, &ts, &sig, BODY, TS + 301, 300),
            Err(SignatureError::Stale { age_s: 301, tolerance_s: 300 })
        );
        assert_eq!(
            verify(SECRET, &ts, &sig, BODY, TS - 301, 300),
            Err(SignatureError::Stale { age_s: -301, tolerance_s: 300 })
        );
        assert_eq!(verify(SECRET, "soon", &sig, BODY, TS, 300), Err(SignatureError::BadTimestamp));
        assert_eq!(verify(SECRET, &ts, "v0=abc", BODY, TS, 300), Err(SignatureError::NoSignature));
        assert_eq!(verify(SECRET, &ts, "v1=zz", BODY, TS, 300), Err(SignatureError::NoSignature));
        assert_eq!(verify(SECRET, &ts, &sig[..21], BODY, TS, 300), Err(SignatureError::Mismatch));
    }
}
