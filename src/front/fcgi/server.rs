//! The FastCGI responder loop: one listening socket, a bounded number of connection threads,
//! one request at a time per connection.
//!
//! Policies, in one place:
//! - **Connection bound.** At most [`ServeOptions::max_connections`] connections are served at
//!   once. When all are busy the loop stops calling `accept()`, so further connections wait in
//!   the kernel's listen queue (the web server's connect timeout applies) instead of being
//!   accepted and dropped, which would turn a burst into 502s.
//! - **No multiplexing.** `FCGI_MPXS_CONNS=0`; a second BEGIN_REQUEST while a request is open on
//!   the same connection gets END_REQUEST with `FCGI_CANT_MPX_CONN`. Web servers never do this.
//! - **Timeouts.** From accept (or the end of the previous response on a kept-alive
//!   connection), a complete request — BEGIN_REQUEST through the empty STDIN record — must
//!   arrive within [`ServeOptions::read_timeout`], whatever the pace of the bytes, so a
//!   slowloris client cannot pin a thread. Writes time out after
//!   [`ServeOptions::write_timeout`].
//! - **Shedding.** When every connection is taken and another one waits to be accepted, the
//!   connection that has waited longest for its (next) request is closed, once it has waited
//!   [`SHED_AFTER`]: a web server sends a request whole, so such a connection is idle or slow,
//!   and more slow connections than the cap cannot keep the web server's requests out for the
//!   whole read timeout.
//! - **Errors.** Malformed records are logged with `log::warn!` and the connection is closed;
//!   clients that vanish (EOF, `EPIPE`, `ECONNRESET`) are logged at debug. Writes use
//!   `MSG_NOSIGNAL`, so a vanished peer never raises SIGPIPE. A handler panic becomes a 500.
//!   `accept()` errors never end the loop except when the listener itself is unusable
//!   (`EBADF`, `EINVAL`, `ENOTSOCK`, …); on fd exhaustion (`EMFILE`, `ENFILE`) it sleeps 100 ms
//!   and retries.
//! - **Stop.** With [`ServeOptions::handle_signals`], SIGTERM (what mod_fcgid and systemd send)
//!   and SIGINT stop the accept loop; requests in flight are finished, idle kept-alive
//!   connections are shut down, and [`serve`] returns `Ok(())` once every connection thread is
//!   done. `ABORT_REQUEST` for a request whose handler already runs is not noticed; the answer
//!   is still sent (the handler runs synchronously).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::socket::{getsockname, send, AddressFamily, MsgFlags, SockaddrLike, SockaddrStorage};

use super::record::{self, Error, Limits, Record, RecordReader};
use crate::front::detect::fd_is_listening_socket;
use crate::front::request::{call_handler, Handler, Request, Response};

/// Settings of [`serve`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Connections served at once (default 64); also reported as `FCGI_MAX_CONNS` and
    /// `FCGI_MAX_REQS`. Further connections wait in the listen queue.
    pub max_connections: usize,
    /// Time allowed for a complete request to arrive (default 30 s), counted from accept or
    /// from the end of the previous response on the connection.
    pub read_timeout: Duration,
    /// Time allowed for each write of the response (default 30 s).
    pub write_timeout: Duration,
    /// Bounds on the PARAMS stream (default 1 MiB total); beyond them the request gets 431.
    pub limits: Limits,
    /// Largest request body (default 1 MiB); beyond it the request gets 413.
    pub max_body_bytes: usize,
    /// Serve a TCP listener bound to a non-loopback address (default false). Off because the
    /// exporter trusts `REMOTE_USER`: whoever reaches the socket can claim any user.
    pub allow_non_loopback: bool,
    /// TCP peers allowed to connect; `None` allows all. The default is read from
    /// `FCGI_WEB_SERVER_ADDRS` (comma-separated IPs) like libfcgi does. Unix sockets are not
    /// filtered (file permissions guard them).
    pub web_server_addrs: Option<Vec<IpAddr>>,
    /// Install SIGTERM/SIGINT handlers that stop the server gracefully (default true).
    pub handle_signals: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_connections: 64,
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            limits: Limits::default(),
            max_body_bytes: 1 << 20,
            allow_non_loopback: false,
            web_server_addrs: std::env::var("FCGI_WEB_SERVER_ADDRS")
                .ok()
                .map(|v| parse_addrs(&v)),
            handle_signals: true,
        }
    }
}

