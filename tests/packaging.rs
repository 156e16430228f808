//! The Debian package: built by the real `cargo deb` from `[package.metadata.deb]` (with this
//! test build's binary), installed with the real `dpkg` into an empty root (`--instdir`; the
//! maintainer scripts honour `DPKG_ROOT`), reinstalled over an admin's changes, removed, and
//! purged — after which the root is exactly as before.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = common::output_text(&out);
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// Every path under `root`, relative, except dpkg's own database.
fn tree(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel.starts_with("var/lib/dpkg") {
                continue;
            }
            out.insert(rel);
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// `dpkg` acting on the root at `root`, maintainer scripts run outside a chroot with
/// `DPKG_ROOT` set; dependencies (libc6) are not installed there.
fn dpkg(root: &Path, args: &[&str]) -> String {
    run(Command::new("dpkg")
        .arg(format!("--instdir={}", root.display()))
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["--force-script-chrootless", "--force-depends"])
        .args(args))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{p:?}: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

/// Builds the .deb with cargo-deb from a copy of the test binary placed where cargo-deb
/// expects the release binary.
fn build_deb(tmp: &Path) -> PathBuf {
    assert!(
        Command::new("cargo-deb").arg("--version").output().is_ok(),
        "cargo-deb is missing: scripts/setup.sh installs it (cargo install cargo-deb --locked)"
    );
    let target = tmp.join("target");
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(common::BIN, target.join("release/otrs-exporter")).unwrap();
    let deb = tmp.join("otrs-exporter.deb");
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["deb", "--no-build", "--strip", "--fast", "--output"])
            .arg(&deb)
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(MANIFEST_DIR),
    );
    deb
}

