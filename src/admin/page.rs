//! HTML of the admin page: plain server-rendered forms (no JavaScript), one small stylesheet,
//! every piece of outside text escaped with [`esc`].

use std::fmt::Write as _;

use crate::collector::custom::MetricRecord;
use crate::custom::deploy::Deployment;
use crate::custom::store::Stored;
use crate::custom::Definition;

/// The stylesheet (inline; allowed by its hash in the Content-Security-Policy).
pub const CSS: &str = "\
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d2329}\
header{background:#23374d;color:#fff;padding:.7em 1.5em;display:flex;justify-content:space-between;align-items:center}\
header a{color:#fff;text-decoration:none;font-weight:600}\
main{max-width:1100px;margin:1.2em auto;padding:0 1.2em}\
h1{font-size:1.35em;margin:.2em 0 .8em}h2{font-size:1.1em;margin:1.4em 0 .5em}\
.box{background:#fff;border:1px solid #d8dde3;border-radius:6px;padding:1em 1.2em;margin-bottom:1em}\
.flash{padding:.7em 1em;border-radius:6px;margin-bottom:1em;border:1px solid}\
.ok{background:#e7f6ec;border-color:#9bd3ae;color:#14532d}.err{background:#fdecec;border-color:#f1a9a9;color:#7f1d1d}\
.warn{background:#fff7e0;border-color:#f0d48a;color:#6b4e00}\
table{border-collapse:collapse;width:100%;background:#fff}\
th,td{text-align:left;padding:.45em .6em;border-bottom:1px solid #e3e6ea;vertical-align:top}\
th{background:#eef1f4;font-weight:600;font-size:.9em}\
code,pre,textarea{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.88em}\
pre{background:#f7f8fa;border:1px solid #e3e6ea;border-radius:4px;padding:.6em;overflow:auto;white-space:pre-wrap}\
.tag{display:inline-block;padding:0 .45em;border-radius:3px;font-size:.8em;font-weight:600}\
.t-ok{background:#e7f6ec;color:#14532d}.t-err{background:#fdecec;color:#7f1d1d}.t-pend{background:#fff7e0;color:#6b4e00}.t-off{background:#eceff2;color:#555}\
form.inline{display:inline;margin:0}\
button,.button{font:inherit;font-size:.9em;padding:.3em .8em;border-radius:4px;border:1px solid #9aa7b4;background:#fff;color:#1d2329;cursor:pointer;text-decoration:none;display:inline-block}\
button.primary,.button.primary{background:#2563a8;border-color:#2563a8;color:#fff}\
button.danger{background:#b42318;border-color:#b42318;color:#fff}\
label{display:block;font-weight:600;margin:.8em 0 .2em}\
.hint{font-weight:400;color:#5b6570;font-size:.88em}\
input[type=text],input[type=number],select,textarea{width:100%;box-sizing:border-box;padding:.4em;border:1px solid #b8c1ca;border-radius:4px;font:inherit}\
textarea{min-height:9em;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.88em}\
.row{display:flex;gap:1em}.row>div{flex:1}\
.actions{margin-top:1em;display:flex;gap:.6em}\
.muted{color:#5b6570;font-size:.88em}";

/// HTML-escapes `s` for text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
pub fn url(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A flash message: success or error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flash {
    /// Something was done.
    Ok(String),
    /// Something failed.
    Err(String),
}

/// What every page shows around its body.
pub struct Frame<'a> {
    /// The admin route.
    pub base: &'a str,
    /// The metrics route (linked in the header).
    pub metrics: &'a str,
    /// The authenticated user.
    pub user: &'a str,
    /// The CSRF token for this page's forms.
    pub token: &'a str,
    /// A message to show at the top.
    pub flash: Option<Flash>,
}

