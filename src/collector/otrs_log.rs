//! The `otrs_log` collector: advances the followed OTRS log files (File backend, and/or a
//! syslog file receiving the SysLog backend) before the segment is read, so every scrape
//! counts every message written up to it. The counts themselves live in the segment
//! (`otrs_log_messages_total`, see [`crate::ingest::otrs_log`]); this collector only reports
//! where the followers stand.
//!
//! With `otrs_log.date_suffix` (OTRS `LogModule::LogFile::Date`) the file name is
//! `<file>.YYYY-MM` in local time (zero-padded month as Znuny writes it; the unpadded name of
//! old OTRS is used when only that one exists). At a month switch the previous month's file
//! is read to its end, and the new file is read from its start: a cursor for last month's
//! file proves the exporter was following before the switch.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::segment::SegmentSource;
use super::{CollectError, Collector, Context};
use crate::config::OtrsLogConfig;
use crate::ingest::follow::{Advance, Follower};
use crate::ingest::otrs_log::{Format, OtrsLogSink};
use crate::segment::Segment;
use crate::snapshot::{Family, MetricKind};

/// (year, month 1..=12) in local time, `months_back` months before now.
fn local_month(months_back: u32) -> (i32, u32) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as libc::time_t;
    // SAFETY: localtime_r writes only into the zeroed struct we pass.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&now, &mut tm) };
    let idx = (tm.tm_year + 1900) * 12 + tm.tm_mon - months_back as i32;
    (idx.div_euclid(12), (idx.rem_euclid(12) + 1) as u32)
}

/// The monthly file name for (`year`, `month`): `<base>.YYYY-MM`, or `<base>.YYYY-M` if only
/// that one exists (OTRS before Znuny did not pad the month).
pub fn monthly_path(base: &str, (year, month): (i32, u32)) -> PathBuf {
    let padded = PathBuf::from(format!("{base}.{year}-{month:02}"));
    let plain = PathBuf::from(format!("{base}.{year}-{month}"));
    if month < 10 && !padded.exists() && plain.exists() {
        plain
    } else {
        padded
    }
}

fn io_err(p: &Path) -> impl FnOnce(std::io::Error) -> CollectError + '_ {
    move |e| CollectError::new(format!("{}: {e}", p.display()))
}

/// This month's file of the monthly log series `base`.
pub fn current_path(base: &str) -> PathBuf {
    monthly_path(base, local_month(0))
}

/// One followed OTRS log (a fixed path, or a monthly series of files).
struct Followed {
    format: Format,
    base: String,
    monthly: bool,
    current: Option<Follower<OtrsLogSink>>,
}

impl Followed {
    fn sink(&self, seg: &Segment, cfg: &OtrsLogConfig) -> Result<OtrsLogSink, CollectError> {
        OtrsLogSink::new(seg, self.format, cfg.module_cap, cfg.prefix_cap)
            .map_err(CollectError::new)
    }

    fn follower(
        &self,
        seg: &Segment,
        cfg: &OtrsLogConfig,
        path: &Path,
    ) -> Result<Follower<OtrsLogSink>, CollectError> {
        Follower::with_sink(seg, path, self.sink(seg, cfg)?).map_err(CollectError::new)
    }

    fn advance(
        &mut self,
        seg: &Segment,
        cfg: &OtrsLogConfig,
        budget: Duration,
    ) -> Result<Advance, CollectError> {
        let path = if self.monthly {
            monthly_path(&self.base, local_month(0))
        } else {
            PathBuf::from(&self.base)
        };
        if self.current.as_ref().map(|f| f.path()) != Some(path.as_path()) {
            let mut f = self.follower(seg, cfg, &path)?;
            if self.monthly && f.cursor().0 == 0 {
                let prev_path = monthly_path(&self.base, local_month(1));
                let mut prev = self.follower(seg, cfg, &prev_path)?;
                if prev.cursor().0 != 0 {
                    // We followed last month's file: finish it, then read this one whole.
                    prev.advance(budget).map_err(io_err(&prev_path))?;
                    f = f.from_start();
                }
            }
            self.current = Some(f);
        }
        let f = self.current.as_mut().expect("set above");
        f.advance(budget).map_err(io_err(&path))
    }
}

