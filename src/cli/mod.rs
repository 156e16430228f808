//! Console commands and the command-line interface.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::front::{cgi, detect, fcgi};
use crate::segment::Segment;
use crate::service::{segment_options, Service};

/// Prometheus exporter for OTRS 6, Znuny and OTOBO, run behind the web server as a FastCGI or
/// CGI handler.
#[derive(Debug, Parser)]
#[command(name = "otrs-exporter", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file [default: $OTRS_EXPORTER_CONFIG or /etc/otrs-exporter/config.toml].
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The command; without one, the launch mode is detected (FastCGI socket on fd 0, systemd
    /// socket activation, or CGI).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Console commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve FastCGI on a unix socket or loopback TCP address (for nginx fastcgi_pass or
    /// Apache mod_proxy_fcgi).
    Serve {
        /// `unix:/path`, `/path`, `host:port` or `tcp:host:port` [default: web.listen].
        #[arg(long)]
        listen: Option<String>,
        /// Allow a TCP address that is not loopback (REMOTE_USER would be trusted from anyone
        /// who can reach it: only behind a firewall).
        #[arg(long)]
        allow_non_loopback: bool,
    },
    /// Serve the metrics over plain HTTP with the built-in listener (no authentication, no
    /// TLS; loopback only). For benchmarks and tests that compare it with the FastCGI and CGI
    /// front ends; production runs behind Apache or nginx.
    #[command(hide = true)]
    ServeHttp {
        /// Loopback address to listen on.
        #[arg(long, default_value = "127.0.0.1:9646")]
        listen: SocketAddr,
        /// Worker threads answering requests.
        #[arg(long, default_value_t = 4)]
        threads: usize,
    },
    /// Run a self-contained demo: synthetic OTRS traffic and the exporter on a loopback port.
    Demo {
        /// Address for the built-in HTTP listener (used when Apache with mod_fcgid is not
        /// installed, or with --no-apache).
        #[arg(long, default_value = "127.0.0.1:9646")]
        listen: SocketAddr,
        /// Loopback port for the demo's throwaway Apache (0 = any free port).
        #[arg(long, default_value_t = 9646)]
        port: u16,
        /// Serve with the built-in HTTP listener even if Apache is installed.
        #[arg(long)]
        no_apache: bool,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Print the effective settings and where each one came from.
    CheckConfig,
    /// Check the installation end to end (config, Config.pm, database and grants, segment
    /// and socket permissions, web server, log files): one PASS/WARN/FAIL line per check with
    /// how to fix it; exits with status 1 if a check failed.
    Selftest {
        /// Machine-readable JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Inspect or maintain the shared segment.
    Segment {
        /// What to do.
        #[command(subcommand)]
        action: SegmentAction,
    },
    /// Empty the shared segment (all counters restart from zero).
    #[command(visible_alias = "Maint::Prometheus::ClearMemory")]
    ClearMemory,
    /// Fold the values of exited worker processes into worker="exited" now.
    #[command(
        visible_alias = "Maint::Prometheus::DeleteValuesWithDiedPIDs",
        alias = "Maint::Prometheus::DeleteDiedPIDs",
        alias = "gc"
    )]
    DeleteDeadWorkerValues,
    /// Remove what the segment holds for processes that are gone, now: the process collectors
    /// keep no per-process state (they read /proc on every scrape), so this folds the series
    /// of exited workers into worker="exited" and frees their slots, and says so.
    #[command(visible_alias = "Maint::Prometheus::DeleteDiedProcessCollectors")]
    DeleteDeadProcessCollectors,
    /// Publish the custom SQL metrics as they are now in the database to every exporter
    /// process (edits are served only after a deploy).
    #[command(visible_alias = "Maint::Prometheus::MergeCustomMetrics")]
    Deploy,
    /// Manage custom SQL metrics (stored in the OTRS database; see `db-init`).
    Custom {
        /// What to do.
        #[command(subcommand)]
        action: CustomAction,
    },
    /// Create the custom-metric tables in the OTRS database (idempotent; needs a database user
    /// that may CREATE TABLE, e.g. OTRS's own).
    DbInit,
    /// Read Apache access-log lines (the shipped `otrs_exporter` LogFormat) from stdin into the
    /// segment: `CustomLog "|/usr/bin/otrs-exporter ingest" otrs_exporter`.
    Ingest {
        /// Source label of the ingester's own counters.
        #[arg(long, default_value = "apache")]
        source: String,
        /// Never drop lines; wait for processing instead (for replaying a log file; behind a
        /// live web server this would make it wait).
        #[arg(long)]
        wait: bool,
    },
    /// Follow an access-log file (nginx, shipped `otrs_exporter` log_format) as a service.
    Follow {
        /// The log file [default: ingest.access_log].
        #[arg(long)]
        file: Option<PathBuf>,
        /// Milliseconds between reads.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Read once and exit.
        #[arg(long)]
        once: bool,
    },
    /// Follow the OTRS log files ([otrs_log] file and syslog_file) as a service, counting
    /// messages into the segment between scrapes.
    FollowOtrsLog {
        /// Milliseconds between reads.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Read once and exit.
        #[arg(long)]
        once: bool,
        /// Read files seen for the first time from their start (replay) instead of their end.
        #[arg(long)]
        from_start: bool,
    },
    /// Write synthetic traffic into a segment (used by `demo`).
    #[command(hide = true)]
    DemoTraffic {
        /// Segment file.
        #[arg(long)]
        segment: PathBuf,
        /// How long to run.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
}

/// `custom` sub-commands.
#[derive(Debug, Subcommand)]
pub enum CustomAction {
    /// List the definitions and whether each is deployed.
    List,
    /// Add a metric (not served until `deploy`).
    Add {
        /// Metric name, e.g. otrs_site_open_changes (counters without _total).
        #[arg(long)]
        name: String,
        /// What the value means (# HELP).
        #[arg(long = "help-text", value_name = "TEXT")]
        help_text: String,
        /// One SELECT: label columns, then the value column.
        #[arg(
            long,
            conflicts_with = "sql_file",
            required_unless_present = "sql_file"
        )]
        sql: Option<String>,
        /// Read the SELECT from this file.
        #[arg(long)]
        sql_file: Option<PathBuf>,
        /// gauge or counter.
        #[arg(long = "type", default_value = "gauge")]
        kind: String,
        /// Label names, comma-separated (default: the column names).
        #[arg(long, default_value = "")]
        labels: String,
        /// Seconds a result is cached and shared.
        #[arg(long, default_value_t = 60)]
        ttl: u32,
        /// Statement timeout in seconds.
        #[arg(long, default_value_t = 5)]
        timeout: u32,
        /// Store it disabled (deploys leave it out).
        #[arg(long)]
        disabled: bool,
    },
    /// Remove a metric (still served until the next `deploy`).
    Remove {
        /// Metric name.
        name: String,
    },
    /// Run a stored metric's query now (read-only) and print its series or the error.
    Test {
        /// Metric name.
        name: String,
    },
}