impl Frame<'_> {
    /// The whole document around `body`.
    pub fn page(&self, title: &str, body: &str) -> String {
        let mut out = String::with_capacity(body.len() + CSS.len() + 1024);
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <title>{} · otrs-exporter</title><style>{CSS}</style></head><body>\
             <header><a href=\"{}\">otrs-exporter · custom metrics</a>\
             <span>{} · <a href=\"{}\">metrics</a></span></header><main>",
            esc(title),
            esc(self.base),
            esc(self.user),
            esc(self.metrics),
        );
        match &self.flash {
            Some(Flash::Ok(m)) => {
                let _ = write!(
                    out,
                    "<div class=\"flash ok\" role=\"status\">{}</div>",
                    esc(m)
                );
            }
            Some(Flash::Err(m)) => {
                let _ = write!(
                    out,
                    "<div class=\"flash err\" role=\"alert\">{}</div>",
                    esc(m)
                );
            }
            None => {}
        }
        out.push_str(body);
        out.push_str("</main></body></html>\n");
        out
    }

    /// A POST form with the CSRF token, `fields` as hidden inputs and one button.
    pub fn button(
        &self,
        action: &str,
        fields: &[(&str, &str)],
        label: &str,
        class: &str,
    ) -> String {
        let mut f = format!(
            "<form class=\"inline\" method=\"post\" action=\"{}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <input type=\"hidden\" name=\"action\" value=\"{}\">",
            esc(self.base),
            esc(self.token),
            esc(action)
        );
        for (k, v) in fields {
            let _ = write!(
                f,
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                esc(k),
                esc(v)
            );
        }
        let _ = write!(
            f,
            "<button type=\"submit\" class=\"{}\">{}</button></form>",
            esc(class),
            esc(label)
        );
        f
    }
}

/// What the list page shows.
pub struct ListView<'a> {
    /// Stored definitions, or why they cannot be read.
    pub stored: Result<&'a [Stored], String>,
    /// The deployment served now (from the segment).
    pub deployment: Option<&'a Deployment>,
    /// Last result per deployed metric.
    pub records: &'a dyn Fn(&str) -> Option<MetricRecord>,
}

/// The list page body.
pub fn list(frame: &Frame, v: &ListView) -> String {
    let mut b = String::new();
    b.push_str("<h1>Custom SQL metrics</h1>");
    b.push_str(
        "<p class=\"muted\">Each metric is one SELECT: the last column is the value, the \
         columns before it are the labels. Changes are served only after <b>Deploy</b>.</p>",
    );
    // Deployment box.
    b.push_str("<div class=\"box\">");
    match v.deployment.filter(|d| d.id > 0) {
        Some(d) => {
            let _ = write!(
                b,
                "<p>Serving deploy <b>#{}</b> of {} by <b>{}</b>: {} metric(s).</p>",
                d.id,
                esc(&d.deployed_at),
                esc(&d.deployed_by),
                d.metrics.len()
            );
        }
        None => b.push_str("<p>Nothing is deployed: no custom metrics are served.</p>"),
    }
    let pending = pending_changes(v);
    if pending > 0 {
        let _ = write!(
            b,
            "<p class=\"flash warn\">{pending} change(s) not deployed yet.</p>"
        );
    }
    b.push_str("<div class=\"actions\">");
    b.push_str(&frame.button("deploy", &[], "Deploy", "primary"));
    let _ = write!(
        b,
        "<a class=\"button\" href=\"{}?action=new\">Add metric</a></div></div>",
        esc(frame.base)
    );
    match &v.stored {
        Err(e) => {
            let _ = write!(
                b,
                "<div class=\"flash err\">Cannot read the metric definitions: {}</div>",
                esc(e)
            );
        }
        Ok([]) => b.push_str("<div class=\"box\">No custom metrics defined yet.</div>"),
        Ok(rows) => {
            b.push_str(
                "<table><thead><tr><th>Name</th><th>Type</th><th>Status</th>\
                 <th>Last result</th><th>Changed</th><th></th></tr></thead><tbody>",
            );
            for s in rows.iter() {
                b.push_str(&row(frame, v, s));
            }
            b.push_str("</tbody></table>");
        }
    }
    if let (Some(d), Ok(rows)) = (v.deployment, &v.stored) {
        let gone: Vec<&str> = d
            .metrics
            .iter()
            .filter(|m| !rows.iter().any(|s| s.def.name == m.name))
            .map(|m| m.name.as_str())
            .collect();
        if !gone.is_empty() {
            let _ = write!(
                b,
                "<p class=\"flash warn\">Deleted but still served until the next deploy: {}</p>",
                esc(&gone.join(", "))
            );
        }
    }
    b.push_str(
        "<h2>Maintenance</h2><div class=\"box\"><p>Clearing the shared memory empties \
                the segment of every exporter process: counters restart from zero, cached \
                results are queried again, the deployed metrics are reloaded from the \
                database.</p>",
    );
    b.push_str(&frame.button("clear", &[], "Clear shared memory", "danger"));
    b.push_str("</div>");
    b
}

