//! Web request metrics: the metric families that describe requests served by the web server
//! in front of OTRS. (The access-log ingesters that fill them come with the web metrics work;
//! the demo's traffic generator writes them today.)

pub mod families;
pub mod follow;
pub mod line;
pub mod pipe;
pub mod record;
pub mod route;
