//! Custom SQL metrics and the admin page against the real PostgreSQL and MariaDB: the exporter's
//! own request handler (the one FastCGI and CGI call) in-process, the console commands as the
//! real binary, and the same shared segment file for both.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::testdb::TestDb;
use common::{promtool_check, sample, BIN, METRICS};
use otrs_exporter::custom::Definition;
use otrs_exporter::db::{DbHandle, Driver};
use otrs_exporter::front::request::{Handler, Request, Response};
use otrs_exporter::segment::SegmentOptions;
use otrs_exporter::service::Service;

const ADMIN: &str = "/otrs/nph-genericinterface.pl/Webservice/Prometheus/admin";
const DRIVERS: [Driver; 2] = [Driver::Postgres, Driver::Mysql];

/// An exporter (service + config file for the binary) on a test database.
struct Exporter {
    dir: tempfile::TempDir,
    svc: Service,
}

impl Exporter {
    fn new(db: &TestDb) -> Exporter {
        let dir = tempfile::tempdir().unwrap();
        let seg = dir.path().join("seg");
        let mut cfg = db.config();
        cfg.segment.path = seg.clone();
        cfg.admin.users = vec!["alice".into(), "<b>eve</b>".into()];
        std::fs::write(
            dir.path().join("config.toml"),
            format!(
                "otrs_home = \"/nonexistent-otrs\"\n[segment]\npath = \"{}\"\n{}\n[admin]\nusers = [\"alice\"]\n",
                seg.display(),
                db.toml()
            ),
        )
        .unwrap();
        let svc = Service::new(cfg, SegmentOptions::new(seg));
        Exporter { dir, svc }
    }

    /// Runs the real binary with this exporter's config.
    fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .args(args)
            .env("USER", "tester")
            .output()
            .unwrap();
        let text = common::output_text(&out);
        (out.status.success(), text)
    }

    fn request(&self, method: &str, user: Option<&str>, query: &str, body: &str) -> Response {
        let mut p = vec![
            ("REQUEST_METHOD".to_string(), method.to_string()),
            ("REQUEST_URI".to_string(), format!("{ADMIN}?{query}")),
            ("QUERY_STRING".to_string(), query.to_string()),
        ];
        if let Some(u) = user {
            p.push(("REMOTE_USER".into(), u.into()));
        }
        if method == "POST" {
            p.push((
                "CONTENT_TYPE".into(),
                "application/x-www-form-urlencoded".into(),
            ));
        }
        self.svc
            .handle(&Request::from_cgi_params(p, body.as_bytes().to_vec()))
    }

    fn get(&self, user: &str, query: &str) -> String {
        let r = self.request("GET", Some(user), query, "");
        assert_eq!(r.status, 200, "{}", body(&r));
        body(&r)
    }

    /// A form token for `user`, taken from the list page as a browser would.
    fn token(&self, user: &str) -> String {
        let page = self.get(user, "");
        let at = page.find("name=\"csrf\" value=\"").expect("a form token") + 19;
        page[at..at + page[at..].find('"').unwrap()].to_string()
    }

    /// POSTs `fields` as `alice` with a valid token.
    fn post(&self, fields: &[(&str, &str)]) -> Response {
        let token = self.token("alice");
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.request("POST", Some("alice"), "", &encode(&all))
    }

    fn scrape(&self) -> String {
        let r = self.svc.handle(&Request::from_cgi_params(
            vec![
                ("REQUEST_METHOD".into(), "GET".into()),
                ("REQUEST_URI".into(), METRICS.into()),
                ("QUERY_STRING".into(), "collect[]=custom".into()),
            ],
            Vec::new(),
        ));
        assert_eq!(r.status, 200);
        body(&r)
    }
}

fn body(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn encode(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The metric form's fields.
fn metric<'a>(name: &'a str, sql: &'a str, op: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("action", "save"),
        ("op", op),
        ("original", ""),
        ("name", name),
        ("type", "gauge"),
        ("help", "Tickets per queue (test)."),
        ("sql", sql),
        ("labels", ""),
        ("ttl", "60"),
        ("timeout", "5"),
        ("enabled", "1"),
    ]
}

