//! The table `relay-client bench` prints (and its JSON): each figure of
//! the path measured beside the same over direct TCP.

use serde::Serialize;

use crate::bench::{Measurements, Options};

/// One row of the table.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    /// Stable key for machines (`up_1`, `ping_p50`, ...).
    pub name: &'static str,
    /// What it is, for people.
    pub label: String,
    /// Unit of `value` and `direct`.
    pub unit: &'static str,
    /// Over the measured path.
    pub value: f64,
    /// Over direct TCP, if measured.
    pub direct: Option<f64>,
    /// `value / direct`.
    pub ratio: Option<f64>,
}

/// Peak memory of a process of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Process {
    /// `relay-server`, `relay-agent`, `relay-client`.
    pub name: &'static str,
    /// Peak resident set (VmHWM), KiB.
    pub peak_rss_kib: Option<u64>,
}

/// Reads one figure out of a path's measurements.
type Getter = fn(&Measurements) -> Option<f64>;

/// Everything a run found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// What was measured.
    pub path: String,
    /// The options.
    pub options: Options,
    /// Over the measured path.
    pub measured: Measurements,
    /// Over direct TCP on this machine.
    pub direct: Option<Measurements>,
    /// The table.
    pub figures: Vec<Figure>,
    /// Peak memory of the processes on the path (`--local`).
    pub processes: Vec<Process>,
    /// Remarks (a skipped baseline, say).
    pub notes: Vec<String>,
}

impl Report {
    /// The table rows of `measured` against `direct`.
    pub fn new(
        path: String,
        options: Options,
        measured: Measurements,
        direct: Option<Measurements>,
    ) -> Report {
        let n = options.streams;
        let rows: Vec<(&'static str, String, &'static str, Getter)> = vec![
            (
                "up_1",
                "bulk client→agent, 1 stream".into(),
                "Gbit/s",
                |m| Some(m.up_1.gbit_s),
            ),
            (
                "up_n",
                format!("bulk client→agent, {n} streams"),
                "Gbit/s",
                |m| Some(m.up_n.gbit_s),
            ),
            (
                "down_1",
                "bulk agent→client, 1 stream".into(),
                "Gbit/s",
                |m| Some(m.down_1.gbit_s),
            ),
            (
                "down_n",
                format!("bulk agent→client, {n} streams"),
                "Gbit/s",
                |m| Some(m.down_n.gbit_s),
            ),
            ("ping_p50", "ping-pong 64 B, p50".into(), "µs", |m| {
                Some(m.ping.p50_us)
            }),
            ("ping_p99", "ping-pong 64 B, p99".into(), "µs", |m| {
                Some(m.ping.p99_us)
            }),
            (
                "opens",
                format!("opens (1 B echo; {n} at a time, half-close)"),
                "/s",
                |m| Some(m.opens.per_s),
            ),
            (
                "opens_one",
                "opens (1 B echo; one at a time, close)".into(),
                "/s",
                |m| Some(m.opens_one.per_s),
            ),
            (
                "cpu_up_1",
                "CPU-s per GiB, client→agent, 1 stream".into(),
                "s/GiB",
                |m| m.up_1.cpu_s_per_gib,
            ),
            (
                "cpu_up_n",
                format!("CPU-s per GiB, client→agent, {n} streams"),
                "s/GiB",
                |m| m.up_n.cpu_s_per_gib,
            ),
        ];
        let figures = rows
            .into_iter()
            .filter_map(|(name, label, unit, get)| {
                let value = get(&measured)?;
                let direct = direct.as_ref().and_then(get);
                let ratio = direct.filter(|d| *d > 0.0).map(|d| value / d);
                Some(Figure {
                    name,
                    label,
                    unit,
                    value,
                    direct,
                    ratio,
                })
            })
            .collect();
        Report {
            path,
            options,
            measured,
            direct,
            figures,
            processes: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The table, for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let width = self
            .figures
            .iter()
            .map(|f| f.label.chars().count())
            .max()
            .unwrap_or(10);
        let head = if self.direct.is_some() {
            format!(
                "{:width$}  {:>16}  {:>16}  {:>8}\n",
                "", self.measured.label, "direct TCP", "ratio"
            )
        } else {
            format!("{:width$}  {:>16}\n", "", self.measured.label)
        };
        out.push_str(&head);
        for f in &self.figures {
            let v = format!("{} {}", fmt_num(f.value), f.unit);
            out.push_str(&format!("{:width$}  {v:>16}", f.label));
            if self.direct.is_some() {
                let d = f
                    .direct
                    .map_or("-".into(), |d| format!("{} {}", fmt_num(d), f.unit));
                let r = f.ratio.map_or("-".into(), |r| format!("{r:.2}×"));
                out.push_str(&format!("  {d:>16}  {r:>8}"));
            }
            out.push('\n');
        }
        for p in &self.processes {
            if let Some(kib) = p.peak_rss_kib {
                out.push_str(&format!(
                    "peak RSS of {}: {:.1} MiB\n",
                    p.name,
                    kib as f64 / 1024.0
                ));
            }
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out
    }
}

fn fmt_num(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
