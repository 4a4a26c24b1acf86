//! W3C trace context (`traceparent`): the gateway continues a caller's trace
//! or starts one, and passes its own span id on to the upstream.
use http::HeaderMap;
use rand::RngCore;

pub struct TraceContext {
    pub trace_id: String,
    span_id: String,
    flags: String,
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && s.bytes().any(|b| b != b'0')
}

impl TraceContext {
    pub fn continue_or_start(headers: &HeaderMap) -> Self {
        let mut rng = rand::thread_rng();
        let mut span = [0u8; 8];
        rng.fill_bytes(&mut span);
        let span_id = hex(&span);
        let parsed = headers.get("traceparent").and_then(|v| v.to_str().ok()).and_then(|v| {
            let mut parts = v.split('-');
            let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            (version == "00" && is_hex(trace, 32) && is_hex(parent, 16) && flags.len() == 2 && parts.next().is_none())
                .then(|| (trace.to_string(), flags.to_string()))
        });
        match parsed {
            Some((trace_id, flags)) => Self { trace_id, span_id, flags },
            None => {
                let mut trace = [0u8; 16];
                rng.fill_bytes(&mut trace);
                Self { trace_id: hex(&trace), span_id, flags: "01".into() }
            }
        }
    }

    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_a_valid_trace_and_replaces_a_bad_one() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
        let t = TraceContext::continue_or_start(&headers);
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(!t.traceparent().contains("00f067aa0ba902b7"));
        headers.insert("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01".parse().unwrap());
        assert_ne!(TraceContext::continue_or_start(&headers).trace_id, "00000000000000000000000000000000");
    }
}