fn assert_redirect(r: &Response, flash_contains: &str) {
    assert_eq!(r.status, 303, "{}", body(r));
    assert_eq!(header(r, "Location"), Some(ADMIN));
    let cookie = header(r, "Set-Cookie").unwrap();
    assert!(
        cookie.starts_with("otrs_exporter_flash=ok:"),
        "{cookie} (expected success: {flash_contains})"
    );
    let msg: String = form_urlencoded::parse(cookie.split(';').next().unwrap().as_bytes())
        .next()
        .unwrap()
        .1
        .into_owned();
    assert!(msg.contains(flash_contains), "{msg}");
}

const BY_QUEUE: &str = "SELECT q.name AS queue, COUNT(*) AS n FROM ticket t \
                        JOIN queue q ON q.id = t.queue_id GROUP BY q.name";

#[test]
fn create_edit_delete_deploy_round_trip_on_both_servers() {
    for driver in DRIVERS {
        let db = TestDb::new(driver, 60);
        let ex = Exporter::new(&db);
        let (ok, out) = ex.cli(&["db-init"]);
        assert!(ok, "{out}");
        assert!(
            out.contains("CREATE TABLE IF NOT EXISTS otrs_exporter_custom_metric"),
            "{out}"
        );
        let (ok, out) = ex.cli(&["db-init"]);
        assert!(ok, "db-init runs twice: {out}");

        // Nothing deployed: the collector works and serves no custom metric.
        let body = ex.scrape();
        assert_eq!(
            sample(
                &body,
                "otrs_exporter_collector_success{collector=\"custom\"}"
            ),
            Some(1.0),
            "{body}"
        );
        assert_eq!(
            sample(&body, "otrs_custom_metric_deployed"),
            Some(0.0),
            "{body}"
        );

        // Create: saved, listed as not deployed, not scraped.
        assert_redirect(
            &ex.post(&metric("otrs_site_tickets", BY_QUEUE, "save")),
            "Saved otrs_site_tickets",
        );
        let list = ex.get("alice", "");
        assert!(
            list.contains("otrs_site_tickets") && list.contains("not deployed"),
            "{list}"
        );
        assert!(
            !ex.scrape().contains("otrs_site_tickets{"),
            "not served before deploy"
        );

        // Deploy: served, with the database's own counts.
        assert_redirect(&ex.post(&[("action", "deploy")]), "Deployed 1 metric(s)");
        let body = ex.scrape();
        let raw = db.query(
            "SELECT COUNT(*) FROM ticket t JOIN queue q ON q.id = t.queue_id WHERE q.name = 'Support'",
        );
        assert_eq!(
            sample(&body, "otrs_site_tickets{queue=\"Support\"}"),
            Some(raw.parse().unwrap()),
            "{body}"
        );
        assert_eq!(
            sample(
                &body,
                "otrs_custom_metric_success{metric=\"otrs_site_tickets\"}"
            ),
            Some(1.0)
        );
        promtool_check(&body);
        assert_eq!(
            db.query("SELECT deployed_revision FROM otrs_exporter_custom_metric"),
            "1"
        );

        // Edit: the served version stays until the next deploy.
        let mut edit = metric(
            "otrs_site_tickets",
            "SELECT 'all' AS queue, 42 AS n",
            "save",
        );
        edit[2] = ("original", "otrs_site_tickets");
        assert_redirect(&ex.post(&edit), "Saved");
        assert!(ex.get("alice", "").contains("changed, not deployed"));
        let body = ex.scrape();
        assert!(
            body.contains("otrs_site_tickets{queue=\"Support\"}"),
            "{body}"
        );
        assert!(!body.contains("queue=\"all\""), "{body}");
        assert_redirect(&ex.post(&[("action", "deploy")]), "Deployed 1");
        let body = ex.scrape();
        assert_eq!(
            sample(&body, "otrs_site_tickets{queue=\"all\"}"),
            Some(42.0),
            "{body}"
        );
        assert!(!body.contains("queue=\"Support\""), "{body}");

        // Clearing the shared memory: the deployment comes back from the database.
        assert_redirect(&ex.post(&[("action", "clear")]), "cleared");
        let body = ex.scrape();
        assert_eq!(
            sample(&body, "otrs_site_tickets{queue=\"all\"}"),
            Some(42.0),
            "{body}"
        );

        // Delete: served until the next deploy.
        assert_redirect(
            &ex.post(&[("action", "delete"), ("name", "otrs_site_tickets")]),
            "Deleted otrs_site_tickets",
        );
        assert!(ex.scrape().contains("otrs_site_tickets{"));
        assert_redirect(&ex.post(&[("action", "deploy")]), "Deployed 0");
        assert!(!ex.scrape().contains("otrs_site_tickets{"));

        // The console commands on the same database and segment.
        let (ok, out) = ex.cli(&[
            "custom",
            "add",
            "--name",
            "otrs_site_queues",
            "--help-text",
            "Queues.",
            "--sql",
            "SELECT COUNT(*) FROM queue",
            "--type",
            "counter",
        ]);
        assert!(ok, "{out}");
        let (ok, out) = ex.cli(&["custom", "list"]);
        assert!(
            ok && out.contains("otrs_site_queues") && out.contains("not deployed"),
            "{out}"
        );
        assert!(out.contains("console:tester"), "{out}");
        let (ok, out) = ex.cli(&["custom", "test", "otrs_site_queues"]);
        let queues = db.query("SELECT COUNT(*) FROM queue");
        assert!(
            ok && out.contains(&format!("otrs_site_queues_total {queues}")),
            "{out}"
        );
        assert!(!ex.scrape().contains("otrs_site_queues_total "));
        let (ok, out) = ex.cli(&["Maint::Prometheus::MergeCustomMetrics"]);
        assert!(ok && out.contains("1 enabled metric(s)"), "{out}");
        let body = ex.scrape();
        assert_eq!(
            sample(&body, "otrs_site_queues_total"),
            Some(queues.parse().unwrap()),
            "{body}"
        );
        assert!(
            body.contains("# TYPE otrs_site_queues_total counter"),
            "{body}"
        );
        promtool_check(&body);
        let (ok, out) = ex.cli(&["custom", "remove", "otrs_site_queues"]);
        assert!(ok, "{out}");
        let (ok, out) = ex.cli(&["custom", "remove", "otrs_site_queues"]);
        assert!(!ok && out.contains("no custom metric named"), "{out}");
    }
}

