//! OTRS log messages through the real scrape path (service → otrs_log collector → follower →
//! segment → exposition): File and SysLog backend lines with rotation, copytruncate,
//! partial lines, continuation lines, other programs' lines and junk, counted exactly; the
//! module cap; the monthly `.YYYY-MM` file switch.

use std::io::Write;
use std::path::Path;

use otrs_exporter::config::Config;
use otrs_exporter::front::request::{Handler, Request};
use otrs_exporter::service::Service;

mod common;
use common::{promtool_check, sample};

fn service(dir: &Path, edit: impl FnOnce(&mut Config)) -> Service {
    let mut cfg = Config::default();
    cfg.segment.path = dir.join("seg");
    edit(&mut cfg);
    let opts = otrs_exporter::service::segment_options(&cfg).unwrap();
    Service::new(cfg, opts)
}

fn scrape(s: &Service) -> String {
    let req = Request::from_cgi_params(
        vec![
            ("REQUEST_METHOD".into(), "GET".into()),
            ("SCRIPT_NAME".into(), s.config().metrics_path()),
            (
                "QUERY_STRING".into(),
                "collect[]=otrs_log&collect[]=segment".into(),
            ),
        ],
        Vec::new(),
    );
    let r = s.handle(&req);
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).unwrap()
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

fn count(body: &str, prio: &str, prefix: &str, module: &str) -> f64 {
    sample(
        body,
        &format!(
            "otrs_log_messages_total{{module=\"{module}\",prefix=\"{prefix}\",priority=\"{prio}\"}}"
        ),
    )
    .unwrap_or(0.0)
}

fn errors(body: &str, source: &str) -> f64 {
    sample(
        body,
        &format!("otrs_exporter_log_parse_errors_total{{source=\"{source}\"}}"),
    )
    .unwrap_or(0.0)
}

const T: &str = "[Tue Mar  4 14:22:07 2025]";
const TICKET_GET: &str = "Kernel::System::Ticket::TicketGet";
const AUTH: &str = "Kernel::System::Auth::DB::Auth";

#[test]
fn file_backend_counts_exactly_through_rotation_truncation_and_partial_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("otrs.log");
    // History before the exporter: never counted.
    append(&log, &format!("{T}[Error][{TICKET_GET}][1] old\n"));
    let s = service(dir.path(), |c| {
        c.otrs_log.file = log.to_string_lossy().into()
    });
    let body = scrape(&s);
    assert_eq!(count(&body, "error", "", TICKET_GET), 0.0);

    append(
        &log,
        &format!(
            "{T}[Error][{TICKET_GET}][1123] No such TicketID (4711)!\n\
             {T}[Error][{TICKET_GET}][1123] No such TicketID (4712)!\n\
             {T}[Notice][{AUTH}] User: root@localhost authentication with wrong Pw!!!\n\
             {T}[Info][Kernel::System::Ticket::TicketCreate] New Ticket [2025/1] created\n\
               second line of the ticket message\n\
             \tthird line\n\
             [yesterday][Error][X][1] junk\n\
             \x01\x02 binary junk\n\
             {T}[Debug][{AUTH}][77] part"
        ),
    );
    let body = scrape(&s);
    promtool_check(&body);
    assert_eq!(count(&body, "error", "", TICKET_GET), 2.0);
    assert_eq!(count(&body, "notice", "", AUTH), 1.0);
    assert_eq!(
        count(&body, "info", "", "Kernel::System::Ticket::TicketCreate"),
        1.0
    );
    assert_eq!(count(&body, "debug", "", AUTH), 0.0, "partial line waits");
    assert_eq!(errors(&body, "otrs_file"), 2.0);
    let kind = |k: &str| {
        sample(
            &body,
            &format!("otrs_exporter_otrs_log_lines_total{{kind=\"{k}\",source=\"otrs_file\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(kind("continuation"), 2.0);
    assert_eq!(kind("message"), 4.0);

    // The partial line completes; then logrotate renames the file, OTRS writes one more line
    // to the old file (its handle was open) and the next ones to a new file.
    append(&log, "ial\n");
    let rotated = dir.path().join("otrs.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    append(
        &rotated,
        &format!("{T}[Error][{TICKET_GET}][9] late write\n"),
    );
    append(&log, &format!("{T}[Error][{TICKET_GET}][9] new file\n"));
    let body = scrape(&s);
    assert_eq!(count(&body, "debug", "", AUTH), 1.0);
    assert_eq!(count(&body, "error", "", TICKET_GET), 4.0);

    // copytruncate: the file is emptied and written again.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    append(
        &log,
        &format!("{T}[Notice][{AUTH}] again\n{T}[Notice][{AUTH}] and again\n"),
    );
    let body = scrape(&s);
    assert_eq!(count(&body, "notice", "", AUTH), 3.0);
    assert_eq!(count(&body, "error", "", TICKET_GET), 4.0);
    assert_eq!(errors(&body, "otrs_file"), 2.0);

    // A second exporter process (another service on the same segment) continues, not repeats.
    let other = service(dir.path(), |c| {
        c.otrs_log.file = log.to_string_lossy().into()
    });
    append(&log, &format!("{T}[Notice][{AUTH}] from the other\n"));
    let body = scrape(&other);
    assert_eq!(count(&body, "notice", "", AUTH), 4.0);
    let body = scrape(&s);
    assert_eq!(count(&body, "notice", "", AUTH), 4.0);
}

#[test]
fn syslog_backend_with_prefixes_other_programs_and_junk() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("syslog");
    append(&log, "");
    let s = service(dir.path(), |c| {
        c.otrs_log.syslog_file = log.to_string_lossy().into();
    });
    scrape(&s);
    let daemon = "OTRS-otrs.Daemon.pl - Daemon Kernel::System::Daemon::DaemonModules::SchedulerTaskWorker-10";
    append(
        &log,
        &format!(
            "Mar  4 14:22:07 helpdesk OTRS-CGI-10[12345]: [Error][{TICKET_GET}][Line:1123]: No such TicketID (4711)!\n\
             Mar  4 14:22:08 helpdesk OTRS-CGI-10[12346]: [Notice][{AUTH}] User: x wrong Pw#012second line\n\
             Mar  4 14:22:09 helpdesk {daemon}[99]: [Info][Kernel::System::Daemon::DaemonModules::SchedulerTaskWorker::Run] task done\n\
             Mar  4 14:22:09 helpdesk CRON[5]: (root) CMD (command -v debian-sa1 > /dev/null)\n\
             Mar  4 14:22:09 helpdesk kernel: [12345.678] eth0: link up\n\
             2025-03-04T14:22:10.123456+01:00 helpdesk OTRS-CGI-10[12347]: [Error][{TICKET_GET}][Line:1123]: again\n\
             Mar  4 14:22:11 helpdesk OTRS-CGI-10[1]: [Error][{TICKET_GET}] no line number\n\
             \x00\x00\x00 junk\n"
        ),
    );
    let body = scrape(&s);
    promtool_check(&body);
    assert_eq!(count(&body, "error", "OTRS-CGI-10", TICKET_GET), 2.0);
    assert_eq!(count(&body, "notice", "OTRS-CGI-10", AUTH), 1.0);
    assert_eq!(
        count(
            &body,
            "info",
            daemon,
            "Kernel::System::Daemon::DaemonModules::SchedulerTaskWorker::Run"
        ),
        1.0
    );
    assert_eq!(errors(&body, "otrs_syslog"), 2.0);
    assert_eq!(
        sample(
            &body,
            "otrs_exporter_otrs_log_lines_total{kind=\"foreign\",source=\"otrs_syslog\"}"
        ),
        Some(2.0)
    );
    // rsyslog rotation (rename + new file).
    std::fs::rename(&log, dir.path().join("syslog.1")).unwrap();
    append(
        &log,
        "Mar  4 15:00:00 helpdesk OTRS-CGI-10[7]: [Notice][Kernel::System::Auth::DB::Auth] x\n",
    );
    let body = scrape(&s);
    assert_eq!(count(&body, "notice", "OTRS-CGI-10", AUTH), 2.0);
}

