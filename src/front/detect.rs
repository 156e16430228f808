//! How the process was started: by a FastCGI process manager, by systemd socket activation, as
//! a plain CGI, or by hand.

use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::sys::socket::{getpeername, getsockname, SockaddrStorage};

/// The launch mode found by [`detect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// fd 0 is a listening socket (`FCGI_LISTENSOCK_FILENO`): mod_fcgid, spawn-fcgi,
    /// `cgi-fcgi -start`, or systemd with `StandardInput=socket`. Take it with
    /// [`Listener::from_stdin`](super::fcgi::Listener::from_stdin).
    FastCgiFd0,
    /// systemd socket activation: these fds (from 3 on) were passed with `LISTEN_FDS` and
    /// `LISTEN_PID` naming this process.
    SystemdFds(Vec<RawFd>),
    /// A plain CGI request (`GATEWAY_INTERFACE=CGI/1.1`): answer one request and exit.
    Cgi,
    /// None of the above: started from a shell, e.g. with `--listen`.
    Standalone,
}

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
pub const SD_LISTEN_FDS_START: RawFd = 3;

/// Finds out how the process was started, checking in this order:
/// 1. `LISTEN_FDS` = n > 0 and `LISTEN_PID` = our pid → [`Launch::SystemdFds`] (fds 3..3+n);
/// 2. fd 0 is a socket (`getsockname` works) that is not connected (`getpeername` fails with
///    `ENOTCONN`), i.e. a listening socket, as libfcgi's `FCGX_IsCGI` checks →
///    [`Launch::FastCgiFd0`];
/// 3. `GATEWAY_INTERFACE` starts with `CGI/` → [`Launch::Cgi`];
/// 4. otherwise [`Launch::Standalone`].
///
/// Call it once: the fds it reports are meant to be owned by one [`Listener`](super::fcgi::Listener).
pub fn detect() -> Launch {
    if let Some(fds) = systemd_fds(
        std::env::var("LISTEN_FDS").ok().as_deref(),
        std::env::var("LISTEN_PID").ok().as_deref(),
        std::process::id(),
    ) {
        return Launch::SystemdFds(fds);
    }
    if fd_is_listening_socket(0) {
        return Launch::FastCgiFd0;
    }
    if std::env::var("GATEWAY_INTERFACE").is_ok_and(|g| g.starts_with("CGI/")) {
        return Launch::Cgi;
    }
    Launch::Standalone
}

/// The systemd fds if `listen_fds`/`listen_pid` (the env values) pass them to `pid`.
fn systemd_fds(listen_fds: Option<&str>, listen_pid: Option<&str>, pid: u32) -> Option<Vec<RawFd>> {
    let n: RawFd = listen_fds?.trim().parse().ok()?;
    let for_pid: u32 = listen_pid?.trim().parse().ok()?;
    (n > 0 && for_pid == pid).then(|| (SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + n).collect())
}

/// True if `fd` is a socket without a peer (a listening socket).
pub fn fd_is_listening_socket(fd: RawFd) -> bool {
    getsockname::<SockaddrStorage>(fd).is_ok()
        && matches!(getpeername::<SockaddrStorage>(fd), Err(Errno::ENOTCONN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn systemd_env() {
        assert_eq!(systemd_fds(Some("2"), Some("42"), 42), Some(vec![3, 4]));
        assert_eq!(systemd_fds(Some("2"), Some("41"), 42), None);
        assert_eq!(systemd_fds(Some("0"), Some("42"), 42), None);
        assert_eq!(systemd_fds(Some("x"), Some("42"), 42), None);
        assert_eq!(systemd_fds(None, Some("42"), 42), None);
    }

    #[test]
    fn listening_socket_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(fd_is_listening_socket(l.as_raw_fd()));
        let c = std::os::unix::net::UnixStream::connect(&path).unwrap();
        assert!(!fd_is_listening_socket(c.as_raw_fd()), "connected socket");
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(!fd_is_listening_socket(f.as_raw_fd()), "not a socket");
    }
}
