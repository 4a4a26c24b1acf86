//! Where a benchmark's calls spend their time, read from the process's own
//! Prometheus histograms: the per-stage times of the vault
//! (`quis_stage_seconds`) and each service's server-side call times
//! (`quis_grpc_request_duration_seconds`), over the window between two renders.
use std::collections::BTreeMap;

/// Cumulative bucket counts by upper bound, per series (its labels without `le`).
type Buckets = BTreeMap<String, Vec<(f64, f64)>>;

/// The `_bucket` lines of `metric` in a Prometheus text render.
fn buckets(render: &str, metric: &str) -> Buckets {
    let prefix = format!("{metric}_bucket{{");
    let mut out = Buckets::new();
    for line in render.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else { continue };
        let Some((labels, value)) = rest.rsplit_once("} ") else { continue };
        let (Some((series, le)), Ok(count)) = (labels.rsplit_once(",le=\""), value.trim().parse::<f64>()) else {
            continue;
        };
        let bound = match le.trim_end_matches('"') {
            "+Inf" => f64::INFINITY,
            le => match le.parse() {
                Ok(bound) => bound,
                Err(_) => continue,
            },
        };
        out.entry(series.to_string()).or_default().push((bound, count));
    }
    for counts in out.values_mut() {
        counts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// The `q` quantile of cumulative `counts`, interpolated inside its bucket as
/// Prometheus' `histogram_quantile` does; the last finite bound if it lies beyond.
fn quantile(counts: &[(f64, f64)], q: f64) -> f64 {
    let total = counts.last().map_or(0.0, |c| c.1);
    let rank = q * total;
    let mut below = (0.0, 0.0);
    for &(bound, cumulative) in counts {
        if cumulative >= rank {
            if bound.is_infinite() {
                return below.0;
            }
            let inside = cumulative - below.1;
            let share = if inside > 0.0 { (rank - below.1) / inside } else { 1.0 };
            return below.0 + (bound - below.0) * share;
        }
        below = (bound, cumulative);
    }
    below.0
}

/// One row per series of `metric` with at least `min_calls` calls between the
/// renders `before` and `after`: calls, p50, p90 and p99 in µs.
fn table(before: &str, after: &str, metric: &str, min_calls: f64) -> Vec<String> {
    let earlier = buckets(before, metric);
    let mut rows = Vec::new();
    for (series, counts) in buckets(after, metric) {
        let old = earlier.get(&series);
        let window: Vec<(f64, f64)> = counts
            .iter()
            .map(|&(bound, n)| {
                let was = old.and_then(|o| o.iter().find(|(b, _)| *b == bound)).map_or(0.0, |o| o.1);
                (bound, n - was)
            })
            .collect();
        let calls = window.last().map_or(0.0, |c| c.1);
        if calls < min_calls {
            continue;
        }
        let [p50, p90, p99] = [0.5, 0.9, 0.99].map(|q| quantile(&window, q) * 1e6);
        rows.push(format!("{:<58} {calls:>9.0} {p50:>9.0} {p90:>9.0} {p99:>9.0}", series.replace('"', "")));
    }
    rows
}

/// Prints [`header`] and the [`table`]s of the stages and of every hop's server-side time.
pub(crate) fn print(before: &str, after: &str, min_calls: f64) {
    println!("{}", header());
    for metric in ["quis_stage_seconds", "quis_grpc_request_duration_seconds"] {
        for line in table(before, after, metric, min_calls) {
            println!("{line}");
        }
    }
}

/// The header of [`table`]'s rows.
fn header() -> String {
    format!(
        "{:<58} {:>9} {:>9} {:>9} {:>9}",
        "series (server side; bucket-interpolated)", "calls", "p50 µs", "p90 µs", "p99 µs"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
quis_stage_seconds_bucket{service=\"vault\",stage=\"ledger\",le=\"0.001\"} 10
quis_stage_seconds_bucket{service=\"vault\",stage=\"ledger\",le=\"0.01\"} 10
quis_stage_seconds_bucket{service=\"vault\",stage=\"ledger\",le=\"+Inf\"} 10
";
    const AFTER: &str = "\
# TYPE quis_stage_seconds histogram
quis_stage_seconds_bucket{service=\"vault\",stage=\"ledger\",le=\"0.001\"} 60
quis_stage_seconds_bucket{service=\"vault\",stage=\"ledger\",le=\"0.01\"} 110
quis_stage_seconds_bucket{service=\"vault\",stage=\"ledger\",le=\"+Inf\"} 110
quis_stage_seconds_sum{service=\"vault\",stage=\"ledger\"} 0.5
quis_stage_seconds_bucket{service=\"vault\",stage=\"index\",le=\"0.001\"} 1
quis_stage_seconds_bucket{service=\"vault\",stage=\"index\",le=\"+Inf\"} 1
";

    #[test]
    fn quantiles_interpolate_within_the_window_between_renders() {
        let rows = table(BEFORE, AFTER, "quis_stage_seconds", 2.0);
        // 100 calls in the window: 50 under 1 ms, 50 between 1 and 10 ms; the series with one call is left out.
        assert_eq!(rows.len(), 1, "{rows:?}");
        let figures: Vec<&str> = rows[0].split_whitespace().collect();
        assert_eq!(figures, ["service=vault,stage=ledger", "100", "1000", "8200", "9820"]);
    }

    #[test]
    fn a_quantile_beyond_the_last_finite_bound_is_that_bound() {
        let counts = [(0.001, 1.0), (0.01, 2.0), (f64::INFINITY, 100.0)];
        assert_eq!(quantile(&counts, 0.99), 0.01);
        assert_eq!(quantile(&counts, 0.005), 0.0005);
    }
}
