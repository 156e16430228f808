//! otrs-exporter: a Prometheus exporter for OTRS 6, Znuny and OTOBO.
//!
//! Data flows one way: a front end (FastCGI, CGI, demo HTTP) asks the collector runner for a
//! scrape; collectors read the shared [`segment`], `/proc`, the OTRS database and logs and
//! produce [`snapshot::Family`] values; the [`exposition`] writers turn the snapshot into the
//! Prometheus text format or OpenMetrics.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod admin;
pub mod allocator;
pub mod cli;
pub mod collector;
pub mod config;
pub mod custom;
pub mod db;
pub mod demo;
pub mod exposition;
pub mod front;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingest;
mod placement;
mod prefetch;
pub mod segment;
pub mod selftest;
pub mod service;
mod shares;
pub mod snapshot;
