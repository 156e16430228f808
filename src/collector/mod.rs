//! Collectors and the runner that drives them on every scrape.
//!
//! A collector owns a few metric families and has one job: produce them now, or fail. The
//! [`runner::Runner`] runs the selected collectors concurrently under the scrape deadline and
//! reports `otrs_exporter_collector_success` and `otrs_exporter_collector_duration_seconds` for
//! each, so one failing or slow collector never fails the whole scrape. Nothing here knows
//! about HTTP.

pub mod access_log;
pub mod articles;
pub mod cache;
pub mod custom;
pub mod daemon;
pub mod daemon_processes;
pub mod db;
pub mod exporter;
pub mod mail;
pub mod otrs_log;
pub mod pool;
pub mod process;
pub mod runner;
pub mod segment;
mod selection;
pub mod sessions;
pub mod tickets;
pub mod web_processes;

use std::time::Instant;

pub use runner::{Outcome, Runner, Scrape};
pub use selection::Selection;

use crate::snapshot::Family;

/// What a collector may know about the scrape it serves.
#[derive(Debug, Clone)]
pub struct Context {
    /// When the scrape must be answered; collectors doing slow I/O should give up by then.
    pub deadline: Instant,
    /// Identifies the scrape (unique within the process), so collectors of one scrape can
    /// share work such as one `/proc` scan.
    pub scrape: u64,
}

impl Context {
    /// The context of a new scrape that must be answered by `deadline`.
    pub fn new(deadline: Instant) -> Context {
        static SCRAPES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Context {
            deadline,
            scrape: SCRAPES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// Why a collector produced nothing (its families are left out; `collector_success` is 0).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CollectError(pub String);

impl CollectError {
    /// An error from anything printable.
    pub fn new(msg: impl std::fmt::Display) -> Self {
        CollectError(msg.to_string())
    }
}

/// A source of metric families.
pub trait Collector: Send + Sync + 'static {
    /// Short name, used in `collect[]` and in the `collector` label.
    fn name(&self) -> &'static str;
    /// Produces the families this collector owns.
    fn collect(&self, ctx: &Context) -> Result<Vec<Family>, CollectError>;
    /// Whether the thread serving the scrape `ctx` may run this collector itself, after
    /// handing the others to their threads, instead of waking a thread for it. Only for a
    /// collector that waits on nothing but this machine's memory, or for a bound well within
    /// the time `ctx` has left: the scrape cannot answer before it returns.
    fn inline(&self, _ctx: &Context) -> bool {
        false
    }
}
