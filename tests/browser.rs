//! The admin page in a real browser: Debian's headless Chromium, driven by `playwright-core`
//! (tests/browser/admin.mjs), through a throwaway Apache with mod_fcgid, the shipped snippet
//! and basic auth, on a real PostgreSQL database. The screenshots are kept in
//! `target/test-artifacts/` (admin.png: the list after deploying; admin-test.png: the form
//! with a test result; admin-error.png: a database error).

mod common;

use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::testdb::TestDb;
use common::{http_get, sample, BIN, METRICS};
use otrs_exporter::db::Driver;

const ADMIN: &str = "/otrs/nph-genericinterface.pl/Webservice/Prometheus/admin";
const USER: (&str, &str) = ("ops-admin", "br0wser-pass");
/// Authenticated by Apache but not in admin.users.
const VIEWER: (&str, &str) = ("viewer", "v1ewer-pass");
const SNIPPETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/apache");
const BROWSER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");

struct Apache {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Apache {
    /// Apache with mod_fcgid and the shipped snippet; the exporter's config gets `db_toml`
    /// and `admin.users = [USER]`.
    fn start(db_toml: &str) -> Apache {
        for p in [
            "/usr/sbin/apache2",
            "/usr/bin/htpasswd",
            "/usr/lib/apache2/modules/mod_fcgid.so",
        ] {
            assert!(Path::new(p).exists(), "{p} missing: run scripts/setup.sh");
        }
        let dir = tempfile::Builder::new()
            .prefix("otrs-exporter-browser-")
            .tempdir()
            .unwrap();
        let d = dir.path().to_owned();
        let p = |s: &str| d.join(s);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = nix::unistd::geteuid().is_root();
        let www = nix::unistd::User::from_name("www-data").unwrap().unwrap();
        let bin = p("otrs-exporter");
        std::fs::copy(BIN, &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let shm = p("shm");
        std::fs::create_dir(&shm).unwrap();
        std::fs::set_permissions(&shm, std::fs::Permissions::from_mode(0o2770)).unwrap();
        let group = if root {
            chown(&shm, None, Some(www.gid.as_raw())).unwrap();
            "group = \"www-data\"\n"
        } else {
            ""
        };
        let config = p("config.toml");
        std::fs::write(
            &config,
            format!(
                "otrs_home = \"/nonexistent-otrs\"\n[segment]\npath = \"{}\"\n{group}\n{db_toml}\n[admin]\nusers = [\"{}\"]\n",
                shm.join("segment").display(),
                USER.0
            ),
        )
        .unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let htpasswd = p("htpasswd");
        let st = Command::new("htpasswd")
            .arg("-bc")
            .arg(&htpasswd)
            .args([USER.0, USER.1])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        let st = Command::new("htpasswd")
            .arg("-b")
            .arg(&htpasswd)
            .args([VIEWER.0, VIEWER.1])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::set_permissions(&htpasswd, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::create_dir(p("htdocs")).unwrap();
        let base = common::apache_base_conf(
            &d,
            root,
            &[
                "mpm_event",
                "authn_core",
                "authn_file",
                "authz_core",
                "authz_user",
                "auth_basic",
                "alias",
                "mime",
                "env",
                "fcgid",
            ],
        );
        let conf = format!(
            "{base}\
             Define OTRS_EXPORTER_BIN {bin}\nDefine OTRS_EXPORTER_CONFIG_FILE {config}\n\
             Define OTRS_EXPORTER_HTPASSWD {htpasswd}\nInclude {SNIPPETS}/otrs-exporter-fcgid.conf\n",
            bin = bin.display(),
            config = config.display(),
            htpasswd = htpasswd.display(),
        );
        std::fs::write(p("httpd.conf"), conf).unwrap();
        let (child, port) = common::start_apache(&d);
        Apache { dir, port, child }
    }

    fn logs(&self) -> String {
        common::apache_logs(self.dir.path())
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn admin_page_in_headless_chromium_through_apache_with_basic_auth() {
    assert!(
        Path::new(BROWSER_DIR)
            .join("node_modules/playwright-core")
            .exists(),
        "playwright-core is not installed: run scripts/setup.sh (npm ci in tests/browser)"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium missing: run scripts/setup.sh (Debian package chromium)"
    );
    let db = TestDb::new(Driver::Postgres, 30);
    let apache = Apache::start(&db.toml());
    let out = Command::new(BIN)
        .arg("--config")
        .arg(apache.dir.path().join("config.toml"))
        .arg("db-init")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let metric = "otrs_site_browser_tickets";
    let shots = artifacts();
    let _ = std::fs::remove_file(shots.join("admin.png"));
    let run = Command::new("node")
        .arg(Path::new(BROWSER_DIR).join("admin.mjs"))
        .current_dir(BROWSER_DIR)
        .env("BASE", format!("http://127.0.0.1:{}", apache.port))
        .env("ADMIN", ADMIN)
        .env("METRICS", METRICS)
        .env("AUTH_USER", USER.0)
        .env("AUTH_PASS", USER.1)
        .env("METRIC", metric)
        .env(
            "SQL",
            "SELECT q.name AS queue, COUNT(*) AS tickets FROM ticket t\n  JOIN queue q ON q.id = t.queue_id\n GROUP BY q.name",
        )
        .env("SCREENSHOT_DIR", &shots)
        .output()
        .expect("node (Node.js 20) is installed");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.status.success(),
        "browser test failed:\n{log}{}",
        apache.logs()
    );
    assert!(log.contains("browser test passed"), "{log}");

    // From our side: the scrape through Apache has the metric with the database's counts.
    let r = http_get(apache.port, METRICS, Some(USER)).unwrap();
    assert_eq!(r.status, 200);
    let support = db.query(
        "SELECT COUNT(*) FROM ticket t JOIN queue q ON q.id = t.queue_id WHERE q.name = 'Support'",
    );
    assert_eq!(
        sample(&r.body, &format!("{metric}{{queue=\"Support\"}}")),
        Some(support.parse().unwrap()),
        "{}",
        r.body
    );
    assert_eq!(
        db.query("SELECT deploy_by FROM otrs_exporter_custom_deploy"),
        USER.0
    );
    // Apache lets the other user in; the exporter refuses them (not in admin.users).
    let r = http_get(apache.port, ADMIN, Some(VIEWER)).unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("not in admin.users"), "{}", r.body);
    assert_eq!(http_get(apache.port, ADMIN, None).unwrap().status, 401);
    let png = std::fs::read(shots.join("admin.png")).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
}
