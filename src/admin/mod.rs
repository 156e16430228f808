//! The admin page (`web.admin_route`, default
//! `/otrs/nph-genericinterface.pl/Webservice/Prometheus/admin`): custom SQL metrics (list,
//! add, edit, delete, test, deploy) and clearing the shared memory.
//!
//! Security model:
//! - **Who**: only a user the web server authenticated (`REMOTE_USER`) who is listed in
//!   `admin.users`; anyone else gets 403. The exporter never checks passwords itself.
//! - **CSRF**: every state change is a POST carrying a token bound to that user
//!   ([`csrf`]); a missing or wrong token is 403 and changes nothing.
//! - **Output**: every piece of stored or submitted text is HTML-escaped ([`page::esc`]);
//!   responses forbid framing, scripts, caching and foreign form targets.
//! - **SQL**: test runs and scrapes use the read-only connection with a statement timeout;
//!   only the definitions table is written, with bound parameters ([`crate::custom::store`]).
//!
//! Without JavaScript: plain links and forms; after a successful POST the browser is sent
//! back to the list (Post/Redirect/Get) with a one-shot message in a cookie.

pub mod csrf;
pub mod page;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::collector::custom::last_record;
use crate::collector::segment::SegmentSource;
use crate::config::Config;
use crate::custom::deploy::Deployment;
use crate::custom::store::Store;
use crate::custom::{parse_label_names, Definition, Kind};
use crate::db::{DbHandle, DbSettings};
use crate::front::request::{Request, Response};
use crate::segment::Segment;
use crate::snapshot::Snapshot;
use page::{esc, Flash, Frame, TestResult};

/// Name of the one-shot message cookie.
const FLASH_COOKIE: &str = "otrs_exporter_flash";

/// The admin page of one exporter process.
pub struct Admin {
    config: Config,
    source: Arc<SegmentSource>,
    db: OnceLock<Result<(DbSettings, Arc<DbHandle>), String>>,
}

/// Why a request is refused before anything runs.
fn forbidden(msg: &str) -> Response {
    secure(Response::new(
        403,
        "text/html; charset=utf-8",
        format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>403 \
             Forbidden</title></head><body><h1>403 Forbidden</h1><p>{}</p></body></html>\n",
            esc(msg)
        ),
    ))
}

/// Adds the security headers every admin response carries.
fn secure(mut r: Response) -> Response {
    use base64::Engine as _;
    use sha2::Digest as _;
    let style = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(page::CSS));
    for (k, v) in [
        (
            "Content-Security-Policy",
            format!(
                "default-src 'none'; style-src 'sha256-{style}'; form-action 'self'; \
                 frame-ancestors 'none'; base-uri 'none'"
            ),
        ),
        ("X-Frame-Options", "DENY".into()),
        ("X-Content-Type-Options", "nosniff".into()),
        ("Referrer-Policy", "same-origin".into()),
        ("Cache-Control", "no-store".into()),
    ] {
        r.headers.push((k.into(), v));
    }
    r
}

impl Admin {
    /// The admin page for `config`, using the segment of `source`.
    pub fn new(config: Config, source: Arc<SegmentSource>) -> Admin {
        Admin {
            config,
            source,
            db: OnceLock::new(),
        }
    }

