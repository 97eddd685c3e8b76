//! Latency statistics of a bench run: percentiles and a histogram per kind of
//! operation, and the histogram drawn as text.

use std::time::Duration;

use serde::Serialize;

/// Upper bounds of the histogram's buckets, in µs (a last bucket takes the rest).
const BOUNDS_US: [u64; 15] = [
    100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000, 2_000_000, 5_000_000,
];

/// One bucket: operations that took at most `le_us` (`None`: longer than the
/// last bound).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Bucket {
    pub(super) le_us: Option<u64>,
    pub(super) count: u64,
}

/// What one kind of operation measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Summary {
    pub(super) operations: u64,
    pub(super) p50_us: u64,
    pub(super) p90_us: u64,
    pub(super) p99_us: u64,
    pub(super) max_us: u64,
    pub(super) histogram: Vec<Bucket>,
}

/// Percentiles and histogram of `lat` (sorted in place).
pub(super) fn summarize(lat: &mut [Duration]) -> Summary {
    lat.sort_unstable();
    let us = |d: &Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let pct = |p: f64| {
        let i = ((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1));
        lat.get(i).map_or(0, us)
    };
    let mut histogram: Vec<Bucket> = BOUNDS_US
        .iter()
        .map(|b| Bucket {
            le_us: Some(*b),
            count: 0,
        })
        .chain([Bucket {
            le_us: None,
            count: 0,
        }])
        .collect();
    for d in lat.iter() {
        let i = BOUNDS_US.partition_point(|b| *b < us(d));
        histogram[i].count += 1;
    }
    Summary {
        operations: lat.len() as u64,
        p50_us: pct(0.5),
        p90_us: pct(0.9),
        p99_us: pct(0.99),
        max_us: lat.last().map_or(0, us),
        histogram,
    }
}

fn label(le_us: Option<u64>) -> String {
    match le_us {
        None => format!("> {}", duration(BOUNDS_US[BOUNDS_US.len() - 1])),
        Some(us) => format!("≤ {}", duration(us)),
    }
}

fn duration(us: u64) -> String {
    match us {
        1_000_000.. => format!("{} s", us / 1_000_000),
        1_000.. => format!("{} ms", us / 1_000),
        _ => format!("{us} µs"),
    }
}

/// The histogram as text, one line per bucket from the first to the last that
/// holds anything, with a bar scaled to the fullest.
pub(super) fn render(name: &str, s: &Summary) -> String {
    let mut out = format!(
        "{name}: {} ops, p50 {} µs, p90 {} µs, p99 {} µs, max {} µs\n",
        s.operations, s.p50_us, s.p90_us, s.p99_us, s.max_us
    );
    let used: Vec<usize> = (0..s.histogram.len())
        .filter(|i| s.histogram[*i].count > 0)
        .collect();
    let (Some(first), Some(last)) = (used.first(), used.last()) else {
        return out;
    };
    let top = s
        .histogram
        .iter()
        .map(|b| b.count)
        .max()
        .unwrap_or(1)
        .max(1);
    for b in &s.histogram[*first..=*last] {
        let width = (b.count * 40).div_ceil(top) as usize;
        out += &format!(
            "  {:>9} {:<40} {}\n",
            label(b.le_us),
            "█".repeat(width),
            b.count
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_buckets() {
        let mut lat: Vec<Duration> = [150, 90, 3_000, 3_000, 7_000_000]
            .iter()
            .map(|us| Duration::from_micros(*us))
            .collect();
        let s = summarize(&mut lat);
        assert_eq!((s.operations, s.p50_us, s.max_us), (5, 3_000, 7_000_000));
        let count = |le: Option<u64>| s.histogram.iter().find(|b| b.le_us == le).unwrap().count;
        assert_eq!(count(Some(100)), 1);
        assert_eq!(count(Some(200)), 1);
        assert_eq!(count(Some(5_000)), 2);
        assert_eq!(count(None), 1);
        assert_eq!(s.histogram.iter().map(|b| b.count).sum::<u64>(), 5);
        let text = render("write", &s);
        assert!(text.starts_with("write: 5 ops, p50 3000 µs"), "{text}");
        assert!(
            text.contains("≤ 100 µs") && text.contains("> 5 s"),
            "{text}"
        );
        assert_eq!(render("read", &summarize(&mut [])).lines().count(), 1);
    }
}
