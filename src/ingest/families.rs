//! Definitions of the web request families, shared by every writer.

use crate::config::IngestConfig;
use crate::segment::FamilyDef;

/// Default request duration buckets: 5 ms to 30 s, fitting OTRS screens (fast AJAX updates to
/// slow ticket searches and GenericInterface calls).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
];

/// Default response size buckets: 100 B to 10 MB.
pub const SIZE_BUCKETS: [f64; 9] = [
    100.0,
    1000.0,
    10_000.0,
    50_000.0,
    100_000.0,
    500_000.0,
    1_000_000.0,
    5_000_000.0,
    10_000_000.0,
];

/// The families one access-log line updates.
#[derive(Debug, Clone)]
pub struct WebFamilies {
    /// `otrs_http_requests_total{worker,method,route,status_class}` (seed:
    /// `http_requests_total`).
    pub requests: FamilyDef,
    /// `otrs_http_request_duration_seconds{worker,method,route}` (seed:
    /// `http_request_duration_seconds`).
    pub duration: FamilyDef,
    /// `otrs_http_response_size_bytes{worker,route}` (seed: `http_response_size_bytes`).
    pub size: FamilyDef,
    /// `otrs_http_last_request_timestamp_seconds{worker}`: when each worker last finished a
    /// request.
    pub last_seen: FamilyDef,
}

impl WebFamilies {
    /// The families with the configured buckets.
    pub fn new(cfg: &IngestConfig) -> WebFamilies {
        WebFamilies {
            requests: FamilyDef::counter(
                "otrs_http_requests",
                "HTTP requests to OTRS served by each web-server worker, by method, route and status class.",
            ),
            duration: FamilyDef::histogram(
                "otrs_http_request_duration_seconds",
                "Time to serve HTTP requests to OTRS, by worker, method and route.",
                &cfg.duration_buckets,
            ),
            size: FamilyDef::histogram(
                "otrs_http_response_size_bytes",
                "Size of HTTP response bodies from OTRS, by worker and route.",
                &cfg.size_buckets,
            ),
            last_seen: FamilyDef::gauge(
                "otrs_http_last_request_timestamp_seconds",
                "When each web-server worker last finished a request (Unix time).",
            )
            .agg_max(),
        }
    }
}

impl Default for WebFamilies {
    fn default() -> Self {
        WebFamilies::new(&IngestConfig::default())
    }
}

/// `otrs_exporter_ingest_lines_total{source}`: access-log lines read.
pub fn lines_read() -> FamilyDef {
    FamilyDef::counter(
        "otrs_exporter_ingest_lines",
        "Access-log lines read, by source (apache pipe or followed file).",
    )
    .shared()
}

/// `otrs_exporter_log_parse_errors_total{source}`: malformed lines skipped.
pub fn parse_errors() -> FamilyDef {
    FamilyDef::counter(
        "otrs_exporter_log_parse_errors",
        "Malformed log lines skipped (truncated, binary, too long, wrong field count), by source.",
    )
    .shared()
}

/// `otrs_exporter_ingest_dropped_lines_total{source}`: lines dropped because the ingester fell
/// behind.
pub fn dropped() -> FamilyDef {
    FamilyDef::counter(
        "otrs_exporter_ingest_dropped_lines",
        "Access-log lines dropped because the ingester fell behind (the web server is never made to wait).",
    )
    .shared()
}

/// `otrs_exporter_label_overflow_total{label}`: values replaced by `__overflow__`.
pub fn overflow() -> FamilyDef {
    FamilyDef::counter(
        "otrs_exporter_label_overflow",
        "Observations whose label value was replaced by __overflow__ because the label's cap was reached.",
    )
    .shared()
}
