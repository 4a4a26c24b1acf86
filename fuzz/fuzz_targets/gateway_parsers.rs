//! Everything the gateway reads from a client before routing: the path,
//! `grpc-timeout`, `traceparent`, and gRPC frame headers split anywhere.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quis_gateway::parse::{FrameScanner, is_canonical_tiles_path, parse_grpc_timeout, service_short_name};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(svc) = service_short_name(text) {
            assert!(!svc.is_empty() && !svc.contains('/') && !svc.contains('.'));
        }
        let _ = parse_grpc_timeout(text);
        if is_canonical_tiles_path(text) {
            assert!(!text.contains("//") && !text.contains(".."));
        }
        if let Ok(value) = http::HeaderValue::from_str(text) {
            let mut headers = http::HeaderMap::new();
            headers.insert("traceparent", value);
            let trace = quis_gateway::trace::TraceContext::continue_or_start(&headers);
            assert_eq!(trace.traceparent().len(), 55);
        }
    }
    // The same byte stream split at every point gives the same verdict.
    if data.len() > 1 {
        let max = u32::from(data[0]) * 4;
        let whole = FrameScanner::new(max).feed(&data[1..]);
        let split = 1 + usize::from(data[0]) % (data.len() - 1);
        let mut scanner = FrameScanner::new(max);
        let parts = scanner.feed(&data[1..split]) && scanner.feed(&data[split..]);
        assert_eq!(whole, parts);
    }
});
