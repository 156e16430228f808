//! Reading OTRS' own settings from `Kernel/Config.pm` without Perl.
//!
//! OTRS 6, Znuny and OTOBO keep their database connection and a few other settings in a Perl
//! file whose `Load` sub assigns entries of `$Self`. Load order (later wins): the built-in
//! defaults of `Kernel/Config/Defaults.pm` (the few we need are built in here, see
//! [`DEFAULTS`]), then `Kernel/Config/Files/ZZZAAuto.pm` (SysConfig), then `Kernel/Config.pm`.
//!
//! Understood: `$Self->{Key}`, `$Self->{'Key'}` and `$Self->{"Key"}` assigned a single-quoted
//! string (`\'` and `\\` escapes), a double-quoted string (interpolating `$Self->{Key}` and
//! `$ENV{NAME}`; escapes `\"`, `\\`, `\$`, `\@`, `\n`, `\t`), a number, `$ENV{NAME}`,
//! `$Self->{Other}`, or a concatenation (`.`) of these; `<OTRS_CONFIG_Key>` placeholders are
//! substituted when a value is read. Comments (`#`, also indented; `=pod` … `=cut` blocks) are
//! skipped. Anything else (hash or array refs, function calls, `||`) is skipped; reading such a
//! key later is an error that names the file and line ([`OtrsConfig::get`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Settings the exporter reads.
pub const KEYS: &[&str] = &[
    "DatabaseHost",
    "Database",
    "DatabaseUser",
    "DatabasePw",
    "DatabaseDSN",
    "NodeID",
    "SystemID",
    "Home",
    "LogModule",
    "LogModule::LogFile",
    "Cache::Module",
    "SessionModule",
    "SessionMaxIdleTime",
];

/// Defaults.pm values of the keys in [`KEYS`] (used when neither file sets them).
pub const DEFAULTS: &[(&str, &str)] = &[
    ("DatabaseHost", "localhost"),
    (
        "DatabaseDSN",
        "DBI:mysql:database=<OTRS_CONFIG_Database>;host=<OTRS_CONFIG_DatabaseHost>;",
    ),
    ("NodeID", "1"),
    ("SystemID", "10"),
    ("LogModule", "Kernel::System::Log::SysLog"),
    ("LogModule::LogFile", "/tmp/otrs.log"),
    ("Cache::Module", "Kernel::System::Cache::FileStorable"),
    ("SessionModule", "Kernel::System::AuthSession::DB"),
    ("SessionMaxIdleTime", "7200"),
];

/// Longest value [`OtrsConfig::get`] builds from `<OTRS_CONFIG_Key>` placeholders.
pub const MAX_EXPANDED: usize = 64 * 1024;
/// Most `<OTRS_CONFIG_Key>` placeholders [`OtrsConfig::get`] fills in for one value.
pub const MAX_PLACEHOLDERS: usize = 1000;

/// Why Config.pm could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmError(pub String);

impl fmt::Display for PmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PmError {}

/// Where a value was assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file (empty for built-in defaults).
    pub file: PathBuf,
    /// 1-based line (0 for built-in defaults).
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str("Defaults.pm (built in)")
        } else {
            write!(f, "{}:{}", self.file.display(), self.line)
        }
    }
}

/// One assignment: its value, or why it could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The value, or the reason it is not a plain scalar.
    pub value: Result<String, String>,
    /// Where it was assigned.
    pub origin: Origin,
}

/// The effective OTRS settings found under a home directory.
#[derive(Debug, Clone, Default)]
pub struct OtrsConfig {
    /// Every scalar assignment seen, last one wins.
    pub settings: BTreeMap<String, Setting>,
    /// The Config.pm read.
    pub config_pm: PathBuf,
}

impl OtrsConfig {
    /// The value of `key` with `<OTRS_CONFIG_Key>` placeholders substituted; `Ok(None)` if no
    /// file sets it and there is no default; an error naming file and line if the assignment
    /// is not a plain scalar.
    pub fn get(&self, key: &str) -> Result<Option<String>, PmError> {
        self.get_depth(key, &mut Vec::new(), &mut { MAX_PLACEHOLDERS })
    }

