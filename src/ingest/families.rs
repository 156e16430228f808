//! Definitions of the web request families, shared by every writer.

use crate::segment::FamilyDef;

/// Default request duration buckets: 5 ms to 30 s, fitting OTRS screens (fast AJAX updates to
/// slow ticket searches and GenericInterface calls).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
];

/// Default response size buckets: 100 B to 10 MiB.
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

/// `otrs_http_requests_total{worker,method,route,status_class}` (seed: `http_requests_total`).
pub fn requests() -> FamilyDef {
    FamilyDef::counter(
        "otrs_http_requests",
        "HTTP requests to OTRS served by each web-server worker, by method, route and status class.",
    )
}

/// `otrs_http_request_duration_seconds{worker,method,route}` (seed:
/// `http_request_duration_seconds`).
pub fn duration() -> FamilyDef {
    FamilyDef::histogram(
        "otrs_http_request_duration_seconds",
        "Time to serve HTTP requests to OTRS, by worker, method and route.",
        &DURATION_BUCKETS,
    )
}

/// `otrs_http_response_size_bytes{worker,route}` (seed: `http_response_size_bytes`).
pub fn response_size() -> FamilyDef {
    FamilyDef::histogram(
        "otrs_http_response_size_bytes",
        "Size of HTTP responses from OTRS, by worker and route.",
        &SIZE_BUCKETS,
    )
}

/// `otrs_http_last_request_timestamp_seconds{worker}`: when each worker last served a request.
pub fn last_seen() -> FamilyDef {
    FamilyDef::gauge(
        "otrs_http_last_request_timestamp_seconds",
        "When each web-server worker last finished a request (Unix time).",
    )
    .agg_max()
}
