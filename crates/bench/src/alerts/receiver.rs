//! The subscriber: an HTTP receiver on port 0 in this process that notes
//! when each webhook arrived (before anything else is done with it) and keeps
//! the request, so signatures are checked after the run, off the timed path.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, Utc};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Hook {
    pub at: DateTime<Utc>,
    pub timestamp: String,
    pub signature: String,
    pub idempotency_key: String,
    pub body: Bytes,
}

#[derive(Debug, Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    hooks: Arc<Mutex<Vec<Hook>>>,
}

async fn receive(State(hooks): State<Arc<Mutex<Vec<Hook>>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = Utc::now();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let hook = Hook {
        at,
        timestamp: header("citygauge-timestamp"),
        signature: header("citygauge-signature"),
        idempotency_key: header("idempotency-key"),
        body,
    };
    hooks.lock().unwrap_or_else(|e| e.into_inner()).push(hook);
    StatusCode::NO_CONTENT
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Receiver> {
        let hooks = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().route("/hook", post(receive)).with_state(hooks.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Receiver { addr, hooks })
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn hooks(&self) -> Vec<Hook> {
        self.hooks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn count(&self) -> usize {
        self.hooks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Requests whose signature does not verify with `secret` (HMAC-SHA256 over
/// `"{timestamp}.{body}"`, the timestamp within 5 minutes of receipt).
pub fn unsigned(hooks: &[Hook], secret: &str) -> usize {
    hooks
        .iter()
        .filter(|h| {
            citygauge_alerts::signing::verify(secret, &h.timestamp, &h.signature, &h.body, h.at.timestamp(), 300)
                .is_err()
        })
        .count()
}