/// Parses a comma-separated IP list, warning about (and skipping) entries that are not IPs.
pub fn parse_addrs(list: &str) -> Vec<IpAddr> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|s| match s.parse::<IpAddr>() {
            Ok(ip) => Some(ip.to_canonical()),
            Err(_) => {
                log::warn!("FCGI_WEB_SERVER_ADDRS: ignoring {s:?}, not an IP address");
                None
            }
        })
        .collect()
}

/// A listening socket to serve FastCGI on.
#[derive(Debug)]
pub enum Listener {
    /// A Unix-domain stream socket (mod_fcgid, spawn-fcgi, nginx `unix:`).
    Unix(UnixListener),
    /// A TCP socket (mod_proxy_fcgi `fcgi://127.0.0.1:port`, nginx `127.0.0.1:port`).
    Tcp(TcpListener),
}

/// Owner-side permissions of a Unix socket [`Listener::bind_with`] creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketPerms {
    /// File mode (default `0o660`); write permission for others is refused.
    pub mode: u32,
    /// Group to give the socket (the web server's); `None` keeps the creator's.
    pub gid: Option<u32>,
}

impl Default for SocketPerms {
    fn default() -> Self {
        SocketPerms {
            mode: 0o660,
            gid: None,
        }
    }
}

impl Listener {
    /// Binds the socket named by `spec` with the default [`SocketPerms`] (see
    /// [`Listener::bind_with`]).
    pub fn bind(spec: &str) -> io::Result<Listener> {
        Self::bind_with(spec, SocketPerms::default())
    }

    /// Binds the socket named by `spec`: `unix:/path` (or just `/path`), `tcp:host:port` or
    /// `host:port`. A stale Unix socket file nobody listens on is removed first; a live one is
    /// an error. A Unix socket is created owner-only (umask 0177, so no one else can connect
    /// in between) and then given `perms`.
    pub fn bind_with(spec: &str, perms: SocketPerms) -> io::Result<Listener> {
        if let Some(path) = spec
            .strip_prefix("unix:")
            .or(spec.starts_with('/').then_some(spec))
        {
            if perms.mode & 0o002 != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "refusing socket mode {:o} for {path}: others could connect and claim \
                         any REMOTE_USER",
                        perms.mode
                    ),
                ));
            }
            remove_stale_socket(Path::new(path))?;
            use nix::sys::stat::{umask, Mode};
            let old = umask(Mode::from_bits_truncate(0o177));
            let bound = UnixListener::bind(path);
            umask(old);
            let listener = bound?;
            let fix = |e: io::Error| {
                let _ = std::fs::remove_file(path);
                io::Error::new(e.kind(), format!("setting permissions of {path}: {e}"))
            };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(perms.mode))
                .map_err(fix)?;
            if let Some(gid) = perms.gid {
                std::os::unix::fs::chown(path, None, Some(gid)).map_err(fix)?;
            }
            return Ok(Listener::Unix(listener));
        }
        let addr = spec.strip_prefix("tcp:").unwrap_or(spec);
        TcpListener::bind(addr).map(Listener::Tcp).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {addr:?} (expected unix:/path or tcp:host:port): {e}"),
            )
        })
    }

    /// Takes over fd 0, the listening socket FastCGI process managers pass
    /// (`FCGI_LISTENSOCK_FILENO`). The socket is moved to a new close-on-exec fd and fd 0 is
    /// pointed at `/dev/null`, so stray stdin reads see EOF and child processes don't inherit
    /// the listener.
    pub fn from_stdin() -> io::Result<Listener> {
        let fd = io::stdin().as_fd().try_clone_to_owned()?;
        let listener = Listener::from_fd(fd)?;
        nix::unistd::dup2_stdin(std::fs::File::open("/dev/null")?)?;
        Ok(listener)
    }

    /// Takes the first socket passed by systemd socket activation (see
    /// [`Launch::SystemdFds`](crate::front::detect::Launch::SystemdFds)). Further fds are left
    /// alone, with a warning.
    pub fn from_systemd(fds: &[RawFd]) -> io::Result<Listener> {
        let (&first, rest) = fds.split_first().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "systemd passed no sockets (LISTEN_FDS)",
            )
        })?;
        if !rest.is_empty() {
            log::warn!(
                "systemd passed {} sockets; serving only fd {first}",
                fds.len()
            );
        }
        if !fd_is_listening_socket(first) {
            return Err(not_listening(first));
        }
        // SAFETY: `first` is open (getsockname just succeeded on it) and was handed to this
        // process by systemd (LISTEN_PID named us); nothing else in the process owns it, as
        // `detect()` is called once and its fds are passed here once.
        let fd = unsafe { OwnedFd::from_raw_fd(first) };
        nix::fcntl::fcntl(&fd, nix::fcntl::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
        Listener::from_fd(fd)
    }

    /// Wraps an already listening socket, telling Unix from TCP by its address family.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Listener> {
        let raw = fd.as_raw_fd();
        if !fd_is_listening_socket(raw) {
            return Err(not_listening(raw));
        }
        let addr: SockaddrStorage = getsockname(raw)?;
        match addr.family() {
            Some(AddressFamily::Unix) => Ok(Listener::Unix(UnixListener::from(fd))),
            Some(AddressFamily::Inet | AddressFamily::Inet6) => {
                Ok(Listener::Tcp(TcpListener::from(fd)))
            }
            other => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("fd {raw} is a socket of unsupported family {other:?}"),
            )),
        }
    }

    /// A description for log lines, e.g. `unix:/run/x.sock` or `tcp:127.0.0.1:9000`.
    pub fn describe(&self) -> String {
        match self {
            Listener::Unix(l) => match l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
            {
                Some(p) => format!("unix:{p}"),
                None => "unix:(unnamed)".into(),
            },
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => format!("tcp:{a}"),
                Err(_) => "tcp:(unknown)".into(),
            },
        }
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Unix(l) => l.as_fd(),
            Listener::Tcp(l) => l.as_fd(),
        }
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Listener::Unix(l) => l.set_nonblocking(true),
            Listener::Tcp(l) => l.set_nonblocking(true),
        }
    }

    fn accept(&self) -> io::Result<(Stream, Option<SocketAddr>)> {
        match self {
            Listener::Unix(l) => l.accept().map(|(s, _)| (Stream::Unix(s), None)),
            Listener::Tcp(l) => l.accept().map(|(s, a)| (Stream::Tcp(s), Some(a))),
        }
    }
}

