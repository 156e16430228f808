//! glibc malloc settings for the two lives an `otrs-exporter` process leads: a long-running
//! server (FastCGI, the built-in listener, `follow`) or a CGI process that answers one request
//! and exits. Both are set before any thread starts, and neither overrides what the
//! environment asks for (`MALLOC_ARENA_MAX`, `MALLOC_TOP_PAD_`, `GLIBC_TUNABLES`).

/// Arenas for a long-running process. glibc gives threads arenas of their own, up to 8 per
/// core, and each keeps the peak of the scrapes it served: the FastCGI server runs a thread
/// per connection, and a worker grew to 174 MB of private memory over 800 scrapes of 20,000
/// series instead of 15 MB.
pub const LONG_RUNNING_ARENAS: i32 = 2;

/// Arenas for a process that answers one request: one for each thread a cold scrape runs at
/// once (the scraping thread, its share helpers and the collector threads). With
/// [`LONG_RUNNING_ARENAS`] they took turns at two arena locks: a cold scrape of 10k series made
/// ~2,300 `futex` calls and ~150 context switches, against 3 and 7 with one arena per thread.
pub const ONE_REQUEST_ARENAS: i32 = 8;

/// Caps malloc arenas at [`LONG_RUNNING_ARENAS`]. Call first thing in `main`.
pub fn limit_arenas() {
    set_arenas(LONG_RUNNING_ARENAS);
}

/// Sets malloc up for a process that answers one request and exits: [`ONE_REQUEST_ARENAS`]
/// arenas, and an arena grows by at least 4 MB at a time (`M_TOP_PAD`, 128 KB by default)
/// and is not trimmed back before the exit. A cold scrape of 10k series then makes 10
/// `mprotect` calls to grow the share threads' arenas instead of ~160, and no `mremap`. Call
/// before any thread is started.
pub fn tune_for_one_request() {
    set_arenas(ONE_REQUEST_ARENAS);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if !environment_sets("MALLOC_TOP_PAD_", "glibc.malloc.top_pad") {
        // SAFETY: mallopt only changes allocator settings, and no other thread exists yet.
        unsafe {
            libc::mallopt(libc::M_TOP_PAD, 4 << 20);
        }
    }
}

/// Sets `M_ARENA_MAX` unless the environment does. glibc fixes the limit when a second
/// thread first allocates, so the last call before that counts.
fn set_arenas(_arenas: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if !environment_sets("MALLOC_ARENA_MAX", "glibc.malloc.arena_max") {
        // SAFETY: mallopt only changes allocator settings, and no other thread exists yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, _arenas);
        }
    }
}

/// Whether the environment sets a malloc parameter itself: by its variable, or by its tunable
/// in `GLIBC_TUNABLES`.
fn environment_sets(variable: &str, tunable: &str) -> bool {
    std::env::var_os(variable).is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| names(&t, tunable))
}

/// Whether a `GLIBC_TUNABLES` value (`name=value:name=value…`) sets `tunable`.
fn names(tunables: &str, tunable: &str) -> bool {
    tunables
        .split(':')
        .any(|kv| kv.split('=').next() == Some(tunable))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tunable_counts_as_set_only_by_its_own_name() {
        let t = "glibc.malloc.hugetlb=1:glibc.malloc.arena_max=4";
        assert!(super::names(t, "glibc.malloc.arena_max"));
        assert!(super::names(t, "glibc.malloc.hugetlb"));
        assert!(!super::names(t, "glibc.malloc.top_pad"));
        assert!(!super::names(t, "glibc.malloc.arena"));
        assert!(!super::names("", "glibc.malloc.arena_max"));
    }
}