/// Reads new OTRS log lines on every scrape.
pub struct OtrsLogCollector {
    source: Arc<SegmentSource>,
    cfg: OtrsLogConfig,
    logs: Mutex<Vec<Followed>>,
}

impl OtrsLogCollector {
    /// A collector for the logs `cfg` names (an empty path is not followed).
    pub fn new(source: Arc<SegmentSource>, cfg: &OtrsLogConfig) -> OtrsLogCollector {
        let mut logs = Vec::new();
        if !cfg.file.is_empty() {
            logs.push(Followed {
                format: Format::File,
                base: cfg.file.clone(),
                monthly: cfg.date_suffix,
                current: None,
            });
        }
        if !cfg.syslog_file.is_empty() {
            logs.push(Followed {
                format: Format::Syslog,
                base: cfg.syslog_file.clone(),
                monthly: false,
                current: None,
            });
        }
        OtrsLogCollector {
            source,
            cfg: cfg.clone(),
            logs: Mutex::new(logs),
        }
    }

    /// Whether any log is configured.
    pub fn is_enabled(cfg: &OtrsLogConfig) -> bool {
        !cfg.file.is_empty() || !cfg.syslog_file.is_empty()
    }
}

impl Collector for OtrsLogCollector {
    fn name(&self) -> &'static str {
        "otrs_log"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Family>, CollectError> {
        let seg = self.source.get().map_err(CollectError::new)?;
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        let budget = ctx
            .deadline
            .saturating_duration_since(Instant::now())
            .mul_f64(0.4)
            .min(Duration::from_secs(3));
        let mut off = Family::new(
            "otrs_exporter_otrs_log_offset_bytes",
            "Position up to which each followed OTRS log file has been read.",
            MetricKind::Gauge,
        )
        .with_unit("bytes");
        let mut busy = Family::new(
            "otrs_exporter_otrs_log_busy",
            "1 if another exporter process was reading the OTRS log during this scrape.",
            MetricKind::Gauge,
        );
        let mut failures = Vec::new();
        let n = logs.len().max(1) as u32;
        for l in logs.iter_mut() {
            match l.advance(&seg, &self.cfg, budget / n) {
                Ok(adv) => {
                    let f = l.current.as_ref().expect("advance sets it");
                    let path = f.path().to_string_lossy();
                    let source = l.format.source();
                    off.push(&[("source", source), ("path", &path)], f.cursor().1 as f64);
                    busy.push(
                        &[("source", source), ("path", &path)],
                        f64::from(u8::from(adv.skipped)),
                    );
                }
                Err(e) => failures.push(e.0),
            }
        }
        if !failures.is_empty() && off.series.is_empty() {
            return Err(CollectError(failures.join("; ")));
        }
        for f in failures {
            log::warn!("otrs_log: {f}");
        }
        Ok(vec![off, busy])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        let (y, m) = local_month(0);
        let (py, pm) = local_month(1);
        assert!((1..=12).contains(&m) && (1..=12).contains(&pm));
        assert_eq!(y * 12 + m as i32 - 1, py * 12 + pm as i32);
        let (y12, m12) = local_month(12);
        assert_eq!((y12 + 1, m12), (y, m));
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("otrs.log").to_string_lossy().into_owned();
        assert!(monthly_path(&base, (2025, 3)).ends_with("otrs.log.2025-03"));
        std::fs::write(format!("{base}.2025-3"), "").unwrap();
        assert!(monthly_path(&base, (2025, 3)).ends_with("otrs.log.2025-3"));
        assert!(monthly_path(&base, (2025, 11)).ends_with("otrs.log.2025-11"));
    }
}