fn not_listening(fd: RawFd) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("fd {fd} is not a listening socket"),
    )
}

/// Removes `path` if it is a socket nobody accepts on (left over from a crashed run).
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
            Err(_) => Ok(()),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by another process", path.display()),
            )),
        },
        _ => Ok(()),
    }
}

/// An accepted connection.
#[derive(Debug)]
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn raw_fd(&self) -> RawFd {
        match self {
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tcp(s) => s.as_raw_fd(),
        }
    }

    fn prepare(&self, write_timeout: Duration) -> io::Result<()> {
        match self {
            Stream::Unix(s) => {
                s.set_nonblocking(false)?;
                s.set_write_timeout(Some(write_timeout))
            }
            Stream::Tcp(s) => {
                s.set_nonblocking(false)?;
                s.set_nodelay(true)?;
                s.set_write_timeout(Some(write_timeout))
            }
        }
    }

    fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(Some(t)),
            Stream::Tcp(s) => s.set_read_timeout(Some(t)),
        }
    }
}

/// Reads with a deadline for the whole request rather than per `read()` call.
struct DeadlineStream {
    stream: Stream,
    deadline: Instant,
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(left)?;
        let res = match &mut self.stream {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        };
        // SO_RCVTIMEO expiry surfaces as EAGAIN.
        res.map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => io::ErrorKind::TimedOut.into(),
            _ => e,
        })
    }
}

impl Write for DeadlineStream {
    /// Sends with `MSG_NOSIGNAL`: a vanished peer yields `EPIPE`, not SIGPIPE.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        send(self.stream.raw_fd(), buf, MsgFlags::MSG_NOSIGNAL).map_err(|e| match e {
            Errno::EAGAIN => io::ErrorKind::TimedOut.into(),
            e => e.into(),
        })
    }

    /// One `sendmsg` for all of `bufs` (also with `MSG_NOSIGNAL`).
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        nix::sys::socket::sendmsg::<()>(
            self.stream.raw_fd(),
            bufs,
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| match e {
            Errno::EAGAIN => io::ErrorKind::TimedOut.into(),
            e => e.into(),
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Set by the SIGTERM/SIGINT handler.
static STOP: AtomicBool = AtomicBool::new(false);
/// Write end of the self-pipe that wakes `poll()` in accept loops; -1 until installed.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// Read end of the self-pipe, created with the handlers.
static SIGNAL_PIPE: OnceLock<Result<OwnedFd, Errno>> = OnceLock::new();

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; `fd` is the pipe's write end, which is never
        // closed once stored, and `byte` outlives the call. The pipe is non-blocking, so a
        // full pipe (already signalled) just fails with EAGAIN, which is fine to ignore.
        unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    }
}