/// Runs `sql` as a custom metric's query the way scrapes and tests do.
fn run(db: &TestDb, sql: &str, timeout: u32) -> Result<usize, String> {
    let mut d = Definition::new("otrs_site_x", "x", sql);
    d.timeout_seconds = timeout;
    let h = DbHandle::new(Ok(db.settings()));
    let limit = Duration::from_secs(timeout.into());
    h.run(Instant::now() + limit + Duration::from_secs(5), |c| {
        Ok(d.run(c, limit))
    })
    .map_err(|e| e.0)?
    .map(|f| f.series.len())
}

#[test]
fn writes_are_refused_by_the_database_and_slow_queries_are_cut() {
    for driver in DRIVERS {
        let db = TestDb::new(driver, 20);
        let tickets = db.query("SELECT COUNT(*) FROM ticket");
        let queues = db.query("SELECT COUNT(*) FROM queue");
        for sql in [
            "DELETE FROM ticket",
            "UPDATE ticket SET title = 'x'",
            "INSERT INTO queue (name) VALUES ('x')",
            "CREATE TABLE custom_probe (id INTEGER)",
            "DROP TABLE ticket",
        ] {
            let e = run(&db, sql, 5).expect_err(sql);
            let m = e.to_ascii_lowercase();
            assert!(
                m.contains("read-only transaction") || m.contains("read only transaction"),
                "{driver:?} {sql}: {e}"
            );
        }
        // Several statements are refused before anything runs.
        let e = run(&db, "SELECT 1; DELETE FROM ticket", 5).unwrap_err();
        assert!(!e.is_empty());
        // A statement ending the transaction cannot open a writable one for the next.
        let _ = run(&db, "COMMIT", 5);
        let e = run(&db, "CREATE TABLE custom_probe (id INTEGER)", 5).unwrap_err();
        assert!(e.to_ascii_lowercase().contains("read"), "{e}");
        assert_eq!(db.query("SELECT COUNT(*) FROM ticket"), tickets);
        assert_eq!(db.query("SELECT COUNT(*) FROM queue"), queues);
        let probe = db.query(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'custom_probe'",
        );
        assert_eq!(probe, "0", "{driver:?}: the CREATE TABLE got through");

        // A slow query is cut by the statement timeout (the database says so).
        let sleep = match driver {
            Driver::Postgres => "SELECT 'x' AS a, 1 FROM pg_sleep(30)",
            Driver::Mysql => "SELECT 'x' AS a, SLEEP(30)",
        };
        let e = run(&db, sleep, 1).unwrap_err();
        let m = e.to_ascii_lowercase();
        assert!(
            m.contains("statement timeout") || m.contains("max_statement_time"),
            "{driver:?}: {e}"
        );
        // The row cap.
        let many = match driver {
            Driver::Postgres => "SELECT g AS i, 1 FROM generate_series(1, 1001) g",
            Driver::Mysql => "SELECT seq AS i, 1 FROM seq_1_to_1001",
        };
        let e = run(&db, many, 5).unwrap_err();
        assert!(e.contains("more than 1000 rows"), "{e}");
        // PostgreSQL reads through a cursor: a huge result stops at the cap instead of being
        // materialized (which would hit the timeout, or memory, first).
        if driver == Driver::Postgres {
            let huge = "SELECT generate_series(1, 200000000) AS i, 1";
            let e = run(&db, huge, 5).unwrap_err();
            assert!(e.contains("more than 1000 rows"), "{e}");
        }
        assert_eq!(run(&db, "SELECT 'a' AS x, 1", 5), Ok(1));
    }
}