#[test]
fn deb_installs_into_a_clean_root_keeps_admin_changes_and_purges_without_a_trace() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "dpkg needs root to install into a root directory (CI runs as root)"
    );
    let tmp = tempfile::Builder::new()
        .prefix("otrs-exporter-deb-")
        .tempdir()
        .unwrap();
    let deb = build_deb(tmp.path());

    // The package: conffiles and maintainer scripts as intended.
    let info = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    assert!(info.contains("Package: otrs-exporter"), "{info}");
    assert!(
        info.contains("postinst") && info.contains("postrm"),
        "{info}"
    );
    let conffiles = run(Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .arg("conffiles"));
    for c in [
        "/etc/otrs-exporter/config.toml",
        "/etc/apache2/conf-available/otrs-exporter-fcgid.conf",
        "/etc/apache2/conf-available/otrs-exporter-accesslog.conf",
        "/etc/nginx/snippets/otrs-exporter.conf",
    ] {
        assert!(
            conffiles.lines().any(|l| l == c),
            "{c} is not a conffile:\n{conffiles}"
        );
    }

    // A clean root: dpkg's database and what any Debian system has.
    let root = tmp.path().join("root");
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
        "dev/shm",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let clean = tree(&root);

    dpkg(&root, &["--install", deb.to_str().unwrap()]);
    let r = |p: &str| root.join(p);
    // Every asset, byte for byte from the repository where it is a file of ours.
    for (installed, source) in [
        (
            "etc/apache2/conf-available/otrs-exporter-fcgid.conf",
            "apache/otrs-exporter-fcgid.conf",
        ),
        (
            "etc/apache2/conf-available/otrs-exporter-accesslog.conf",
            "apache/otrs-exporter-accesslog.conf",
        ),
        (
            "etc/apache2/conf-available/otrs-exporter-proxy-fcgi.conf",
            "apache/otrs-exporter-proxy-fcgi.conf",
        ),
        (
            "etc/apache2/conf-available/otrs-exporter-cgi.conf",
            "apache/otrs-exporter-cgi.conf",
        ),
        (
            "etc/nginx/snippets/otrs-exporter.conf",
            "nginx/otrs-exporter.conf",
        ),
        (
            "usr/share/otrs-exporter/nginx/otrs-exporter-http.conf",
            "nginx/otrs-exporter-http.conf",
        ),
        (
            "usr/share/otrs-exporter/nginx/otrs-exporter-log.conf",
            "nginx/otrs-exporter-log.conf",
        ),
        (
            "lib/systemd/system/otrs-exporter.socket",
            "nginx/otrs-exporter.socket",
        ),
        (
            "lib/systemd/system/otrs-exporter.service",
            "nginx/otrs-exporter.service",
        ),
        (
            "usr/lib/tmpfiles.d/otrs-exporter.conf",
            "debian/tmpfiles.conf",
        ),
        ("etc/otrs-exporter/config.toml", "debian/config.toml"),
        (
            "usr/share/doc/otrs-exporter/config.example.toml",
            "config.example.toml",
        ),
        (
            "usr/share/otrs-exporter/dashboards/grafana/otrs-web.json",
            "dashboards/grafana/otrs-web.json",
        ),
        (
            "usr/share/otrs-exporter/dashboards/prometheus/rules/otrs-alerts.yml",
            "dashboards/prometheus/rules/otrs-alerts.yml",
        ),
        (
            "usr/share/otrs-exporter/dashboards/prometheus/examples/prometheus-multinode.yml",
            "dashboards/prometheus/examples/prometheus-multinode.yml",
        ),
    ] {
        assert_eq!(
            std::fs::read(r(installed)).unwrap_or_else(|e| panic!("{installed}: {e}")),
            std::fs::read(Path::new(MANIFEST_DIR).join(source)).unwrap(),
            "{installed}"
        );
    }
    assert!(r("usr/share/doc/otrs-exporter/README.md").exists());
    assert!(r("usr/share/doc/otrs-exporter/copyright").exists());
    // The binary runs, and accepts the packaged configuration.
    assert_eq!(mode(&r("usr/bin/otrs-exporter")), 0o755);
    let check = run(Command::new(r("usr/bin/otrs-exporter"))
        .args(["--config"])
        .arg(r("etc/otrs-exporter/config.toml"))
        .arg("check-config"));
    assert!(
        check.contains("segment.group") && check.contains("www-data"),
        "{check}"
    );
    // postinst: the config readable by the web server's group only, the segment directory.
    let www = nix::unistd::Group::from_name("www-data").unwrap();
    if let Some(www) = &www {
        let cfg = std::fs::metadata(r("etc/otrs-exporter/config.toml")).unwrap();
        assert_eq!(
            (cfg.gid(), mode(&r("etc/otrs-exporter/config.toml"))),
            (www.gid.as_raw(), 0o640)
        );
        let shm = std::fs::metadata(r("dev/shm/otrs-exporter")).unwrap();
        assert_eq!(
            (shm.gid(), mode(&r("dev/shm/otrs-exporter"))),
            (www.gid.as_raw(), 0o2770)
        );
    }

    // The admin enables the Apache conf, edits the config, adds a password file; the
    // exporter creates its segment.
    std::fs::create_dir_all(r("etc/apache2/conf-enabled")).unwrap();
    std::os::unix::fs::symlink(
        "../conf-available/otrs-exporter-fcgid.conf",
        r("etc/apache2/conf-enabled/otrs-exporter-fcgid.conf"),
    )
    .unwrap();
    let edited = format!(
        "{}\n[web]\nscrape_timeout_seconds = 5.0\n",
        std::fs::read_to_string(r("etc/otrs-exporter/config.toml")).unwrap()
    );
    std::fs::write(r("etc/otrs-exporter/config.toml"), &edited).unwrap();
    std::fs::write(r("etc/otrs-exporter/htpasswd"), "prometheus:$2y$05$x\n").unwrap();
    std::fs::write(r("dev/shm/otrs-exporter/segment"), "segment").unwrap();

    // Upgrade (the same package again: unpack over it, postinst configure with the old
    // version): the admin's config and its mode stay, the conf stays enabled.
    dpkg(&root, &["--install", deb.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(r("etc/otrs-exporter/config.toml")).unwrap(),
        edited
    );
    assert!(r("etc/apache2/conf-enabled/otrs-exporter-fcgid.conf").exists());

    // Remove: the binary goes, the conffiles stay, Apache no longer loads our conf.
    dpkg(&root, &["--remove", "otrs-exporter"]);
    assert!(!r("usr/bin/otrs-exporter").exists());
    assert!(r("etc/otrs-exporter/config.toml").exists());
    assert!(r("etc/apache2/conf-available/otrs-exporter-fcgid.conf").exists());
    assert!(
        std::fs::symlink_metadata(r("etc/apache2/conf-enabled/otrs-exporter-fcgid.conf")).is_err()
    );

    // Purge: nothing of ours is left; only the directory the admin made for Apache remains.
    dpkg(&root, &["--purge", "otrs-exporter"]);
    let mut expected = clean.clone();
    expected.extend([
        "etc".to_owned(),
        "etc/apache2".to_owned(),
        "etc/apache2/conf-enabled".to_owned(),
    ]);
    assert_eq!(tree(&root), expected, "left behind after purge");
    let status = Command::new("dpkg")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["--status", "otrs-exporter"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stderr);
    assert!(
        !status.status.success() && text.contains("not installed"),
        "dpkg still knows the package: {text}"
    );
}