    fn db(&self) -> Result<&(DbSettings, Arc<DbHandle>), String> {
        self.db
            .get_or_init(|| match crate::db::resolve(&self.config) {
                Ok(Some(s)) => Ok((s.clone(), Arc::new(DbHandle::new(Ok(s))))),
                Ok(None) => Err(format!(
                    "no database is configured: set [db] in the exporter's config or \
                     otrs_home (no {} found)",
                    self.config.otrs_home.join("Kernel/Config.pm").display()
                )),
                Err(e) => Err(e),
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn store(&self) -> Result<Store, String> {
        let (s, _) = self.db()?;
        Store::connect(s).map_err(|e| format!("{}: {e}", s.describe()))
    }

    /// Answers one request to the admin route.
    pub fn handle(&self, req: &Request) -> Response {
        let Some(user) = req.remote_user() else {
            return forbidden(
                "No authenticated user: the web server must authenticate the admin route \
                 (REMOTE_USER is not set).",
            );
        };
        if self.config.admin.users.is_empty() {
            return forbidden(
                "The admin page is off: admin.users in the exporter's config is empty.",
            );
        }
        if !self.config.admin.users.iter().any(|u| u == user) {
            return forbidden(&format!("User {user:?} is not in admin.users."));
        }
        let seg = match self.source.get() {
            Ok(s) => s,
            Err(e) => {
                return secure(Response::text(
                    503,
                    format!("the shared segment cannot be opened: {e}\n"),
                ))
            }
        };
        let secret = match csrf::secret(&seg) {
            Ok(s) => s,
            Err(e) => return secure(Response::text(503, format!("{e}\n"))),
        };
        match req.method.as_str() {
            "GET" | "HEAD" => self.get(req, &seg, user, &secret),
            "POST" => {
                let form = match form_of(req) {
                    Ok(f) => f,
                    Err(r) => return secure(r),
                };
                let token = field(&form, "csrf");
                if !csrf::verify(&secret, user, token) {
                    return forbidden(
                        "Missing or invalid form token (CSRF protection). Reload the page and \
                         try again.",
                    );
                }
                self.post(&seg, user, &secret, &form)
            }
            _ => {
                let mut r = Response::text(405, "only GET, HEAD and POST are allowed here\n");
                r.headers.push(("Allow".into(), "GET, HEAD, POST".into()));
                secure(r)
            }
        }
    }

    fn frame<'a>(
        &'a self,
        base: &'a str,
        metrics: &'a str,
        user: &'a str,
        token: &'a str,
    ) -> Frame<'a> {
        Frame {
            base,
            metrics,
            user,
            token,
            flash: None,
        }
    }

    fn get(&self, req: &Request, seg: &Segment, user: &str, secret: &[u8]) -> Response {
        let q: Vec<(String, String)> = form_urlencoded::parse(req.query.as_bytes())
            .into_owned()
            .collect();
        let base = self.config.admin_path();
        let metrics = self.config.metrics_path();
        let token = csrf::token(secret, user);
        let mut frame = self.frame(&base, &metrics, user, &token);
        frame.flash = flash_of(req);
        let had_flash = frame.flash.is_some();
        let name = field(&q, "name");
        let (title, body) = match field(&q, "action") {
            "new" => (
                "Add metric".to_string(),
                page::form(&frame, &Definition::new("", "", ""), None, None),
            ),
            "edit" | "delete" => {
                match self.store().and_then(|mut s| s.get(name).map_err(|e| e.0)) {
                    Ok(Some(s)) if field(&q, "action") == "edit" => (
                        format!("Edit {name}"),
                        page::form(&frame, &s.def, Some(name), None),
                    ),
                    Ok(Some(s)) => (format!("Delete {name}"), page::confirm_delete(&frame, &s)),
                    Ok(None) => {
                        return self.redirect(
                            &base,
                            Flash::Err(format!("There is no custom metric named {name:?}.")),
                        )
                    }
                    Err(e) => return self.redirect(&base, Flash::Err(e)),
                }
            }
            _ => ("Custom metrics".to_string(), self.list(&frame, seg)),
        };
        let mut r = secure(Response::new(
            200,
            "text/html; charset=utf-8",
            frame.page(&title, &body),
        ));
        if had_flash {
            r.headers.push((
                "Set-Cookie".into(),
                format!("{FLASH_COOKIE}=; Path={base}; Max-Age=0; HttpOnly; SameSite=Strict"),
            ));
        }
        r
    }

    fn list(&self, frame: &Frame, seg: &Segment) -> String {
        let mut store = self.store();
        let stored = store
            .as_mut()
            .map_err(|e| e.clone())
            .and_then(|s| s.list().map_err(|e| e.0));
        // What the processes serve; right after a clear the segment has none until the next
        // scrape reloads the latest deploy from the database, which is what it will serve.
        let deployment = Deployment::published(seg)
            .ok()
            .flatten()
            .map(|d| d.0)
            .or_else(|| store.ok()?.latest_deployment().ok().flatten());
        let records = |name: &str| last_record(seg, name);
        let view = page::ListView {
            stored: stored.as_deref().map_err(Clone::clone),
            deployment: deployment.as_ref(),
            records: &records,
        };
        page::list(frame, &view)
    }

    fn post(
        &self,
        seg: &Segment,
        user: &str,
        secret: &[u8],
        form: &[(String, String)],
    ) -> Response {
        let base = self.config.admin_path();
        let name = field(form, "name");
        match field(form, "action") {
            "save" => self.save(user, secret, form),
            "delete" => match self
                .store()
                .and_then(|mut s| s.delete(name).map_err(|e| e.0))
            {
                Ok(true) => {
                    log::info!("admin: {user} deleted custom metric {name}");
                    self.redirect(
                        &base,
                        Flash::Ok(format!("Deleted {name}. Deploy to stop serving it.")),
                    )
                }
                Ok(false) => self.redirect(
                    &base,
                    Flash::Err(format!("There is no custom metric named {name:?}.")),
                ),
                Err(e) => self.redirect(&base, Flash::Err(e)),
            },
            "deploy" => match deploy(self.store(), seg, user) {
                Ok(d) => {
                    log::info!(
                        "admin: {user} deployed {} custom metric(s) (deploy #{})",
                        d.metrics.len(),
                        d.id
                    );
                    self.redirect(
                        &base,
                        Flash::Ok(format!(
                            "Deployed {} metric(s) (deploy #{}); every exporter process serves them from now on.",
                            d.metrics.len(),
                            d.id
                        )),
                    )
                }
                Err(e) => self.redirect(&base, Flash::Err(format!("Deploy failed: {e}"))),
            },
            "clear" => match seg.clear() {
                Ok(_) => {
                    log::info!("admin: {user} cleared the shared segment");
                    self.redirect(
                        &base,
                        Flash::Ok("Shared memory cleared: counters restart from zero.".into()),
                    )
                }
                Err(e) => self.redirect(&base, Flash::Err(format!("Clearing failed: {e}"))),
            },
            "test" => {
                let metrics = self.config.metrics_path();
                let token = csrf::token(secret, user);
                let frame = self.frame(&base, &metrics, user, &token);
                let stored = self.store().and_then(|mut s| s.get(name).map_err(|e| e.0));
                match stored {
                    Ok(Some(s)) => {
                        let result = self.test(&s.def);
                        let body = format!(
                            "<h1>Test <code>{}</code></h1><pre>{}</pre>{}<p><a class=\"button\" \
                             href=\"{}?action=edit&amp;name={}\">Edit</a> <a class=\"button\" href=\"{}\">Back</a></p>",
                            esc(name),
                            esc(&s.def.sql),
                            page::test_result(&result),
                            esc(&base),
                            esc(&page::url(name)),
                            esc(&base)
                        );
                        secure(Response::new(
                            200,
                            "text/html; charset=utf-8",
                            frame.page("Test", &body),
                        ))
                    }
                    Ok(None) => self.redirect(
                        &base,
                        Flash::Err(format!("There is no custom metric named {name:?}.")),
                    ),
                    Err(e) => self.redirect(&base, Flash::Err(e)),
                }
            }
            other => secure(Response::text(400, format!("unknown action {other:?}\n"))),
        }
    }

    /// The create/edit form's POST: test (re-render with the result) or save (redirect).
    fn save(&self, user: &str, secret: &[u8], form: &[(String, String)]) -> Response {
        let base = self.config.admin_path();
        let metrics = self.config.metrics_path();
        let token = csrf::token(secret, user);
        let mut frame = self.frame(&base, &metrics, user, &token);
        let original = field(form, "original");
        let original = (!original.is_empty()).then_some(original);
        let (def, parse_err) = definition_of(form);
        let rerender = |frame: &Frame, test: Option<&TestResult>, status: u16| {
            secure(Response::new(
                status,
                "text/html; charset=utf-8",
                frame.page("Custom metric", &page::form(frame, &def, original, test)),
            ))
        };
        if let Some(e) = parse_err.or_else(|| def.check().err()) {
            frame.flash = Some(Flash::Err(e));
            return rerender(&frame, None, 400);
        }
        if field(form, "op") == "test" {
            let result = self.test(&def);
            return rerender(&frame, Some(&result), 200);
        }
        let r = self.store().and_then(|mut s| {
            match original {
                Some(o) => s.update(o, &def, user),
                None => s.create(&def, user),
            }
            .map_err(|e| e.0)
        });
        match r {
            Ok(()) => {
                log::info!("admin: {user} saved custom metric {}", def.name);
                self.redirect(
                    &base,
                    Flash::Ok(format!("Saved {}. Deploy to publish the change.", def.name)),
                )
            }
            Err(e) => {
                frame.flash = Some(Flash::Err(e));
                rerender(&frame, None, 400)
            }
        }
    }

    /// Runs `def` now on a read-only connection and renders its series or the error.
    fn test(&self, def: &Definition) -> TestResult {
        let handle = match self.db() {
            Ok((_, h)) => h,
            Err(e) => return TestResult::Err(e),
        };
        let limit = Duration::from_secs(def.timeout_seconds.into()) + Duration::from_secs(2);
        let deadline = Instant::now() + limit;
        match handle.run(deadline, |db| Ok(def.run(db, limit))) {
            Ok(Ok(fam)) => {
                let n = fam.series.len();
                let mut snap = Snapshot {
                    families: vec![fam],
                };
                snap.normalize();
                let mut out = Vec::new();
                crate::exposition::render(&snap, crate::exposition::Format::Text, &mut out);
                TestResult::Ok(String::from_utf8_lossy(&out).into_owned(), n)
            }
            Ok(Err(e)) => TestResult::Err(e),
            Err(e) => TestResult::Err(e.0),
        }
    }

    /// 303 to the list with a one-shot message.
    fn redirect(&self, base: &str, flash: Flash) -> Response {
        let (kind, msg) = match &flash {
            Flash::Ok(m) => ("ok", m),
            Flash::Err(m) => ("err", m),
        };
        let mut r = Response::new(303, "text/plain; charset=utf-8", "see the admin page\n");
        r.headers.push(("Location".into(), base.to_string()));
        r.headers.push((
            "Set-Cookie".into(),
            format!(
                "{FLASH_COOKIE}={kind}:{}; Path={base}; HttpOnly; SameSite=Strict",
                page::url(msg)
            ),
        ));
        secure(r)
    }
}

/// Deploys with `store` and publishes to `seg`.
pub fn deploy(
    store: Result<Store, String>,
    seg: &Segment,
    user: &str,
) -> Result<Deployment, String> {
    let d = store?.deploy(user).map_err(|e| e.0)?;
    d.publish(seg).map_err(|e| {
        format!(
            "recorded as deploy #{} but not published to the shared segment: {e}",
            d.id
        )
    })?;
    Ok(d)
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

fn form_of(req: &Request) -> Result<Vec<(String, String)>, Response> {
    let ct = req.header("Content-Type").unwrap_or("");
    if !ct
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(Response::text(
            415,
            "expected a form (application/x-www-form-urlencoded)\n",
        ));
    }
    Ok(form_urlencoded::parse(&req.body).into_owned().collect())
}

/// The definition a form describes (and the first field that could not be read).
fn definition_of(form: &[(String, String)]) -> (Definition, Option<String>) {
    let mut err = None;
    let mut d = Definition::new(field(form, "name"), field(form, "help"), field(form, "sql"));
    match Kind::parse(field(form, "type")) {
        Ok(k) => d.kind = k,
        Err(e) => err = Some(e),
    }
    d.label_names = parse_label_names(field(form, "labels"));
    for (key, target, label) in [
        ("ttl", &mut d.ttl_seconds, "TTL"),
        ("timeout", &mut d.timeout_seconds, "timeout"),
    ] {
        match field(form, key).trim().parse::<u32>() {
            Ok(v) => *target = v,
            Err(_) => {
                err.get_or_insert(format!("the {label} must be a whole number of seconds"));
            }
        }
    }
    d.enabled = field(form, "enabled") != "0";
    (d, err)
}

fn flash_of(req: &Request) -> Option<Flash> {
    let cookies = req.header("Cookie")?;
    let v = cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == FLASH_COOKIE)?
        .1;
    let (kind, msg) = v.split_once(':')?;
    let msg: String = form_urlencoded::parse(format!("m={msg}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    let msg: String = msg.chars().take(500).collect();
    match kind {
        "ok" => Some(Flash::Ok(msg)),
        "err" => Some(Flash::Err(msg)),
        _ => None,
    }
}
