//! What a benchmark shows while it runs and what it costs: progress bars,
//! CPU seconds and peak memory of the processes on the path.

/// A progress sink: an `indicatif` bar, or nothing.
#[derive(Clone, Debug)]
pub struct Progress {
    enabled: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// Draws one bar per measurement on stderr (indicatif hides them when
    /// stderr is not a terminal).
    pub fn stderr() -> Progress {
        Progress {
            enabled: true,
            bar: None,
        }
    }

    /// Draws nothing.
    pub fn hidden() -> Progress {
        Progress {
            enabled: false,
            bar: None,
        }
    }

    pub(super) fn phase(&self, label: String, len: u64, bytes: bool) -> Progress {
        if !self.enabled {
            return Progress::hidden();
        }
        let template = if bytes {
            "{msg:40} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}"
        } else {
            "{msg:40} [{bar:30}] {pos}/{len} {per_sec}"
        };
        let style = indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(len),
            indicatif::ProgressDrawTarget::stderr(),
        )
        .with_style(style)
        .with_message(label);
        Progress {
            enabled: true,
            bar: Some(bar),
        }
    }

    pub(super) fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    pub(super) fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// CPU time of a set of processes (this one included), for CPU-seconds per
/// GiB: `/proc/PID/stat` utime + stime, where there is a `/proc`.
#[derive(Clone, Debug, Default)]
pub struct CpuMeter {
    pids: Vec<u32>,
}

impl CpuMeter {
    /// This process plus `others`.
    pub fn new(others: &[u32]) -> CpuMeter {
        let mut pids = vec![std::process::id()];
        pids.extend_from_slice(others);
        CpuMeter { pids }
    }

    /// Total CPU seconds so far, if every process could be read.
    pub fn total(&self) -> Option<f64> {
        self.pids.iter().map(|&p| cpu_seconds(p)).sum()
    }
}

/// CPU seconds (user + system) of `pid`, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux architecture we build for.
    Some((utime + stime) as f64 / 100.0)
}

/// Peak resident memory of `pid` in KiB (`VmHWM` of `/proc/PID/status`).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
