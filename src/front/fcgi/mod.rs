//! Our own FastCGI 1.0 responder.
//!
//! # Why not a crate
//!
//! - **`fastcgi` 1.0.0** (2018, unmaintained) has the right model — fd 0 listener, thread per
//!   connection, no multiplexing — but `panic!`s on any `accept()` error (EINTR, EMFILE), unwraps
//!   in the worker so a kept-alive connection closed by the web server panics, `assert!`s on
//!   short reads, and has no CGI fallback or read timeouts.
//! - **`outer_cgi` 0.3** auto-detects CGI/FastCGI nicely but brings its own CLI and daemon
//!   handling (setuid, chroot, syslog), nix 0.26 and a thread pool we would have to configure
//!   around; its request type and error policy are not ours to test or fuzz.
//! - **`tokio-fastcgi` 1.3** is solid but async: it would pull tokio into a binary whose
//!   requests are CPU-bound scrapes served one at a time per mod_fcgid process.
//!
//! The protocol is small (eight-byte record headers, two length encodings for name-value
//! pairs, one request per connection for us), so about a thousand lines (half of them tests)
//! that we own, fuzz, and test against real sockets and libfcgi's `cgi-fcgi` are less risk
//! than any of the above.
//!
//! [`record`] is the pure parser/serialiser (fuzzed via [`record::parse_stream`]); [`server`]
//! is the accept loop and connection state machine.

pub mod record;
pub mod server;

pub use server::{serve, Listener, ServeOptions, SocketPerms};