/// `segment` sub-commands.
#[derive(Debug, Subcommand)]
pub enum SegmentAction {
    /// Replace the segment with an empty one.
    Clear,
    /// Fold exited workers older than the grace period (gc.grace_seconds, or --grace).
    Gc {
        /// Grace period in seconds (0 = fold every dead worker now).
        #[arg(long)]
        grace: Option<u64>,
    },
    /// Print everything in the segment.
    Dump {
        /// Machine-readable JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn init_logging(level: log::LevelFilter) {
    // Under a web server stderr goes to its error log: keep lines self-describing.
    let _ = env_logger::Builder::new()
        .filter_level(level)
        .format(|buf, rec| {
            writeln!(
                buf,
                "otrs-exporter[{}]: {}: {}",
                std::process::id(),
                rec.level().as_str().to_lowercase(),
                rec.args()
            )
        })
        .try_init();
}

fn load_config(path: Option<&std::path::Path>) -> Result<Config> {
    let loaded = config::load(path)?;
    init_logging(loaded.config.log_level.to_level_filter());
    Ok(loaded.config)
}

fn service(cfg: &Config) -> Result<Arc<Service>> {
    let opts = segment_options(cfg).map_err(anyhow::Error::msg)?;
    Ok(Arc::new(Service::new(cfg.clone(), opts)))
}

fn open_segment(cfg: &Config) -> Result<Segment> {
    let opts = segment_options(cfg).map_err(anyhow::Error::msg)?;
    Segment::open(&opts).with_context(|| format!("opening {}", opts.path.display()))
}

/// Entry point: decides between web-server launch modes and console commands.
pub fn main() -> Result<()> {
    // A web server may pass CGI query words as arguments; never let them reach the parser.
    let launch = detect::detect();
    if !matches!(launch, detect::Launch::Standalone) {
        let cfg = load_config(None)?;
        return match launch {
            // One request, then the process exits.
            detect::Launch::Cgi => {
                crate::allocator::tune_for_one_request();
                let opts = segment_options(&cfg).map_err(anyhow::Error::msg)?;
                let service = Service::new(cfg, opts).one_shot();
                cgi::run_cgi(&service)?;
                service.exit()
            }
            detect::Launch::FastCgiFd0 => fcgi::serve(
                fcgi::Listener::from_stdin()?,
                service(&cfg)?,
                fcgi::ServeOptions::default(),
            )
            .map_err(Into::into),
            detect::Launch::SystemdFds(fds) => fcgi::serve(
                fcgi::Listener::from_systemd(&fds)?,
                service(&cfg)?,
                fcgi::ServeOptions::default(),
            )
            .map_err(Into::into),
            detect::Launch::Standalone => unreachable!(),
        };
    }
    let cli = Cli::parse();
    let cfg_path = cli.config.as_deref();
    let Some(command) = cli.command else {
        use clap::CommandFactory;
        Cli::command().print_help()?;
        eprintln!("\nno command given and not started by a web server (no CGI environment, no FastCGI socket on fd 0)");
        std::process::exit(2);
    };
    match command {
        Command::Serve {
            listen,
            allow_non_loopback,
        } => {
            let cfg = load_config(cfg_path)?;
            let spec = listen.unwrap_or_else(|| cfg.web.listen.clone());
            let listener = fcgi::Listener::bind_with(&spec, socket_perms(&cfg)?)?;
            let opts = fcgi::ServeOptions {
                allow_non_loopback,
                ..fcgi::ServeOptions::default()
            };
            fcgi::serve(listener, service(&cfg)?, opts)?;
        }
        Command::ServeHttp { listen, threads } => {
            let cfg = load_config(cfg_path)?;
            let server = crate::front::http::bind(listen, false)?;
            log::info!("serving HTTP on {}", server.server_addr());
            crate::front::http::run(Arc::new(server), service(&cfg)?, threads);
        }
        Command::Demo {
            listen,
            port,
            no_apache,
            seconds,
        } => {
            let cfg = load_config(cfg_path)?;
            let opts = crate::demo::Options {
                listen,
                apache_port: port,
                no_apache,
                duration: seconds.map(Duration::from_secs),
            };
            crate::demo::run(cfg, opts)?;
        }
        Command::CheckConfig => {
            let loaded = config::load(cfg_path)?;
            print!("{}", loaded.describe());
            let cfg = &loaded.config;
            println!("\n# derived");
            println!("metrics path: {}", cfg.metrics_path());
            println!("admin path:   {}", cfg.admin_path());
            segment_options(cfg).map_err(anyhow::Error::msg)?;
        }
        Command::Selftest { json } => {
            init_logging(log::LevelFilter::Error);
            let report = crate::selftest::run(cfg_path);
            let out = if json {
                serde_json::to_string_pretty(&report)? + "\n"
            } else {
                report.text()
            };
            // Piped into `head`: a closed pipe is no error.
            match std::io::stdout().write_all(out.as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
                _ => {}
            }
            if report.failed() {
                std::process::exit(1);
            }
        }
        Command::Segment { action } => {
            let cfg = load_config(cfg_path)?;
            let seg = open_segment(&cfg)?;
            match action {
                SegmentAction::Clear => clear(&seg)?,
                SegmentAction::Gc { grace } => gc(
                    &seg,
                    Duration::from_secs(grace.unwrap_or(cfg.gc.grace_seconds)),
                )?,
                SegmentAction::Dump { json } => {
                    let dump = seg.dump()?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&dump)?);
                    } else {
                        print!("{dump}");
                    }
                }
            }
        }
        Command::ClearMemory => {
            let cfg = load_config(cfg_path)?;
            clear(&open_segment(&cfg)?)?;
        }
        Command::DeleteDeadWorkerValues => {
            let cfg = load_config(cfg_path)?;
            gc(&open_segment(&cfg)?, Duration::ZERO)?;
        }
        Command::DeleteDeadProcessCollectors => {
            let cfg = load_config(cfg_path)?;
            let seg = open_segment(&cfg)?;
            println!(
                "Process metrics (otrs_web_process_*, otrs_daemon_process_*) are read from /proc on every scrape; nothing to delete for them."
            );
            gc(&seg, Duration::ZERO)?;
        }
        Command::Deploy => {
            let cfg = load_config(cfg_path)?;
            let seg = open_segment(&cfg)?;
            let mut store = custom_store(&cfg)?;
            println!("Reading the custom metric definitions ...");
            let d = store.deploy(&console_user())?;
            println!(
                "Recorded deploy #{} with {} enabled metric(s); publishing to {} ...",
                d.id,
                d.metrics.len(),
                seg.path().display()
            );
            d.publish(&seg)?;
            println!("Done. Every exporter process serves this set from its next scrape.");
        }
        Command::Custom { action } => {
            let cfg = load_config(cfg_path)?;
            custom_command(&cfg, action)?;
        }
        Command::DbInit => {
            let cfg = load_config(cfg_path)?;
            let settings = db_settings(&cfg)?;
            println!(
                "Creating the custom-metric tables in {} ...",
                settings.describe()
            );
            let mut store = crate::custom::store::Store::connect(&settings)
                .with_context(|| format!("connecting to {}", settings.describe()))?;
            store
                .init(|stmt| println!("  {stmt}"))
                .context("creating the tables (the database user needs CREATE privileges)")?;
            println!(
                "Done. Tables otrs_exporter_custom_metric and otrs_exporter_custom_deploy exist."
            );
        }
        Command::FollowOtrsLog {
            interval_ms,
            once,
            from_start,
        } => {
            use crate::ingest::follow::Follower;
            use crate::ingest::otrs_log::{Format, OtrsLogSink};
            let cfg = load_config(cfg_path)?;
            let o = &cfg.otrs_log;
            anyhow::ensure!(
                crate::collector::otrs_log::OtrsLogCollector::is_enabled(o),
                "otrs_log.file and otrs_log.syslog_file are both empty"
            );
            if !from_start {
                // The collector's own logic, month switches included.
                use crate::collector::Collector as _;
                let opts = segment_options(&cfg).map_err(anyhow::Error::msg)?;
                let source = crate::collector::segment::SegmentSource::new(opts);
                let c = crate::collector::otrs_log::OtrsLogCollector::new(source, o);
                loop {
                    let ctx = crate::collector::Context::new(
                        std::time::Instant::now() + Duration::from_secs(10),
                    );
                    if let Err(e) = c.collect(&ctx) {
                        log::warn!("{e}");
                    }
                    if once {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(interval_ms));
                }
            }
            let seg = open_segment(&cfg)?;
            let mut followers = Vec::new();
            for (path, format) in [(&o.file, Format::File), (&o.syslog_file, Format::Syslog)] {
                if path.is_empty() {
                    continue;
                }
                let path = if format == Format::File && o.date_suffix {
                    crate::collector::otrs_log::current_path(path)
                } else {
                    PathBuf::from(path)
                };
                let sink = OtrsLogSink::new(&seg, format, o.module_cap, o.prefix_cap)?;
                let mut f = Follower::with_sink(&seg, &path, sink)?;
                if from_start {
                    f = f.from_start();
                }
                followers.push(f);
            }
            loop {
                for f in &mut followers {
                    if let Err(e) = f.advance(Duration::from_secs(3600)) {
                        log::warn!("{}: {e}", f.path().display());
                    }
                }
                if once {
                    break;
                }
                std::thread::sleep(Duration::from_millis(interval_ms));
            }
        }
        Command::Ingest { source, wait } => {
            let cfg = load_config(cfg_path)?;
            let seg = open_segment(&cfg)?;
            let report =
                crate::ingest::pipe::run(&seg, &cfg.ingest, &source, std::io::stdin(), wait)?;
            log::info!(
                "access log pipe closed: {} lines processed, {} dropped",
                report.processed,
                report.dropped
            );
        }
        Command::Follow {
            file,
            interval_ms,
            once,
        } => {
            let cfg = load_config(cfg_path)?;
            let file = file
                .or_else(|| {
                    (!cfg.ingest.access_log.is_empty())
                        .then(|| cfg.ingest.access_log.clone().into())
                })
                .context("no file given and ingest.access_log is empty")?;
            let seg = open_segment(&cfg)?;
            let mut f = crate::ingest::follow::Follower::new(&seg, &cfg.ingest, &file, "nginx")?;
            loop {
                if let Err(e) = f.advance(Duration::from_secs(5)) {
                    log::warn!("{}: {e}", file.display());
                }
                if once {
                    break;
                }
                std::thread::sleep(Duration::from_millis(interval_ms));
            }
        }
        Command::DemoTraffic { segment, seconds } => {
            init_logging(log::LevelFilter::Warn);
            // Die with the demo, however it ends. The demo blocks SIGTERM while it waits for
            // it and the mask is inherited: unblock it, or the death signal stays pending.
            let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM);
            crate::demo::traffic(&segment, Duration::from_secs(seconds))?;
        }
    }
    Ok(())
}