#[test]
fn module_cap_overflows_into_one_series() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("otrs.log");
    append(&log, "");
    let s = service(dir.path(), |c| {
        c.otrs_log.file = log.to_string_lossy().into();
        c.otrs_log.module_cap = 2;
    });
    scrape(&s);
    let mut text = String::new();
    for m in ["A::a", "B::b", "A::a", "C::c", "D::d", "C::c"] {
        text.push_str(&format!("{T}[Error][{m}][1] x\n"));
    }
    append(&log, &text);
    let body = scrape(&s);
    assert_eq!(count(&body, "error", "", "A::a"), 2.0);
    assert_eq!(count(&body, "error", "", "B::b"), 1.0);
    assert_eq!(count(&body, "error", "", "__overflow__"), 3.0);
    assert_eq!(
        sample(
            &body,
            "otrs_exporter_label_overflow_total{label=\"otrs_log_module\"}"
        ),
        Some(3.0)
    );
}

#[test]
fn monthly_file_switch_finishes_the_old_file_and_reads_the_new_one_whole() {
    use otrs_exporter::collector::otrs_log::{current_path, monthly_path};
    use otrs_exporter::ingest::follow::Follower;
    use otrs_exporter::ingest::otrs_log::{Format, OtrsLogSink};
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("otrs.log").to_string_lossy().into_owned();
    let s = service(dir.path(), |c| {
        c.otrs_log.file = base.clone();
        c.otrs_log.date_suffix = true;
    });
    // Last month: the exporter was following it (a cursor exists), then a line came in just
    // before midnight, and the new month's file already has two.
    let now = current_path(&base);
    let name = now.file_name().unwrap().to_string_lossy().into_owned();
    let (y, m) = name.rsplit_once('.').unwrap().1.split_once('-').unwrap();
    let (y, m): (i32, u32) = (y.parse().unwrap(), m.parse().unwrap());
    let prev = if m == 1 {
        monthly_path(&base, (y - 1, 12))
    } else {
        monthly_path(&base, (y, m - 1))
    };
    append(&prev, &format!("{T}[Error][Old::x][1] history\n"));
    {
        let seg = s.segment().get().unwrap();
        let sink = OtrsLogSink::new(&seg, Format::File, 100, 100).unwrap();
        let mut f = Follower::with_sink(&seg, &prev, sink).unwrap();
        f.advance(std::time::Duration::from_secs(1)).unwrap();
    }
    append(&prev, &format!("{T}[Error][Old::x][1] last of the month\n"));
    append(
        &now,
        &format!("{T}[Error][New::x][1] one\n{T}[Error][New::x][1] two\n"),
    );
    let body = scrape(&s);
    assert_eq!(count(&body, "error", "", "Old::x"), 1.0);
    assert_eq!(count(&body, "error", "", "New::x"), 2.0);
}