#[test]
fn invalid_sql_and_failing_metrics_show_the_database_error_without_breaking_the_scrape() {
    for driver in DRIVERS {
        let db = TestDb::new(driver, 10);
        let ex = Exporter::new(&db);
        assert!(ex.cli(&["db-init"]).0);
        // Test from the form: the database's error, escaped.
        let r = ex.post(&metric("otrs_site_bad", "SELEC 1 FROM <nowhere>", "test"));
        assert_eq!(r.status, 200);
        let page = body(&r);
        assert!(page.contains("id=\"test-error\""), "{page}");
        assert!(page.to_ascii_lowercase().contains("syntax"), "{page}");
        assert!(page.contains("&lt;nowhere&gt;") && !page.contains("<nowhere>"));
        // A good query tests fine and shows the series.
        let r = ex.post(&metric("otrs_site_ok", BY_QUEUE, "test"));
        let page = body(&r);
        assert!(
            page.contains("otrs_site_ok{queue=&quot;Support&quot;}"),
            "{page}"
        );

        // Deployed, one failing and one good metric: the scrape answers both.
        assert_redirect(&ex.post(&metric("otrs_site_ok", BY_QUEUE, "save")), "Saved");
        assert_redirect(
            &ex.post(&metric(
                "otrs_site_broken",
                "SELECT nope FROM ticket",
                "save",
            )),
            "Saved",
        );
        assert_redirect(&ex.post(&[("action", "deploy")]), "Deployed 2");
        let body = ex.scrape();
        assert_eq!(
            sample(
                &body,
                "otrs_custom_metric_success{metric=\"otrs_site_broken\"}"
            ),
            Some(0.0),
            "{body}"
        );
        assert_eq!(
            sample(&body, "otrs_custom_metric_success{metric=\"otrs_site_ok\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &body,
                "otrs_exporter_collector_success{collector=\"custom\"}"
            ),
            Some(1.0)
        );
        assert!(body.contains("otrs_site_ok{queue="));
        promtool_check(&body);
        let list = ex.get("alice", "");
        assert!(list.contains("failed") && list.contains("nope"), "{list}");
    }
}

