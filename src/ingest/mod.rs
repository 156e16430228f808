//! Log ingestion: web request metrics from access logs (the families that describe requests
//! served by the web server in front of OTRS) and OTRS log messages ([`otrs_log`]). (The access-log ingesters that fill them come with the web metrics work;
//! the demo's traffic generator writes them today.)

pub mod families;
pub mod follow;
pub mod line;
pub mod otrs_log;
pub mod pipe;
pub mod record;
pub mod route;
