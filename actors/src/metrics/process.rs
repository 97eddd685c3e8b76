//! What the process is and what it uses: `optimystic_build_info` (version and
//! build profile as labels, value 1) and the conventional `process_*` metrics —
//! resident memory, CPU time, open file descriptors, start time — read from
//! `/proc/self` at scrape time. Where `/proc` is missing (not Linux) the
//! `process_*` metrics are left out; build info is always there.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, which Linux
/// fixes at 100 for user space on every architecture.
const USER_HZ: f64 = 100.0;

/// Build info and process resource use.
#[derive(Debug)]
pub struct ProcessCollector {
    version: &'static str,
    started: f64,
}

impl ProcessCollector {
    /// A collector for a binary of `version`, started now.
    pub fn new(version: &'static str) -> Self {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Self { version, started }
    }
}

/// What `/proc/self` says now.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ProcessStats {
    pub(crate) rss_bytes: Option<u64>,
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) open_fds: Option<u64>,
}

impl ProcessStats {
    /// Reads `/proc/self`; each figure is `None` when its file is missing.
    pub(crate) fn read() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").ok();
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        Self {
            rss_bytes: status.as_deref().and_then(rss_of_status),
            cpu_seconds: stat.as_deref().and_then(cpu_of_stat),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64),
        }
    }
}

/// `VmRSS:   1234 kB` of `/proc/self/status`, in bytes.
fn rss_of_status(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// User plus system time of `/proc/self/stat`, in seconds. The command name
/// (field 2) is in parentheses and may hold spaces, so fields are counted from
/// the last `)`: utime and stime are fields 14 and 15.
fn cpu_of_stat(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        e.encode_descriptor(
            "optimystic_build_info",
            "The running binary: its version and build profile (value 1)",
            None,
            MetricType::Gauge,
        )?
        .encode_family(&[("version", self.version), ("profile", profile)])?
        .encode_gauge(&1i64)?;
        let now = ProcessStats::read();
        if let Some(rss) = now.rss_bytes {
            e.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&i64::try_from(rss).unwrap_or(i64::MAX))?;
        }
        if let Some(cpu) = now.cpu_seconds {
            e.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&cpu, None)?;
        }
        if let Some(fds) = now.open_fds {
            e.encode_descriptor(
                "process_open_fds",
                "Open file descriptors",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&i64::try_from(fds).unwrap_or(i64::MAX))?;
        }
        e.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&self.started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_parsed() {
        let status = "Name:\toptimystic\nVmPeak:\t  9000 kB\nVmRSS:\t   2048 kB\nThreads:\t5\n";
        assert_eq!(rss_of_status(status), Some(2048 * 1024));
        // A command name with spaces and parentheses; utime 250, stime 50 ticks.
        let stat = "4242 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 5 0 100 0";
        assert_eq!(cpu_of_stat(stat), Some(3.0));
        assert_eq!(cpu_of_stat("garbage"), None);
    }

    #[test]
    fn this_process_reports_memory_and_descriptors() {
        let now = ProcessStats::read();
        assert!(now.rss_bytes.is_some_and(|b| b > 1 << 20), "{now:?}");
        assert!(now.open_fds.is_some_and(|n| n >= 3), "{now:?}");
        assert!(now.cpu_seconds.is_some(), "{now:?}");
    }
}