    /// [`OtrsConfig::get`] inside the expansion of the keys on `stack`, with `budget`
    /// placeholders left to fill in: a key that refers back to itself is an error, and so are
    /// more placeholders than [`MAX_PLACEHOLDERS`] or a value longer than [`MAX_EXPANDED`]
    /// (Config.pm is read on every CGI scrape: it must not be able to hang it).
    fn get_depth(
        &self,
        key: &str,
        stack: &mut Vec<String>,
        budget: &mut usize,
    ) -> Result<Option<String>, PmError> {
        if stack.iter().any(|k| k == key) {
            return Err(PmError(format!(
                "{}: <OTRS_CONFIG_{key}> refers back to itself (via {}); set the value \
                 without the placeholder",
                self.origin(key),
                stack.join(" -> ")
            )));
        }
        let depth = stack.len();
        let raw = match self.settings.get(key) {
            Some(s) => match &s.value {
                Ok(v) => v.clone(),
                Err(why) => {
                    return Err(PmError(format!(
                        "{}: cannot read {key} without Perl ({why}); set it in the exporter's \
                         config instead",
                        s.origin
                    )))
                }
            },
            None => match DEFAULTS.iter().find(|(k, _)| *k == key) {
                Some((_, v)) => v.to_string(),
                None => return Ok(None),
            },
        };
        if depth > 8 || !raw.contains("<OTRS_CONFIG_") {
            return Ok(Some(raw));
        }
        let mut out = String::new();
        let mut rest = raw.as_str();
        stack.push(key.to_string());
        while let Some(i) = rest.find("<OTRS_CONFIG_") {
            out.push_str(&rest[..i]);
            let after = &rest[i + "<OTRS_CONFIG_".len()..];
            match after.find('>') {
                Some(end) => {
                    if *budget == 0 {
                        return Err(PmError(format!(
                            "{}: {key} needs more than {MAX_PLACEHOLDERS} <OTRS_CONFIG_...> \
                             placeholders filled in",
                            self.origin(key)
                        )));
                    }
                    *budget -= 1;
                    let v = self
                        .get_depth(&after[..end], stack, budget)?
                        .unwrap_or_default();
                    out.push_str(&v);
                    if out.len() > MAX_EXPANDED {
                        return Err(PmError(format!(
                            "{}: {key} grows beyond {MAX_EXPANDED} bytes when its \
                             <OTRS_CONFIG_...> placeholders are filled in",
                            self.origin(key)
                        )));
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str(&rest[i..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        stack.pop();
        Ok(Some(out))
    }

    /// Where `key` was set ("Defaults.pm (built in)" for defaults), for messages.
    pub fn origin(&self, key: &str) -> String {
        match self.settings.get(key) {
            Some(s) => s.origin.to_string(),
            None => Origin {
                file: PathBuf::new(),
                line: 0,
            }
            .to_string(),
        }
    }
}

/// Reads `<home>/Kernel/Config/Files/ZZZAAuto.pm` (if present) and then
/// `<home>/Kernel/Config.pm`. `Ok(None)` if there is no Config.pm.
pub fn read(home: &Path) -> Result<Option<OtrsConfig>, PmError> {
    read_with(home, &|k| std::env::var(k).ok())
}

/// [`read`] with the environment (for `$ENV{NAME}`) supplied by the caller.
pub fn read_with(
    home: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<OtrsConfig>, PmError> {
    let config_pm = home.join("Kernel/Config.pm");
    let text = match std::fs::read(&config_pm) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(PmError(format!(
                "cannot read {}: {e} (the exporter's user needs read access, or set [db] in \
                 the exporter's config)",
                config_pm.display()
            )))
        }
    };
    let mut settings = BTreeMap::new();
    let auto = home.join("Kernel/Config/Files/ZZZAAuto.pm");
    if let Ok(t) = std::fs::read(&auto) {
        parse_into(&String::from_utf8_lossy(&t), &auto, env, &mut settings);
    }
    parse_into(&text, &config_pm, env, &mut settings);
    Ok(Some(OtrsConfig {
        settings,
        config_pm,
    }))
}

/// Parses one Perl config file, applying its scalar assignments to `settings` in order.
pub fn parse_into(
    text: &str,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    settings: &mut BTreeMap<String, Setting>,
) {
    let b = text.as_bytes();
    let n = b.len();
    let mut i = 0;
    let mut line = 1;
    let mut at_line_start = true;
    while i < n {
        let c = b[i];
        if at_line_start && c == b'=' && i + 1 < n && b[i + 1].is_ascii_alphabetic() {
            // POD block: skip to the line after `=cut`.
            loop {
                let end = text[i..].find('\n').map(|e| i + e + 1).unwrap_or(n);
                let cut = text[i..end].starts_with("=cut");
                line += 1;
                i = end;
                if cut || i >= n {
                    break;
                }
            }
            continue;
        }
        at_line_start = false;
        match c {
            b'\n' => {
                line += 1;
                i += 1;
                at_line_start = true;
            }
            b'#' => {
                i = text[i..].find('\n').map(|e| i + e).unwrap_or(n);
            }
            b'\'' | b'"' => {
                let end = skip_string(b, i);
                line += count_nl(&b[i..end]);
                i = end;
            }
            b'$' if text[i..].starts_with("$Self") => {
                let start_line = line;
                let Some((key, after)) = self_key(text, i) else {
                    i += 5;
                    continue;
                };
                let mut j = skip_ws(b, after);
                let is_assign = j < n
                    && b[j] == b'='
                    && !matches!(b.get(j + 1), Some(b'=') | Some(b'>') | Some(b'~'));
                if !is_assign {
                    line += count_nl(&b[i..j]);
                    i = j.max(i + 1);
                    continue;
                }
                j += 1;
                let end = statement_end(b, j);
                let expr = &text[j..end];
                let mut value = eval(expr.trim(), settings, env);
                if is_secret(&key) {
                    value = value.map_err(|e| hide_quoted(&e));
                }
                settings.insert(
                    key,
                    Setting {
                        value,
                        origin: Origin {
                            file: file.to_path_buf(),
                            line: start_line,
                        },
                    },
                );
                line += count_nl(&b[i..end]);
                i = (end + 1).min(n);
            }
            _ => i += 1,
        }
    }
}

/// Keys holding secrets (`DatabasePw`, any `...Pw`, `...Password`, `...Secret`): error messages
/// about their assignment never quote the expression.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.ends_with("pw") || k.contains("password") || k.contains("secret")
}

/// `why` with every `` `quoted` `` part replaced by `(expression hidden)`.
fn hide_quoted(why: &str) -> String {
    let mut out = String::new();
    let mut parts = why.split('`');
    out.push_str(parts.next().unwrap_or(""));
    let mut inside = true;
    for p in parts {
        out.push_str(if inside { "(expression hidden)" } else { p });
        inside = !inside;
    }
    out
}

fn count_nl(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// End (exclusive) of the quoted string starting at `i`.
fn skip_string(b: &[u8], i: usize) -> usize {
    let q = b[i];
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            c if c == q => return j + 1,
            _ => j += 1,
        }
    }
    b.len()
}

/// At `$Self->{Key}` (with optional spaces and a bare or quoted key): the key and the offset
/// after `}`; `None` for `$Self->{Key}{Sub}` / `->{Sub}` (nested, not ours) and other shapes.
fn self_key(text: &str, i: usize) -> Option<(String, usize)> {
    let b = text.as_bytes();
    let mut j = skip_ws(b, i + "$Self".len());
    if !text[j..].starts_with("->") {
        return None;
    }
    j = skip_ws(b, j + 2);
    if b.get(j) != Some(&b'{') {
        return None;
    }
    j = skip_ws(b, j + 1);
    let key = match b.get(j)? {
        b'\'' | b'"' => {
            let end = skip_string(b, j);
            let k = unquote(&text[j..end])?;
            j = end;
            k
        }
        _ => {
            let start = j;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b':') {
                j += 1;
            }
            text[start..j].to_string()
        }
    };
    j = skip_ws(b, j);
    if b.get(j) != Some(&b'}') || key.is_empty() {
        return None;
    }
    j += 1;
    // Nested element (`->{`, `{`, `->[`): an assignment into a structure, not a scalar key.
    let k = skip_ws(b, j);
    if text[k..].starts_with("->") || b.get(k) == Some(&b'{') || b.get(k) == Some(&b'[') {
        return None;
    }
    Some((key, j))
}

/// Offset of the `;` that ends the statement starting at `i` (outside strings and brackets).
fn statement_end(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0i32;
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => {
                i = skip_string(b, i);
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'{' | b'[' | b'(' => depth += 1,
            b'}' | b']' | b')' => depth -= 1,
            b';' if depth <= 0 => return i,
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// The content of a single-quoted Perl string (only `\'` and `\\` are escapes).
fn unquote_single(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('\'') | Some('\\') => out.push(chars.next().unwrap_or('\\')),
                _ => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A quoted key (no interpolation needed for keys); `None` unless `q` starts and ends with
/// the same quote (an unterminated one may end inside a multi-byte character).
fn unquote(q: &str) -> Option<String> {
    let quote = q.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = q.strip_prefix(quote)?.strip_suffix(quote)?;
    Some(unquote_single(inner))
}

/// Evaluates a right-hand side: string, number, `$ENV{X}`, `$Self->{K}`, or `.` of those.
fn eval(
    expr: &str,
    settings: &BTreeMap<String, Setting>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    if expr.is_empty() {
        return Err("empty value".into());
    }
    if is_number(expr) {
        return Ok(expr.replace('_', ""));
    }
    let b = expr.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    loop {
        i = skip_ws(b, i);
        if i >= b.len() {
            return Err("value ends after '.'".into());
        }
        let (term, end) = match b[i] {
            b'\'' => {
                let end = skip_string(b, i);
                if end > b.len() || b[end - 1] != b'\'' || end - i < 2 {
                    return Err("unterminated string".into());
                }
                (unquote_single(&expr[i + 1..end - 1]), end)
            }
            b'"' => {
                let end = skip_string(b, i);
                if end - i < 2 || b[end - 1] != b'"' {
                    return Err("unterminated string".into());
                }
                (interpolate(&expr[i + 1..end - 1], settings, env)?, end)
            }
            b'$' => variable(expr, i, settings, env)?,
            b'0'..=b'9' => {
                let mut end = i;
                while end < b.len() && (b[end].is_ascii_digit() || b[end] == b'_') {
                    end += 1;
                }
                (expr[i..end].replace('_', ""), end)
            }
            b'{' => return Err("a hash reference".into()),
            b'[' => return Err("an array reference".into()),
            _ => {
                return Err(format!(
                    "not a plain string, number, $ENV{{NAME}} or $Self->{{Key}}: `{}`",
                    short(expr)
                ))
            }
        };
        out.push_str(&term);
        i = skip_ws(b, end);
        if i >= b.len() {
            return Ok(out);
        }
        if b[i] != b'.' {
            return Err(format!("unsupported Perl expression `{}`", short(expr)));
        }
        i += 1;
    }
}

fn short(s: &str) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 60 {
        one_line.chars().take(60).chain("...".chars()).collect()
    } else {
        one_line
    }
}

fn is_number(s: &str) -> bool {
    let t = s.strip_prefix('-').unwrap_or(s);
    !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '_')
        && t.chars().filter(|&c| c == '.').count() <= 1
        && t.starts_with(|c: char| c.is_ascii_digit())
}

/// `$ENV{NAME}`, `$ENV{'NAME'}` or `$Self->{Key}` at `i`: its value and the end offset.
fn variable(
    expr: &str,
    i: usize,
    settings: &BTreeMap<String, Setting>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, usize), String> {
    let b = expr.as_bytes();
    if expr[i..].starts_with("$ENV") {
        let mut j = skip_ws(b, i + 4);
        if b.get(j) != Some(&b'{') {
            return Err("unsupported use of %ENV".into());
        }
        j = skip_ws(b, j + 1);
        let name = match b.get(j) {
            Some(b'\'') | Some(b'"') => {
                let end = skip_string(b, j);
                let n = unquote(&expr[j..end]).ok_or("bad $ENV key")?;
                j = end;
                n
            }
            _ => {
                let s = j;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                expr[s..j].to_string()
            }
        };
        j = skip_ws(b, j);
        if b.get(j) != Some(&b'}') {
            return Err("unsupported $ENV{...} expression".into());
        }
        return match env(&name) {
            Some(v) => Ok((v, j + 1)),
            None => Err(format!("environment variable {name} is not set")),
        };
    }
    if expr[i..].starts_with("$Self") {
        let (key, end) = self_key(expr, i).ok_or("unsupported $Self expression")?;
        let v = match settings.get(&key) {
            Some(Setting { value: Ok(v), .. }) => v.clone(),
            Some(Setting { value: Err(e), .. }) => return Err(format!("uses {key}, which {e}")),
            None => DEFAULTS
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default(),
        };
        return Ok((v, end));
    }
    Err(format!("unsupported variable in `{}`", short(expr)))
}

/// The content of a double-quoted string with `$Self->{K}` / `$ENV{X}` and escapes resolved.
fn interpolate(
    s: &str,
    settings: &BTreeMap<String, Setting>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if i + 1 < b.len() => {
                let c = s[i + 1..].chars().next().unwrap_or('\\');
                match c {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    other => out.push(other),
                }
                i += 1 + c.len_utf8();
            }
            b'$' => {
                let (v, end) = variable(s, i, settings, env)?;
                out.push_str(&v);
                i = end;
            }
            _ => {
                let c = s[i..].chars().next().unwrap_or(' ');
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    Ok(out)
}

/// Database protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// PostgreSQL (`DBI:Pg:`).
    Postgres,
    /// MySQL or MariaDB (`DBI:mysql:`, `DBI:MariaDB:`).
    Mysql,
}

impl Driver {
    /// `postgresql` or `mysql`, as written in `db.driver`.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Postgres => "postgresql",
            Driver::Mysql => "mysql",
        }
    }

    /// The default TCP port.
    pub fn default_port(self) -> u16 {
        match self {
            Driver::Postgres => 5432,
            Driver::Mysql => 3306,
        }
    }
}

/// The parts of a DBI data source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// Protocol.
    pub driver: Driver,
    /// `database=` / `dbname=`.
    pub database: Option<String>,
    /// `host=` (a directory for PostgreSQL means a unix socket directory).
    pub host: Option<String>,
    /// `port=`.
    pub port: Option<u16>,
    /// `mysql_socket=` / `mariadb_socket=`.
    pub socket: Option<String>,
}