/// Installs the stop handlers once per process and returns the pipe that becomes readable
/// when a stop signal arrives (it stays readable, so every accept loop sees it).
fn signal_pipe() -> io::Result<BorrowedFd<'static>> {
    let res = SIGNAL_PIPE.get_or_init(|| {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        // The write end is deliberately leaked: the handler may use it at any time.
        WAKE_FD.store(std::os::fd::IntoRawFd::into_raw_fd(w), Ordering::SeqCst);
        let action = SigAction::new(
            SigHandler::Handler(on_stop_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for sig in [Signal::SIGTERM, Signal::SIGINT] {
            // SAFETY: the handler only touches atomics and calls write(2), both
            // async-signal-safe; no other code in this crate installs handlers for these.
            unsafe { sigaction(sig, &action) }?;
        }
        Ok(r)
    });
    match res {
        Ok(fd) => Ok(fd.as_fd()),
        Err(e) => Err(io::Error::from(*e)),
    }
}

fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// How long a connection must have waited for its request before it may be closed to make room
/// for a waiting connection (see "Shedding" in the module docs).
pub const SHED_AFTER: Duration = Duration::from_secs(1);

/// State shared by the accept loop and the connection threads.
struct Shared {
    opts: ServeOptions,
    table: Mutex<Table>,
    changed: Condvar,
}

#[derive(Default)]
struct Table {
    /// Connection threads running.
    active: usize,
    /// Connections waiting for their next request (id → fd), shut down on stop. A thread
    /// removes its entry before closing the fd, so every fd here is open.
    idle: HashMap<u64, RawFd>,
    /// Connections whose request has not fully arrived: since when they wait, and their fd
    /// (removed before the fd closes, like `idle`).
    pending: HashMap<u64, (Instant, RawFd)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks connection `id` idle (waiting between requests) or busy. Returns false if the
    /// server is stopping and an idle connection should close instead of waiting.
    fn set_idle(&self, id: u64, fd: RawFd, idle: bool) -> bool {
        let mut t = self.lock();
        if idle {
            if stopping() {
                return false;
            }
            t.idle.insert(id, fd);
        } else {
            t.idle.remove(&id);
        }
        true
    }

    /// Notes that connection `id` waits for a request (from now, unless it already did).
    fn set_pending(&self, id: u64, fd: RawFd) {
        self.lock()
            .pending
            .entry(id)
            .or_insert_with(|| (Instant::now(), fd));
    }

    /// Connection `id` has its whole request, or is about to close its fd.
    fn clear_pending(&self, id: u64) {
        self.lock().pending.remove(&id);
    }

    fn finished(&self, id: u64) {
        let mut t = self.lock();
        t.idle.remove(&id);
        t.pending.remove(&id);
        t.active -= 1;
        self.changed.notify_all();
    }
}

/// Serves FastCGI responder requests on `listener` until a stop signal (see the module docs
/// for the policies). Returns an error only if the listener is refused (non-loopback TCP
/// without [`ServeOptions::allow_non_loopback`]) or becomes unusable.
pub fn serve(listener: Listener, handler: Arc<dyn Handler>, opts: ServeOptions) -> io::Result<()> {
    if let Listener::Tcp(l) = &listener {
        let addr = l.local_addr()?;
        if !addr.ip().to_canonical().is_loopback() && !opts.allow_non_loopback {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "refusing to serve FastCGI on non-loopback address {addr}: the exporter trusts \
                     REMOTE_USER as sent by the web server, so anyone who can reach this socket \
                     can claim to be any user: the FastCGI socket must never be reachable by \
                     anyone but the web server. Listen on a Unix socket (web.socket_group = the \
                     web server's group) or 127.0.0.1, or, only once a firewall and \
                     FCGI_WEB_SERVER_ADDRS keep everyone but the web server out, pass \
                     --allow-non-loopback."
                ),
            ));
        }
    }
    let wake = if opts.handle_signals {
        Some(signal_pipe()?)
    } else {
        None
    };
    listener.set_nonblocking()?;
    log::info!("serving FastCGI on {}", listener.describe());
    let shared = Arc::new(Shared {
        opts,
        table: Mutex::new(Table::default()),
        changed: Condvar::new(),
    });
    let next_id = AtomicU64::new(0);
    let result = accept_loop(&listener, &handler, &shared, wake, &next_id);
    // Stop: close idle kept-alive connections, let busy ones finish, wait for all threads.
    let mut t = shared.lock();
    for (_, &fd) in t.idle.iter() {
        let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Read);
    }
    while t.active > 0 {
        t = shared.changed.wait(t).unwrap_or_else(|p| p.into_inner());
    }
    log::info!("FastCGI server on {} stopped", listener.describe());
    result
}