/// Who a console command acts as, for the changed-by columns.
fn console_user() -> String {
    let u = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| nix::unistd::getuid().to_string());
    format!("console:{u}")
}

fn db_settings(cfg: &Config) -> Result<crate::db::DbSettings> {
    match crate::db::resolve(cfg) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => anyhow::bail!(
            "no database configured: set [db] in the config or otrs_home (no {} found)",
            cfg.otrs_home.join("Kernel/Config.pm").display()
        ),
        Err(e) => anyhow::bail!("{e}"),
    }
}

fn custom_store(cfg: &Config) -> Result<crate::custom::store::Store> {
    let s = db_settings(cfg)?;
    crate::custom::store::Store::connect(&s)
        .with_context(|| format!("connecting to {}", s.describe()))
}

fn custom_command(cfg: &Config, action: CustomAction) -> Result<()> {
    use crate::custom::{parse_label_names, Definition, Kind};
    let mut store = custom_store(cfg)?;
    match action {
        CustomAction::List => {
            let rows = store.list()?;
            if rows.is_empty() {
                println!("No custom metrics defined. Add one with `otrs-exporter custom add`.");
            }
            for s in rows {
                let state = match (s.def.enabled, s.undeployed()) {
                    (false, _) => "disabled",
                    (true, false) => "deployed",
                    (true, true) if s.deployed_revision == 0 => "not deployed",
                    (true, true) => "changed, not deployed",
                };
                println!(
                    "{}  {}  [{}]  ttl {}s  timeout {}s  changed {} by {}\n    {}\n    {}",
                    s.def.name,
                    s.def.kind.as_str(),
                    state,
                    s.def.ttl_seconds,
                    s.def.timeout_seconds,
                    s.changed.0,
                    s.changed.1,
                    s.def.help,
                    s.def.sql.replace('\n', "\n    ")
                );
            }
        }
        CustomAction::Add {
            name,
            help_text,
            sql,
            sql_file,
            kind,
            labels,
            ttl,
            timeout,
            disabled,
        } => {
            let sql = match (sql, sql_file) {
                (Some(s), _) => s,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {}", f.display()))?,
                (None, None) => anyhow::bail!("give --sql or --sql-file"),
            };
            let mut d = Definition::new(&name, &help_text, &sql);
            d.kind = Kind::parse(&kind).map_err(anyhow::Error::msg)?;
            d.label_names = parse_label_names(&labels);
            d.ttl_seconds = ttl;
            d.timeout_seconds = timeout;
            d.enabled = !disabled;
            store.create(&d, &console_user())?;
            println!("Added {}. Run `otrs-exporter deploy` to serve it.", d.name);
        }
        CustomAction::Remove { name } => {
            anyhow::ensure!(
                store.delete(&name)?,
                "there is no custom metric named {name:?}"
            );
            println!("Removed {name}. Run `otrs-exporter deploy` to stop serving it.");
        }
        CustomAction::Test { name } => {
            let s = store
                .get(&name)?
                .with_context(|| format!("there is no custom metric named {name:?}"))?;
            let settings = db_settings(cfg)?;
            let handle = crate::db::DbHandle::new(Ok(settings));
            let limit = Duration::from_secs(s.def.timeout_seconds.into());
            println!(
                "Running {name} (read-only, timeout {}s) ...",
                s.def.timeout_seconds
            );
            let deadline = std::time::Instant::now() + limit + Duration::from_secs(2);
            let fam = handle
                .run(deadline, |db| Ok(s.def.run(db, limit)))?
                .map_err(anyhow::Error::msg)?;
            let n = fam.series.len();
            let mut snap = crate::snapshot::Snapshot {
                families: vec![fam],
            };
            snap.normalize();
            let mut out = Vec::new();
            crate::exposition::render(&snap, crate::exposition::Format::Text, &mut out);
            print!("{}", String::from_utf8_lossy(&out));
            println!("# {n} series");
        }
    }
    Ok(())
}