/// Parses `DBI:<driver>:k=v;k=v;…` (`Pg`, `mysql`, `MariaDB`; keys `database`/`dbname`/`db`,
/// `host`, `port`, `mysql_socket`/`mariadb_socket`; others ignored).
pub fn parse_dsn(dsn: &str) -> Result<Dsn, String> {
    let mut parts = dsn.trim().splitn(3, ':');
    let dbi = parts.next().unwrap_or("");
    let driver = parts.next().unwrap_or("");
    let rest = parts.next().unwrap_or("");
    if !dbi.eq_ignore_ascii_case("dbi") {
        // Only the scheme: a URL-style DSN may carry a password.
        return Err(format!(
            "the DSN `{}:...` is not a DBI data source (expected DBI:Pg:... or DBI:mysql:...)",
            dbi.chars().take(20).collect::<String>()
        ));
    }
    let driver = match driver {
        "Pg" => Driver::Postgres,
        "mysql" | "MariaDB" => Driver::Mysql,
        other => {
            return Err(format!(
                "database driver `{other}` is not supported (only Pg, mysql and MariaDB)"
            ))
        }
    };
    let mut d = Dsn {
        driver,
        database: None,
        host: None,
        port: None,
        socket: None,
    };
    for pair in rest.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            // `DBI:mysql:otrs` (bare database name) is also valid DBI.
            if d.database.is_none() {
                d.database = Some(pair.to_string());
            }
            continue;
        };
        let v = v.trim().to_string();
        match k.trim() {
            "database" | "dbname" | "db" => d.database = Some(v),
            "host" | "hostname" => d.host = Some(v),
            "port" => {
                d.port = Some(
                    v.parse()
                        .map_err(|_| format!("port `{v}` in the DSN is not a number"))?,
                )
            }
            "mysql_socket" | "mariadb_socket" => d.socket = Some(v),
            _ => {}
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> OtrsConfig {
        let env = |k: &str| (k == "OTRS_DB_PW").then(|| "from-env".to_string());
        let mut settings = BTreeMap::new();
        parse_into(
            text,
            Path::new("/opt/otrs/Kernel/Config.pm"),
            &env,
            &mut settings,
        );
        OtrsConfig {
            settings,
            config_pm: PathBuf::from("/opt/otrs/Kernel/Config.pm"),
        }
    }

    fn get(c: &OtrsConfig, k: &str) -> String {
        c.get(k).unwrap().unwrap()
    }

    #[test]
    fn dist_style() {
        let c = parse(
            "package Kernel::Config;\nsub Load {\n    my $Self = shift;\n\
             \x20   # The database host\n    $Self->{DatabaseHost} = '127.0.0.1';\n\
             \x20   $Self->{Database} = \"otrs\";\n    $Self->{DatabaseUser} = 'otrs';\n\
             \x20   $Self->{DatabasePw} = 'some-pass';\n\
             \x20   # $Self->{DatabaseDSN} = \"DBI:Pg:dbname=$Self->{Database};host=$Self->{DatabaseHost};\";\n\
             \x20   $Self->{DatabaseDSN} = \"DBI:mysql:database=$Self->{Database};host=$Self->{DatabaseHost};\";\n\
             \x20   #$Self->{DatabaseDSN} = \"DBI:Oracle://$Self->{DatabaseHost}:1521/$Self->{Database}\";\n\
             \x20   $Self->{Home} = '/opt/otrs';\n    return 1;\n}\n1;\n",
        );
        assert_eq!(
            get(&c, "DatabaseDSN"),
            "DBI:mysql:database=otrs;host=127.0.0.1;"
        );
        assert_eq!(c.settings["DatabaseDSN"].origin.line, 10);
        assert_eq!(get(&c, "DatabasePw"), "some-pass");
        assert_eq!(get(&c, "SessionMaxIdleTime"), "7200");
    }

    #[test]
    fn installer_and_otobo_styles() {
        let c = parse(
            "    $Self->{'DatabaseHost'} = 'db.example.com';\n\
             $Self->{'DatabasePw'} = 'it\\'s \\\\ secret';\n\
             # $DIBI$\n\
             $Self->{\"Database\"}   =   \"otobo\";\n\
             $Self->{'DatabaseDSN'} = \"DBI:Pg:dbname=$Self->{'Database'};host=$Self->{DatabaseHost};\";\n\
             $Self->{'LogModule'}           = 'Kernel::System::Log::File';\n\
             $Self->{'LogModule::LogFile'}  = $Self->{Home} . '/var/log/otrs.log';\n\
             $Self->{'NodeID'} = 2;\n\
             $Self->{'SessionMaxIdleTime'} = 3600;\n",
        );
        assert_eq!(get(&c, "DatabasePw"), "it's \\ secret");
        assert_eq!(
            get(&c, "DatabaseDSN"),
            "DBI:Pg:dbname=otobo;host=db.example.com;"
        );
        assert_eq!(get(&c, "LogModule::LogFile"), "/var/log/otrs.log");
        assert_eq!(get(&c, "NodeID"), "2");
        assert_eq!(get(&c, "SessionMaxIdleTime"), "3600");
        assert_eq!(get(&c, "LogModule"), "Kernel::System::Log::File");
    }

    #[test]
    fn non_scalars_env_placeholders_and_errors() {
        let c = parse(
            "$Self->{'Ticket::Frontend::X'} = {\n  'a' => 'b; c',\n  'd' => [ 1, 2 ],\n};\n\
             $Self->{'Some'}->{'Nested'} = 'x';\n\
             $Self->{DatabasePw} = $ENV{OTRS_DB_PW};\n\
             $Self->{DatabaseUser} = $ENV{'NOT_SET_ANYWHERE'};\n\
             $Self->{Database} = 'otrs';\n\
             $Self->{DatabaseHost} = lc('DB');\n\
             =pod\n$Self->{Home} = 'in pod';\n=cut\n\
             $Self->{'Cache::Module'} = \"Kernel::System::Cache::Redis\"; # trailing comment\n",
        );
        assert!(c.settings.contains_key("Ticket::Frontend::X"));
        assert!(!c.settings.contains_key("Some"));
        assert_eq!(get(&c, "DatabasePw"), "from-env");
        let e = c.get("DatabaseUser").unwrap_err().to_string();
        assert!(
            e.contains("Config.pm:7") && e.contains("NOT_SET_ANYWHERE"),
            "{e}"
        );
        let e = c.get("DatabaseHost").unwrap_err().to_string();
        assert!(
            e.starts_with("/opt/otrs/Kernel/Config.pm:9: cannot read DatabaseHost"),
            "{e}"
        );
        assert!(c
            .get("Ticket::Frontend::X")
            .unwrap_err()
            .0
            .contains("hash reference"));
        assert_eq!(c.get("Home").unwrap(), None, "POD is skipped");
        assert_eq!(get(&c, "Cache::Module"), "Kernel::System::Cache::Redis");
        // The Defaults.pm DSN refers to DatabaseHost, whose error it passes on.
        assert!(c.get("DatabaseDSN").unwrap_err().0.contains("DatabaseHost"));
    }

    #[test]
    fn secret_expressions_are_not_quoted_in_errors() {
        let c = parse(
            "$Self->{DatabasePw} = decrypt('canary-1234');\n\
             $Self->{DatabaseUser} = lc('shown');\n\
             $Self->{DatabaseDSN} = \"DBI:Pg:dbname=x;password=$Self->{DatabasePw}\";\n",
        );
        let e = c.get("DatabasePw").unwrap_err().to_string();
        assert!(
            !e.contains("canary-1234") && e.contains("Config.pm:1"),
            "{e}"
        );
        let e = c.get("DatabaseDSN").unwrap_err().to_string();
        assert!(!e.contains("canary-1234"), "{e}");
        assert!(c.get("DatabaseUser").unwrap_err().0.contains("shown"));
    }

    #[test]
    fn placeholders() {
        let c = parse("$Self->{Database} = 'znuny';\n$Self->{DatabaseHost} = 'h';\n");
        assert_eq!(get(&c, "DatabaseDSN"), "DBI:mysql:database=znuny;host=h;");
        // The same key twice side by side is no loop.
        let c = parse("$Self->{A} = '<OTRS_CONFIG_B>/<OTRS_CONFIG_B>';\n$Self->{B} = 'b';\n");
        assert_eq!(get(&c, "A"), "b/b");
    }

    #[test]
    fn unterminated_quoted_keys_are_skipped() {
        // Found by fuzzing: the key's "closing quote" was taken to be its last byte, here
        // inside 'ä'.
        let c = parse("$Self->{'Databaseä\n$Self->{\"Xä");
        assert!(c.settings.is_empty());
        let c = parse("$Self->{Database} = $ENV{'NAMEä;\n");
        assert!(c.get("Database").is_err());
    }

    #[test]
    fn placeholder_loops_and_blowups_are_errors_not_hangs() {
        let c = parse("$Self->{A} = 'x<OTRS_CONFIG_B>';\n$Self->{B} = '<OTRS_CONFIG_A>';\n");
        let e = c.get("A").unwrap_err().0;
        assert!(e.contains("refers back to itself (via A -> B)"), "{e}");
        // Twenty references per level, eight levels: 20^8 copies without a cap.
        let mut text = String::new();
        for level in 0..8 {
            let next = format!("<OTRS_CONFIG_K{}>", level + 1).repeat(20);
            text.push_str(&format!("$Self->{{K{level}}} = '{next}';\n"));
        }
        text.push_str("$Self->{K8} = 'leaf';\n");
        let c = parse(&text);
        let e = c.get("K0").unwrap_err().0;
        assert!(e.contains("K7 needs more than 1000"), "{e}");
        // Few placeholders, long values.
        let c = parse(&format!(
            "$Self->{{A}} = '<OTRS_CONFIG_B><OTRS_CONFIG_B>';\n$Self->{{B}} = '{}';\n",
            "x".repeat(40_000)
        ));
        let e = c.get("A").unwrap_err().0;
        assert!(e.contains("A grows beyond 65536 bytes"), "{e}");
    }

    #[test]
    fn dsns() {
        let d = parse_dsn("DBI:Pg:dbname=otrs;host=127.0.0.1;port=5433").unwrap();
        assert_eq!(d.driver, Driver::Postgres);
        assert_eq!(d.database.as_deref(), Some("otrs"));
        assert_eq!(d.port, Some(5433));
        let d = parse_dsn("DBI:Pg:dbname=otrs;").unwrap();
        assert_eq!(d.host, None);
        let d = parse_dsn("DBI:MariaDB:database=znuny;host=db;mysql_socket=/run/m.sock").unwrap();
        assert_eq!(d.driver, Driver::Mysql);
        assert_eq!(d.socket.as_deref(), Some("/run/m.sock"));
        assert!(parse_dsn("DBI:Oracle://h:1521/otrs")
            .unwrap_err()
            .contains("Oracle"));
        let e = parse_dsn("postgres://otrs:canary-pw@db/otrs").unwrap_err();
        assert!(e.contains("postgres:...") && !e.contains("canary"), "{e}");
        assert!(parse_dsn("DBI:Pg:dbname=x;port=abc").is_err());
    }
}