fn accept_loop(
    listener: &Listener,
    handler: &Arc<dyn Handler>,
    shared: &Arc<Shared>,
    wake: Option<BorrowedFd<'static>>,
    next_id: &AtomicU64,
) -> io::Result<()> {
    loop {
        // Wait for a free slot; unaccepted connections queue in the kernel meanwhile.
        {
            let mut t = shared.lock();
            while t.active >= shared.opts.max_connections && !stopping() {
                let shed = listener_ready(listener) && shed_oldest(&mut t);
                t = shared
                    .changed
                    .wait_timeout(t, Duration::from_millis(if shed { 1000 } else { 50 }))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        if stopping() {
            return Ok(());
        }
        let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        if let Some(w) = wake {
            fds.push(PollFd::new(w, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                log::warn!("poll on FastCGI listener failed: {e}; retrying");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        if stopping() {
            return Ok(());
        }
        let (stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => match e.raw_os_error().map(Errno::from_raw) {
                Some(
                    Errno::EAGAIN
                    | Errno::EINTR
                    | Errno::ECONNABORTED
                    | Errno::EPROTO
                    | Errno::EPERM,
                ) => continue,
                Some(
                    Errno::EBADF
                    | Errno::EINVAL
                    | Errno::ENOTSOCK
                    | Errno::EOPNOTSUPP
                    | Errno::EFAULT,
                ) => {
                    log::error!("FastCGI listener unusable: {e}");
                    return Err(e);
                }
                _ => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM and anything unforeseen: back off.
                    log::warn!("accept() on FastCGI listener failed: {e}; retrying in 100 ms");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            },
        };
        if let (Some(allowed), Some(peer)) = (&shared.opts.web_server_addrs, peer) {
            if !allowed.contains(&peer.ip().to_canonical()) {
                log::warn!("FastCGI connection from {peer} refused: not in FCGI_WEB_SERVER_ADDRS");
                continue;
            }
        }
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        log::debug!("FastCGI connection {id} accepted");
        shared.lock().active += 1;
        let (h, s) = (Arc::clone(handler), Arc::clone(shared));
        let spawned = std::thread::Builder::new()
            .name(format!("fcgi-conn-{id}"))
            .spawn(move || {
                serve_connection(stream, &*h, &s, id);
                s.finished(id);
            });
        if let Err(e) = spawned {
            log::warn!("cannot start a thread for FastCGI connection {id}: {e}; closing it");
            shared.finished(id);
        }
    }
}

/// Whether a connection waits in the listen queue.
fn listener_ready(listener: &Listener) -> bool {
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// Closes the connection that has waited longest for its request, if it waited at least
/// [`SHED_AFTER`]; its thread then ends and frees a slot.
fn shed_oldest(t: &mut Table) -> bool {
    let oldest = t
        .pending
        .iter()
        .filter(|(_, (since, _))| since.elapsed() >= SHED_AFTER)
        .min_by_key(|(_, (since, _))| *since)
        .map(|(&id, &(since, fd))| (id, since, fd));
    let Some((id, since, fd)) = oldest else {
        return false;
    };
    t.pending.remove(&id);
    // The fd is open: its thread removes the entry (under this lock) before closing it.
    let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Both);
    log::warn!(
        "FastCGI: all connections busy and another one waiting; closed connection {id}, which \
         had waited {:.1} s without sending a complete request",
        since.elapsed().as_secs_f64()
    );
    true
}

/// The request being received on a connection.
struct InFlight {
    id: u16,
    keep_conn: bool,
    params: Vec<u8>,
    params_done: bool,
    body: Vec<u8>,
    /// Set when a limit was exceeded: the answer, once the streams end.
    refused: Option<Response>,
}

/// What to do after a record.
enum Next {
    Continue,
    Close,
}

fn is_vanished(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

fn serve_connection(stream: Stream, handler: &dyn Handler, shared: &Shared, conn: u64) {
    let opts = &shared.opts;
    if let Err(e) = stream.prepare(opts.write_timeout) {
        log::debug!("FastCGI connection {conn}: setup failed: {e}");
        return;
    }
    let fd = stream.raw_fd();
    let mut reader = RecordReader::new(
        DeadlineStream {
            stream,
            deadline: Instant::now() + opts.read_timeout,
        },
        opts.limits,
    );
    let mut current: Option<InFlight> = None;
    loop {
        let waiting = current.is_none();
        if waiting && !shared.set_idle(conn, fd, true) {
            break;
        }
        shared.set_pending(conn, fd);
        let next = reader.next_record();
        if waiting {
            shared.set_idle(conn, fd, false);
        }
        let rec = match next {
            Ok(Some(rec)) => rec,
            Ok(None) => {
                if current.is_some() {
                    log::debug!("FastCGI connection {conn}: peer closed mid-request");
                }
                break;
            }
            Err(Error::Io(e)) if e.kind() == io::ErrorKind::TimedOut => {
                if current.is_some() {
                    log::info!(
                        "FastCGI connection {conn}: request not complete within {:?}; closing",
                        opts.read_timeout
                    );
                } else {
                    log::debug!(
                        "FastCGI connection {conn}: idle for {:?}; closing",
                        opts.read_timeout
                    );
                }
                break;
            }
            Err(Error::Io(e)) => {
                log::debug!("FastCGI connection {conn}: read failed: {e}");
                break;
            }
            Err(Error::Truncated { .. }) => {
                log::debug!("FastCGI connection {conn}: peer closed inside a record");
                break;
            }
            Err(e) => {
                log::warn!(
                    "FastCGI connection {conn}: malformed input, closing the connection: {e}"
                );
                break;
            }
        };
        if let (Record::Stdin { request_id, data }, Some(c)) = (&rec, &current) {
            if data.is_empty() && c.id == *request_id {
                // The request is complete: from here it is work, not waiting.
                shared.clear_pending(conn);
            }
        }
        match on_record(rec, &mut current, &mut reader, handler, opts, conn) {
            Ok(Next::Continue) => {}
            Ok(Next::Close) => break,
            Err(e) if is_vanished(&e) => {
                log::debug!("FastCGI connection {conn}: peer went away while we wrote: {e}");
                break;
            }
            Err(e) => {
                log::warn!("FastCGI connection {conn}: write failed: {e}");
                break;
            }
        }
    }
    // Before `reader` (and with it the fd) is dropped.
    shared.clear_pending(conn);
}

fn write_end(w: &mut impl Write, id: u16, protocol_status: u8) -> io::Result<()> {
    let mut out = Vec::with_capacity(16);
    record::encode_end_request(&mut out, id, 0, protocol_status);
    w.write_all(&out)
}

fn on_record(
    rec: Record,
    current: &mut Option<InFlight>,
    reader: &mut RecordReader<DeadlineStream>,
    handler: &dyn Handler,
    opts: &ServeOptions,
    conn: u64,
) -> io::Result<Next> {
    let w = reader.get_mut();
    let is_current = |id: u16| current.as_ref().is_some_and(|c| c.id == id);
    match rec {
        Record::GetValues { pairs } => {
            let max = opts.max_connections.to_string();
            let answers: Vec<(&str, String)> = pairs
                .iter()
                .filter_map(|(name, _)| match name.as_slice() {
                    b"FCGI_MAX_CONNS" => Some(("FCGI_MAX_CONNS", max.clone())),
                    b"FCGI_MAX_REQS" => Some(("FCGI_MAX_REQS", max.clone())),
                    b"FCGI_MPXS_CONNS" => Some(("FCGI_MPXS_CONNS", "0".to_string())),
                    _ => None,
                })
                .collect();
            let mut out = Vec::new();
            record::encode_get_values_result(&mut out, &answers);
            w.write_all(&out)?;
        }
        Record::Unknown {
            record_type,
            request_id: 0,
            ..
        } => {
            let mut out = Vec::new();
            record::encode_unknown_type(&mut out, record_type);
            w.write_all(&out)?;
        }
        Record::Unknown {
            record_type,
            request_id,
            ..
        } => log::debug!("FastCGI connection {conn}: ignoring record type {record_type} for request {request_id}"),
        Record::BeginRequest {
            request_id,
            role,
            flags,
        } => {
            if let Some(c) = current {
                if c.id == request_id {
                    log::warn!("FastCGI connection {conn}: request {request_id} begun twice; closing");
                    return Ok(Next::Close);
                }
                log::debug!("FastCGI connection {conn}: refusing concurrent request {request_id}");
                write_end(w, request_id, record::CANT_MPX_CONN)?;
            } else if role != record::ROLE_RESPONDER {
                log::warn!("FastCGI connection {conn}: role {role} not supported (only responder)");
                write_end(w, request_id, record::UNKNOWN_ROLE)?;
                if flags & record::KEEP_CONN == 0 {
                    return Ok(Next::Close);
                }
            } else {
                *current = Some(InFlight {
                    id: request_id,
                    keep_conn: flags & record::KEEP_CONN != 0,
                    params: Vec::new(),
                    params_done: false,
                    body: Vec::new(),
                    refused: None,
                });
            }
        }
        Record::AbortRequest { request_id } if is_current(request_id) => {
            let keep = current.take().is_some_and(|c| c.keep_conn);
            log::debug!("FastCGI connection {conn}: request {request_id} aborted by the web server");
            write_end(w, request_id, record::REQUEST_COMPLETE)?;
            w.deadline = Instant::now() + opts.read_timeout;
            if !keep {
                return Ok(Next::Close);
            }
        }
        Record::Params { request_id, data } if is_current(request_id) => {
            let c = current.as_mut().expect("checked by is_current");
            if data.is_empty() {
                c.params_done = true;
            } else if c.refused.is_none() {
                if c.params.len() + data.len() > opts.limits.max_params_bytes {
                    log::warn!("FastCGI connection {conn}: PARAMS exceed {} bytes; answering 431", opts.limits.max_params_bytes);
                    c.refused = Some(Response::text(431, "request parameters too large\n"));
                    c.params = Vec::new();
                } else {
                    c.params.extend_from_slice(&data);
                }
            }
        }
        Record::Stdin { request_id, data } if is_current(request_id) => {
            let c = current.as_mut().expect("checked by is_current");
            if !data.is_empty() {
                if c.refused.is_none() {
                    if c.body.len() + data.len() > opts.max_body_bytes {
                        c.refused = Some(Response::text(413, "request body too large\n"));
                        c.body = Vec::new();
                    } else {
                        c.body.extend_from_slice(&data);
                    }
                }
                return Ok(Next::Continue);
            }
            let c = current.take().expect("checked by is_current");
            if !c.params_done {
                log::warn!("FastCGI connection {conn}: STDIN ended before PARAMS; closing");
                return Ok(Next::Close);
            }
            let keep = c.keep_conn && !stopping();
            let mut malformed = false;
            let (response, head_only) = match c.refused {
                Some(r) => (r, false),
                None => match record::decode_pairs(&c.params, &opts.limits) {
                    Ok(pairs) => {
                        let params = pairs
                            .into_iter()
                            .map(|(n, v)| {
                                (
                                    String::from_utf8_lossy(&n).into_owned(),
                                    String::from_utf8_lossy(&v).into_owned(),
                                )
                            })
                            .collect();
                        let req = Request::from_cgi_params(params, c.body);
                        (call_handler(handler, &req), req.method == "HEAD")
                    }
                    Err(e) => {
                        log::warn!("FastCGI connection {conn}: malformed PARAMS: {e}");
                        malformed = true;
                        (Response::text(400, "malformed FastCGI parameters\n"), false)
                    }
                },
            };
            let mut head = Vec::with_capacity(256);
            response.write_cgi_head(&mut head);
            let body: &[u8] = if head_only { &[] } else { &response.body };
            write_response(w, c.id, &head, body)?;
            w.deadline = Instant::now() + opts.read_timeout;
            if !keep || malformed {
                return Ok(Next::Close);
            }
        }
        Record::AbortRequest { request_id }
        | Record::Params { request_id, .. }
        | Record::Stdin { request_id, .. }
        | Record::Data { request_id, .. } => {
            log::debug!("FastCGI connection {conn}: ignoring record for inactive request {request_id}");
        }
        Record::EndRequest { .. }
        | Record::Stdout { .. }
        | Record::Stderr { .. }
        | Record::GetValuesResult { .. }
        | Record::UnknownType { .. } => {
            log::warn!("FastCGI connection {conn}: peer sent a record only applications send; closing");
            return Ok(Next::Close);
        }
    }
    Ok(Next::Continue)
}

/// Writes the CGI header block `head` and then `body` as the STDOUT stream of request `id`,
/// then END_REQUEST: record headers and padding are gathered around slices of `head` and
/// `body` where they lie (`sendmsg`), so a 1 MB scrape is not copied in user space.
fn write_response(w: &mut impl Write, id: u16, head: &[u8], body: &[u8]) -> io::Result<()> {
    const PAD: [u8; 8] = [0; 8];
    let chunks: Vec<&[u8]> = head
        .chunks(record::STREAM_CHUNK)
        .chain(body.chunks(record::STREAM_CHUNK))
        .collect();
    let headers: Vec<[u8; 8]> = chunks
        .iter()
        .map(|c| record::record_header(record::STDOUT, id, c.len()))
        .collect();
    let mut tail = Vec::with_capacity(32);
    record::encode_record(&mut tail, record::STDOUT, id, &[]);
    record::encode_end_request(&mut tail, id, 0, record::REQUEST_COMPLETE);
    let mut slices: Vec<io::IoSlice> = Vec::with_capacity(chunks.len() * 3 + 1);
    for (h, c) in headers.iter().zip(&chunks) {
        slices.push(io::IoSlice::new(h));
        slices.push(io::IoSlice::new(c));
        slices.push(io::IoSlice::new(&PAD[..record::padding(c.len())]));
    }
    slices.push(io::IoSlice::new(&tail));
    slices.retain(|s| !s.is_empty());
    // At most 512 slices per call (IOV_MAX is 1024 on Linux).
    for batch in slices.chunks_mut(512) {
        let mut rest = batch;
        while !rest.is_empty() {
            match w.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => io::IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that takes at most `max` bytes per call, to exercise partial vectored writes.
    struct Trickle {
        out: Vec<u8>,
        max: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.max);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.max - n);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                if n == self.max {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn response_records_carry_head_then_body() {
        let chunk = record::STREAM_CHUNK;
        for len in [
            0,
            1,
            7,
            8,
            chunk - 1,
            chunk,
            chunk + 1,
            3 * chunk + 5,
            1 << 20,
        ] {
            let body: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let head = b"Status: 200 OK\r\nContent-Length: 1\r\n\r\n";
            for max in [1000, 70_000, usize::MAX] {
                let mut w = Trickle {
                    out: Vec::new(),
                    max,
                };
                write_response(&mut w, 7, head, &body).unwrap();
                let records = record::parse_stream(&w.out).unwrap();
                let mut stdout = Vec::new();
                let mut ended = false;
                for r in records {
                    assert!(!ended, "record after END_REQUEST");
                    match r {
                        record::Record::Stdout { request_id, data } => {
                            assert_eq!(request_id, 7);
                            stdout.extend_from_slice(&data);
                        }
                        record::Record::EndRequest { request_id, .. } => {
                            assert_eq!(request_id, 7);
                            ended = true;
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                assert!(ended);
                assert_eq!(stdout.len(), head.len() + len, "len {len} max {max}");
                assert!(stdout.starts_with(head) && stdout.ends_with(&body));
            }
        }
    }

    #[test]
    fn addr_list() {
        assert_eq!(
            parse_addrs("127.0.0.1, ::1,bogus,,::ffff:10.0.0.1"),
            vec![
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap(),
                "10.0.0.1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn bind_specs_and_non_loopback_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let spec = format!("unix:{}", path.display());
        let l = Listener::bind(&spec).unwrap();
        assert_eq!(l.describe(), spec);
        assert!(
            Listener::bind(&spec).is_err(),
            "live socket must not be replaced"
        );
        drop(l);
        // The file is left behind, stale: binding again removes it.
        assert!(matches!(Listener::bind(&spec).unwrap(), Listener::Unix(_)));
        assert!(matches!(
            Listener::bind("tcp:127.0.0.1:0").unwrap(),
            Listener::Tcp(_)
        ));
        assert!(matches!(
            Listener::bind("127.0.0.1:0").unwrap(),
            Listener::Tcp(_)
        ));
        assert!(Listener::bind("nonsense").is_err());

        let wide = Listener::bind("0.0.0.0:0").unwrap();
        let opts = ServeOptions {
            handle_signals: false,
            ..ServeOptions::default()
        };
        let err = serve(wide, Arc::new(|_: &Request| Response::text(200, "")), opts).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("REMOTE_USER"), "{err}");
    }
}