fn pending_changes(v: &ListView) -> usize {
    let Ok(rows) = &v.stored else { return 0 };
    let deployed = |name: &str| {
        v.deployment
            .and_then(|d| d.metrics.iter().find(|m| m.name == name))
    };
    let changed = rows
        .iter()
        .filter(|s| match deployed(&s.def.name) {
            Some(d) => !s.def.enabled || d.revision != s.def.revision,
            None => s.def.enabled,
        })
        .count();
    let gone = v.deployment.map_or(0, |d| {
        d.metrics
            .iter()
            .filter(|m| !rows.iter().any(|s| s.def.name == m.name))
            .count()
    });
    changed + gone
}

fn row(frame: &Frame, v: &ListView, s: &Stored) -> String {
    let d = &s.def;
    let served = v
        .deployment
        .and_then(|dep| dep.metrics.iter().find(|m| m.name == d.name));
    let status = match (d.enabled, served) {
        (false, Some(_)) => "<span class=\"tag t-pend\">disabled, still served</span>",
        (false, None) => "<span class=\"tag t-off\">disabled</span>",
        (true, None) => "<span class=\"tag t-pend\">not deployed</span>",
        (true, Some(m)) if m.revision != d.revision => {
            "<span class=\"tag t-pend\">changed, not deployed</span>"
        }
        (true, Some(_)) => "<span class=\"tag t-ok\">deployed</span>",
    };
    let last = match served.and_then(|_| (v.records)(&d.name)) {
        Some(r) if r.ok => format!(
            "<span class=\"tag t-ok\">ok</span> {} series",
            r.family.as_ref().map_or(0, |f| f.series.len())
        ),
        Some(r) => format!(
            "<span class=\"tag t-err\">failed</span> <span class=\"muted\">{}</span>",
            esc(r.error.as_deref().unwrap_or(""))
        ),
        None => "<span class=\"muted\">–</span>".to_string(),
    };
    format!(
        "<tr><td><code>{name}</code><div class=\"muted\">{help}</div></td><td>{kind}</td>\
         <td>{status}</td><td>{last}</td><td class=\"muted\">{at}<br>{by}</td>\
         <td><a class=\"button\" href=\"{base}?action=edit&amp;name={uname}\">Edit</a> {test} \
         <a class=\"button\" href=\"{base}?action=delete&amp;name={uname}\">Delete</a></td></tr>",
        name = esc(&d.name),
        help = esc(&d.help),
        kind = d.kind.as_str(),
        at = esc(&s.changed.0),
        by = esc(&s.changed.1),
        base = esc(frame.base),
        uname = esc(&url(&d.name)),
        test = frame.button("test", &[("name", &d.name)], "Test", ""),
    )
}

/// The outcome of running a query from the page.
pub enum TestResult {
    /// The series, rendered in the Prometheus text format.
    Ok(String, usize),
    /// The database's error, or why the rows are not a metric.
    Err(String),
}