#[test]
fn access_csrf_escaping_and_headers() {
    let db = TestDb::new(Driver::Postgres, 5);
    let ex = Exporter::new(&db);
    assert!(ex.cli(&["db-init"]).0);
    // Who may come in.
    assert_eq!(
        ex.request("GET", None, "", "").status,
        403,
        "no REMOTE_USER"
    );
    assert_eq!(
        ex.request("GET", Some(""), "", "").status,
        403,
        "empty REMOTE_USER"
    );
    assert_eq!(
        ex.request("GET", Some("mallory"), "", "").status,
        403,
        "not an admin"
    );
    let r = ex.request("GET", Some("alice"), "", "");
    assert_eq!(r.status, 200);
    for h in [
        "Content-Security-Policy",
        "X-Frame-Options",
        "Cache-Control",
    ] {
        assert!(header(&r, h).is_some(), "{h}");
    }
    assert!(header(&r, "Content-Security-Policy")
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(header(&r, "Cache-Control"), Some("no-store"));
    let off = {
        let mut c = db.config();
        c.segment.path = ex.dir.path().join("seg2");
        Service::new(c.clone(), SegmentOptions::new(c.segment.path.clone()))
    };
    let r = off.handle(&Request::from_cgi_params(
        vec![
            ("REQUEST_METHOD".into(), "GET".into()),
            ("REQUEST_URI".into(), ADMIN.into()),
            ("REMOTE_USER".into(), "alice".into()),
        ],
        Vec::new(),
    ));
    assert_eq!(r.status, 403, "admin.users empty: the page is off");

    // State changes need a token of this user: missing, wrong, another user's → 403, no change.
    let fields = metric("otrs_site_csrf", "SELECT 1", "save");
    let no_token = encode(&fields);
    assert_eq!(ex.request("POST", Some("alice"), "", &no_token).status, 403);
    let mut wrong = vec![("csrf", "1700000000.deadbeef")];
    wrong.extend_from_slice(&fields);
    assert_eq!(
        ex.request("POST", Some("alice"), "", &encode(&wrong))
            .status,
        403
    );
    let eve = ex.token("<b>eve</b>");
    let mut other = vec![("csrf", eve.as_str())];
    other.extend_from_slice(&fields);
    assert_eq!(
        ex.request("POST", Some("alice"), "", &encode(&other))
            .status,
        403
    );
    for action in ["deploy", "clear", "delete"] {
        let b = encode(&[("action", action), ("name", "x")]);
        assert_eq!(
            ex.request("POST", Some("alice"), "", &b).status,
            403,
            "{action}"
        );
    }
    assert_eq!(
        db.query("SELECT COUNT(*) FROM otrs_exporter_custom_metric"),
        "0"
    );
    assert_eq!(
        db.query("SELECT COUNT(*) FROM otrs_exporter_custom_deploy"),
        "0"
    );
    // With the right token it works.
    assert_redirect(&ex.post(&fields), "Saved");
    assert_eq!(
        db.query("SELECT COUNT(*) FROM otrs_exporter_custom_metric"),
        "1"
    );

    // `<script>` as a name, a label name, a label value, help and SQL: rejected or escaped.
    let r = ex.post(&metric("<script>alert(1)</script>", "SELECT 1", "save"));
    assert_eq!(r.status, 400);
    let page = body(&r);
    assert!(page.contains("not a valid metric name"), "{page}");
    assert!(!page.contains("<script>"), "{page}");
    let mut f = metric("otrs_site_label", "SELECT 'a' AS x, 1", "save");
    f[7] = ("labels", "<script>");
    let page = body(&ex.post(&f));
    assert!(
        page.contains("not a valid label name") && !page.contains("<script>"),
        "{page}"
    );
    let mut f = metric(
        "otrs_site_xss",
        "SELECT '<script>alert(1)</script>' AS x, 1",
        "save",
    );
    f[5] = ("help", "<script>alert('help')</script>");
    assert_redirect(&ex.post(&f), "Saved");
    let page = ex.get("alice", "");
    assert!(
        page.contains("&lt;script&gt;alert(&#39;help&#39;)"),
        "{page}"
    );
    assert!(!page.contains("<script"), "{page}");
    let page = body(&ex.post(&[("action", "test"), ("name", "otrs_site_xss")]));
    assert!(
        page.contains("x=&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;"),
        "{page}"
    );
    assert!(!page.contains("<script"), "{page}");
    // The 403 page escapes the user name too.
    let page = body(&ex.request("GET", Some("<script>x</script>"), "", ""));
    assert!(!page.contains("<script>"), "{page}");
    // Built-in names are refused.
    let page = body(&ex.post(&metric("otrs_tickets_open_x", "SELECT 1", "save")));
    assert!(page.contains("clashes with the exporter"), "{page}");
}

#[test]
fn results_are_cached_in_the_segment_and_shared_by_processes_for_the_ttl() {
    let db = TestDb::new(Driver::Postgres, 5);
    let ex = Exporter::new(&db);
    assert!(ex.cli(&["db-init"]).0);
    assert_redirect(
        &ex.post(&metric(
            "otrs_site_queues",
            "SELECT COUNT(*) AS n FROM queue",
            "save",
        )),
        "Saved",
    );
    assert_redirect(&ex.post(&[("action", "deploy")]), "Deployed 1");
    let before: f64 = db.query("SELECT COUNT(*) FROM queue").parse().unwrap();
    assert_eq!(sample(&ex.scrape(), "otrs_site_queues"), Some(before));
    db.exec(&[
        "INSERT INTO queue (id, name, group_id, system_address_id, salutation_id, \
               signature_id, follow_up_id, follow_up_lock, valid_id, create_time, create_by, \
               change_time, change_by) SELECT (SELECT MAX(id) + 1 FROM queue), 'Cached', group_id, system_address_id, \
               salutation_id, signature_id, follow_up_id, follow_up_lock, valid_id, create_time, \
               create_by, change_time, change_by FROM queue WHERE name = 'Raw'"
            .to_string(),
    ]);
    assert_eq!(
        db.query("SELECT COUNT(*) FROM queue")
            .parse::<f64>()
            .unwrap(),
        before + 1.0
    );
    // Within the TTL (60 s): the cached result, in this process and in another one (a second
    // service on the same segment, as a second FastCGI worker or CGI process would be).
    assert_eq!(sample(&ex.scrape(), "otrs_site_queues"), Some(before));
    let mut cfg = db.config();
    cfg.segment.path = ex.dir.path().join("seg");
    let other = Service::new(cfg.clone(), SegmentOptions::new(cfg.segment.path.clone()));
    let r = other.handle(&Request::from_cgi_params(
        vec![
            ("REQUEST_METHOD".into(), "GET".into()),
            ("REQUEST_URI".into(), METRICS.into()),
            ("QUERY_STRING".into(), "collect[]=custom".into()),
        ],
        Vec::new(),
    ));
    let body = body(&r);
    assert_eq!(sample(&body, "otrs_site_queues"), Some(before), "{body}");
    // A new revision is a new cache entry: edit + deploy shows the current count at once.
    let mut edit = metric(
        "otrs_site_queues",
        "SELECT COUNT(*) AS n FROM queue",
        "save",
    );
    edit[2] = ("original", "otrs_site_queues");
    edit[5] = ("help", "Queues, edited.");
    assert_redirect(&ex.post(&edit), "Saved");
    assert_redirect(&ex.post(&[("action", "deploy")]), "Deployed 1");
    assert_eq!(sample(&ex.scrape(), "otrs_site_queues"), Some(before + 1.0));
}
