//! Front ends: how requests reach the exporter.
//!
//! The web server owns HTTP, TLS and authentication; the exporter answers behind it as
//! - a **FastCGI** responder ([`fcgi`]) on a socket passed as fd 0 (Apache mod_fcgid,
//!   spawn-fcgi), passed by systemd socket activation, or bound with `--listen` (Apache
//!   mod_proxy_fcgi, nginx `fastcgi_pass`);
//! - a plain **CGI** program ([`cgi`]), one process per request.
//!
//! [`detect`] tells these launch modes apart; both front ends turn the CGI meta-variables into
//! the same [`request::Request`] and hand it to a [`request::Handler`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use otrs_exporter::front::{detect, fcgi, cgi, request::{Request, Response}};
//!
//! let handler = |req: &Request| Response::text(200, format!("hello {}\n", req.path));
//! match detect::detect() {
//!     detect::Launch::Cgi => cgi::run_cgi(&handler)?,
//!     detect::Launch::FastCgiFd0 => fcgi::serve(
//!         fcgi::Listener::from_stdin()?, Arc::new(handler), fcgi::ServeOptions::default())?,
//!     detect::Launch::SystemdFds(fds) => fcgi::serve(
//!         fcgi::Listener::from_systemd(&fds)?, Arc::new(handler), fcgi::ServeOptions::default())?,
//!     detect::Launch::Standalone => fcgi::serve(
//!         fcgi::Listener::bind("unix:/run/otrs-exporter.sock")?, Arc::new(handler),
//!         fcgi::ServeOptions::default())?,
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod cgi;
pub mod detect;
pub mod fcgi;
pub mod http;
pub mod request;