/// The create/edit form (`original` = the stored name when editing), with an optional test
/// result and error.
pub fn form(
    frame: &Frame,
    def: &Definition,
    original: Option<&str>,
    test: Option<&TestResult>,
) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>{}</h1>",
        match original {
            Some(n) => format!("Edit <code>{}</code>", esc(n)),
            None => "Add a custom metric".into(),
        }
    );
    let _ = write!(
        b,
        "<form class=\"box\" method=\"post\" action=\"{base}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
         <input type=\"hidden\" name=\"action\" value=\"save\">\
         <input type=\"hidden\" name=\"original\" value=\"{orig}\">\
         <div class=\"row\"><div><label for=\"name\">Name <span class=\"hint\">letters, digits, \
         '_'; counters without _total</span></label>\
         <input type=\"text\" id=\"name\" name=\"name\" value=\"{name}\" required></div>\
         <div><label for=\"type\">Type</label><select id=\"type\" name=\"type\">\
         <option value=\"gauge\"{g}>gauge</option><option value=\"counter\"{c}>counter</option>\
         </select></div></div>\
         <label for=\"help\">Help <span class=\"hint\">what the value means</span></label>\
         <input type=\"text\" id=\"help\" name=\"help\" value=\"{help}\" required>\
         <label for=\"sql\">SQL <span class=\"hint\">one SELECT; last column = value, the \
         columns before it = labels; runs read-only</span></label>\
         <textarea id=\"sql\" name=\"sql\" spellcheck=\"false\" required>{sql}</textarea>\
         <div class=\"row\"><div><label for=\"labels\">Label names <span class=\"hint\">\
         comma-separated; empty = column names</span></label>\
         <input type=\"text\" id=\"labels\" name=\"labels\" value=\"{labels}\"></div>\
         <div><label for=\"ttl\">TTL (s)</label>\
         <input type=\"number\" id=\"ttl\" name=\"ttl\" min=\"1\" max=\"86400\" value=\"{ttl}\"></div>\
         <div><label for=\"timeout\">Timeout (s)</label>\
         <input type=\"number\" id=\"timeout\" name=\"timeout\" min=\"1\" max=\"300\" value=\"{timeout}\"></div>\
         <div><label for=\"enabled\">Enabled</label><select id=\"enabled\" name=\"enabled\">\
         <option value=\"1\"{on}>yes</option><option value=\"0\"{off}>no</option></select></div></div>\
         <div class=\"actions\"><button type=\"submit\" name=\"op\" value=\"test\">Test</button>\
         <button type=\"submit\" name=\"op\" value=\"save\" class=\"primary\">Save</button>\
         <a class=\"button\" href=\"{base}\">Cancel</a></div></form>",
        base = esc(frame.base),
        token = esc(frame.token),
        orig = esc(original.unwrap_or("")),
        name = esc(&def.name),
        g = if def.kind == crate::custom::Kind::Gauge { " selected" } else { "" },
        c = if def.kind == crate::custom::Kind::Counter { " selected" } else { "" },
        help = esc(&def.help),
        sql = esc(&def.sql),
        labels = esc(&def.label_names.join(", ")),
        ttl = def.ttl_seconds,
        timeout = def.timeout_seconds,
        on = if def.enabled { " selected" } else { "" },
        off = if def.enabled { "" } else { " selected" },
    );
    if let Some(t) = test {
        b.push_str(&test_result(t));
    }
    b
}

/// The result box of a test run.
pub fn test_result(t: &TestResult) -> String {
    match t {
        TestResult::Ok(text, n) => format!(
            "<h2>Test result</h2><div class=\"flash ok\">The query ran: {n} series.</div>\
             <pre id=\"test-output\">{}</pre>",
            esc(text)
        ),
        TestResult::Err(e) => format!(
            "<h2>Test result</h2><div class=\"flash err\" id=\"test-error\">{}</div>",
            esc(e)
        ),
    }
}

/// The delete confirmation.
pub fn confirm_delete(frame: &Frame, s: &Stored) -> String {
    format!(
        "<h1>Delete <code>{}</code>?</h1><div class=\"box\"><p>The definition is removed from \
         the database. If it is deployed, it is served until the next deploy.</p>\
         <pre>{}</pre><div class=\"actions\">{} <a class=\"button\" href=\"{}\">Cancel</a></div></div>",
        esc(&s.def.name),
        esc(&s.def.sql),
        frame.button("delete", &[("name", &s.def.name)], "Delete", "danger"),
        esc(frame.base)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(url("a b&c"), "a+b%26c");
    }
}
