//! The gateway's own service token, presented to upstreams in
//! `quis-forwarded-by` so that they believe the `quis-source-address` it sets
//! (see `quis_auth::layer`). The token is read from its source at most every
//! few seconds, not per call.
use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use http::HeaderValue;
use quis_auth::ServiceCredentials;

/// How long a read token is reused before its source is read again.
const REFRESH: Duration = Duration::from_secs(5);

pub struct ForwardedBy {
    credentials: ServiceCredentials,
    current: Mutex<Option<(HeaderValue, Instant)>>,
}

impl ForwardedBy {
    pub fn new(credentials: ServiceCredentials) -> Self {
        Self { credentials, current: Mutex::new(None) }
    }

    /// The header value for the next upstream call. Without one, upstreams take the
    /// gateway's own address as the source: less precise, never forged.
    pub fn header(&self) -> Option<HeaderValue> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((value, read_at)) = current.as_ref()
            && read_at.elapsed() < REFRESH
        {
            return Some(value.clone());
        }
        match self.credentials.header() {
            Ok(value) => {
                let value = HeaderValue::from_bytes(value.as_bytes()).ok()?;
                *current = Some((value.clone(), Instant::now()));
                Some(value)
            }
            Err(e) => {
                tracing::error!(error = %e, "no gateway token: upstreams see the gateway as every call's source");
                *current = None;
                None
            }
        }
    }
}
