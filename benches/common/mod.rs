//! Shared by the bench binaries: repetition statistics, the machine description, RSS, and the
//! peers' own measurements (openssl speed), so every figure is printed beside its ceiling.

#![allow(dead_code)] // each bench binary uses a subset

use std::process::Command;
use std::time::{Duration, Instant};

/// How many times each figure is measured (median and min–max are reported); `BENCH_RUNS`.
pub fn runs() -> usize {
    std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(3)
}

/// Seconds each throughput run lasts; `BENCH_SECONDS`.
pub fn seconds() -> Duration {
    Duration::from_secs_f64(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3.0),
    )
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Median, min and max of a set of runs.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(values: &[f64]) -> Stats {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Stats {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }

    /// `12345 (12000–12500)`
    pub fn show(&self, decimals: usize) -> String {
        format!(
            "{:.*} ({:.*}–{:.*})",
            decimals, self.median, decimals, self.min, decimals, self.max
        )
    }
}

/// The value at quantile `q` (0..=1) of unsorted samples (nearest rank).
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Runs `op` on `threads` threads for `dur`; returns operations per second (all threads).
pub fn rate(threads: usize, dur: Duration, op: impl Fn() + Sync) -> f64 {
    let start = Instant::now();
    let counts: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while start.elapsed() < dur {
                        op();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    counts.iter().sum::<u64>() as f64 / start.elapsed().as_secs_f64()
}

/// nproc, CPU model and kernel: the line every figure in BENCHMARKS.md is tagged with.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    format!(
        "nproc={} cpu=\"{model}\" kernel={kernel} loadavg(at start)={load}",
        cores()
    )
}

/// `VmRSS` and `VmHWM` of a process (`self` or a pid), in KiB.
pub fn rss_kib(pid: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// `openssl speed -seconds S [-multi N] ALG`: signatures per second (all processes).
/// `alg` is `ecdsap256` or `ed25519`. Returns None when openssl is missing or its output changed.
pub fn openssl_sign_rate(alg: &str, seconds: u32, multi: usize) -> Option<f64> {
    openssl_speed(alg, seconds, multi).map(|(sign, _)| sign)
}

/// `openssl speed -seconds S [-multi N] ALG`: (signatures, verifications) per second.
pub fn openssl_speed(alg: &str, seconds: u32, multi: usize) -> Option<(f64, f64)> {
    let mut cmd = Command::new("openssl");
    cmd.arg("speed").arg("-seconds").arg(seconds.to_string());
    if multi > 1 {
        cmd.arg("-multi").arg(multi.to_string());
    }
    let out = cmd.arg(alg).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The summary table: ` 256 bits ecdsa (nistp256)   0.0000s   0.0001s  43915.2  13658.3`
    // or `253 bits EdDSA (Ed25519)   0.0000s   0.0001s  30000.0  10000.0`: sign/s and verify/s
    // are the last two columns. With -multi the same table sums every process.
    let needle = match alg {
        "ecdsap256" => "(nistp256)",
        "ed25519" => "(Ed25519)",
        _ => return None,
    };
    let line = text.lines().rev().find(|l| l.contains(needle))?;
    let cols: Vec<&str> = line.split_whitespace().collect();
    let [.., sign, verify] = cols[..] else {
        return None;
    };
    Some((sign.parse().ok()?, verify.parse().ok()?))
}
