//! Parsers of what clients send the gateway (paths, `grpc-timeout`), kept
//! small and total so that the fuzz targets in `fuzz/` can hammer them.
use std::time::Duration;

/// A tiles path in the form c2sp.org/tlog-tiles defines: `/checkpoint`, or
/// `/tile/` then non-empty segments of `[0-9a-z.]` (`x001`, `000.p`, `entries`).
/// Anything else (empty segments, `..`, escapes) is refused rather than forwarded.
pub fn is_canonical_tiles_path(path: &str) -> bool {
    if path == "/checkpoint" {
        return true;
    }
    let Some(rest) = path.strip_prefix("/tile/") else { return false };
    rest.len() <= 128
        && rest.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'.')
        })
}

/// `/quis.<svc>.v1.<Service>/<Method>` → `<svc>`.
pub fn service_short_name(path: &str) -> Option<&str> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    if method.is_empty() || method.contains('/') {
        return None;
    }
    let mut parts = service.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("quis"), Some(svc), Some(version), Some(_service), None) if version.starts_with('v') => Some(svc),
        _ => None,
    }
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    // ASCII only: splitting off the unit byte must land on a character boundary
    // (found by the gateway_parsers fuzz target).
    if v.len() < 2 || v.len() > 9 || !v.is_ascii() {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The ledger's tlog-tiles paths, forwarded as plain HTTP.
pub fn is_tiles_path(path: &str) -> bool {
    path == "/checkpoint" || path.starts_with("/tile/")
}

/// Follows gRPC length-prefixed framing (1 flag byte, 4-byte big-endian
/// length, the message) across arbitrarily split chunks, without decoding.
#[derive(Debug)]
pub struct FrameScanner {
    max: u32,
    header: [u8; 5],
    header_len: usize,
    remaining: u64,
}

impl FrameScanner {
    pub fn new(max: u32) -> Self {
        Self { max, header: [0; 5], header_len: 0, remaining: 0 }
    }

    /// Feeds the next chunk; false as soon as a frame longer than `max` starts.
    pub fn feed(&mut self, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            if self.remaining > 0 {
                let skip = self.remaining.min(data.len() as u64) as usize;
                self.remaining -= skip as u64;
                data = &data[skip..];
                continue;
            }
            let take = (5 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
            self.header_len += take;
            data = &data[take..];
            if self.header_len == 5 {
                let len = u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]);
                if len > self.max {
                    return false;
                }
                self.remaining = u64::from(len);
                self.header_len = 0;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_package() {
        assert_eq!(service_short_name("/quis.echo.v1.EchoService/Echo"), Some("echo"));
        assert_eq!(service_short_name("/quis.ledger.v2.LedgerService/GetCheckpoint"), Some("ledger"));
        for bad in [
            "/quis.echo.EchoService/Echo",
            "/other.echo.v1.EchoService/Echo",
            "/quis.echo.v1.EchoService/",
            "/quis.echo.v1.EchoService/a/b",
            "/",
        ] {
            assert_eq!(service_short_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_canonical_tiles_paths_are_forwarded() {
        for ok in ["/checkpoint", "/tile/0/000", "/tile/1/x001/x234/067.p/8", "/tile/entries/000"] {
            assert!(is_canonical_tiles_path(ok), "{ok}");
        }
        for bad in
            ["/tile/", "/tile//entries/000", "/tile/../checkpoint", "/tile/entries/%30", "/tile/A/000", "/checkpoint/x"]
        {
            assert!(!is_canonical_tiles_path(bad), "{bad}");
        }
    }

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("99999999S"), Some(Duration::from_secs(99_999_999)));
        for bad in ["", "m", "1x", "123456789S", "-1S", "®", "1®"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    fn frame(len: u32) -> Vec<u8> {
        let mut f = vec![0u8];
        f.extend_from_slice(&len.to_be_bytes());
        f.extend(std::iter::repeat_n(7u8, len as usize));
        f
    }

    fn accepts(chunks: &[&[u8]], max: u32) -> bool {
        let mut scanner = FrameScanner::new(max);
        chunks.iter().all(|c| scanner.feed(c))
    }

    #[test]
    fn frames_split_anywhere_are_measured() {
        let mut stream = frame(10);
        stream.extend(frame(100));
        stream.extend(frame(3));
        for split in 0..stream.len() {
            let (a, b) = stream.split_at(split);
            assert!(accepts(&[a, b], 100), "split at {split}");
            assert!(!accepts(&[a, b], 99), "split at {split} must see the 100-byte frame");
        }
    }
}