/// The Unix socket permissions from `web.socket_mode` and `web.socket_group`.
fn socket_perms(cfg: &Config) -> Result<fcgi::SocketPerms> {
    let w = &cfg.web;
    let gid = if w.socket_group.is_empty() {
        None
    } else {
        match nix::unistd::Group::from_name(&w.socket_group) {
            Ok(Some(g)) => Some(g.gid.as_raw()),
            Ok(None) => anyhow::bail!("web.socket_group: no group named {:?}", w.socket_group),
            Err(e) => anyhow::bail!("web.socket_group {:?}: {e}", w.socket_group),
        }
    };
    Ok(fcgi::SocketPerms {
        mode: w.socket_mode.bits(),
        gid,
    })
}

fn clear(seg: &Segment) -> Result<()> {
    println!("Clearing the shared segment {} ...", seg.path().display());
    seg.clear()?;
    println!("Done. All processes switch to the empty segment on their next access.");
    Ok(())
}

fn gc(seg: &Segment, grace: Duration) -> Result<()> {
    println!(
        "Folding workers that exited more than {}s ago into worker=\"exited\" ...",
        grace.as_secs()
    );
    let r = seg.gc(grace)?;
    println!(
        "Done. Checked {} workers: folded {} ({} series kept as worker=\"exited\", {} gauges dropped), {} still within the grace period.",
        r.workers_checked, r.workers_folded, r.series_folded, r.series_dropped, r.workers_pending
    );
    Ok(())
}
