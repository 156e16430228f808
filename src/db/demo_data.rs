//! Schema fixtures and a deterministic data generator for the DB collectors' tests, the
//! benchmark and (later) the demo.
//!
//! The fixtures under `sql/fixtures/` recreate, from `otrs-facts.md`, the tables the
//! collectors read with OTRS' index names, and the initial rows of OTRS 6, Znuny 7 and
//! OTOBO 11 ([`Variant`]). [`generate`] produces INSERTs with realistic distributions and,
//! alongside, the exact values every DB metric must then show ([`Expected`]), computed from
//! the generator's own model rather than from SQL.

use std::collections::BTreeMap;

use super::Driver;

/// A product whose fresh-install schema the fixtures reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// OTRS 6.
    Otrs6,
    /// Znuny 7 (also 6.5).
    Znuny7,
    /// OTOBO 11 (also 10).
    Otobo11,
}

impl Variant {
    /// All variants.
    pub const ALL: [Variant; 3] = [Variant::Otrs6, Variant::Znuny7, Variant::Otobo11];

    /// Short name (`otrs6`, `znuny7`, `otobo11`).
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Otrs6 => "otrs6",
            Variant::Znuny7 => "znuny7",
            Variant::Otobo11 => "otobo11",
        }
    }
}

/// The SQL that creates the tables and initial rows of `variant` on `driver`.
pub fn schema(driver: Driver, variant: Variant) -> String {
    let tables = match driver {
        Driver::Postgres => include_str!("../../sql/fixtures/schema.postgresql.sql"),
        Driver::Mysql => include_str!("../../sql/fixtures/schema.mysql.sql"),
    };
    let extra = match variant {
        Variant::Otrs6 => include_str!("../../sql/fixtures/otrs6.sql"),
        Variant::Znuny7 => include_str!("../../sql/fixtures/znuny7.sql"),
        Variant::Otobo11 => include_str!("../../sql/fixtures/otobo11.sql"),
    };
    format!(
        "{tables}\n{}\n{extra}",
        include_str!("../../sql/fixtures/initial.sql")
    )
}

/// Splits SQL text into statements (on `;` at line ends; the fixtures are written so).
pub fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in sql.lines() {
        let t = line.trim();
        if t.starts_with("--") || t.is_empty() {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if t.ends_with(';') {
            out.push(cur.trim().trim_end_matches(';').to_string());
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Deterministic pseudo-random numbers (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// An index into `weights`, chosen in proportion to them.
    pub fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut x = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a Unix time.
pub fn datetime(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Extra queues the generator adds to the four initial ones.
pub const EXTRA_QUEUES: [&str; 3] = ["Support", "Support::L2", "Sales"];
const QUEUE_NAMES: [&str; 7] = [
    "Postmaster",
    "Raw",
    "Junk",
    "Misc",
    "Support",
    "Support::L2",
    "Sales",
];
const STATES: [(&str, &str); 9] = [
    ("new", "new"),
    ("closed successful", "closed"),
    ("closed unsuccessful", "closed"),
    ("open", "open"),
    ("removed", "removed"),
    ("pending reminder", "pending reminder"),
    ("pending auto close+", "pending auto"),
    ("pending auto close-", "pending auto"),
    ("merged", "merged"),
];
const LOCKS: [&str; 3] = ["unlock", "lock", "tmp_lock"];
const PRIOS: [&str; 5] = ["1 very low", "2 low", "3 normal", "4 high", "5 very high"];
const SENDERS: [&str; 3] = ["agent", "system", "customer"];
const CHANNELS: [&str; 4] = ["Email", "Phone", "Internal", "Chat"];
/// Default cron task names (otrs-facts.md section 5).
pub const CRON: [&str; 8] = [
    "MailAccountFetch",
    "MailQueueSend",
    "ArticleSearchIndexRebuild",
    "EscalationCheck",
    "TicketPendingCheck",
    "SessionDeleteExpired",
    "TicketUnlockTimeout",
    "CommunicationLogDelete",
];

/// Expected metric values: `name{label="v",...}` (labels sorted by name) → value.
pub type Expected = BTreeMap<String, f64>;

/// The series key the tests compare: metric name and its labels sorted by name.
pub fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut l: Vec<_> = labels.to_vec();
    l.sort();
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

fn inc(e: &mut Expected, name: &str, labels: &[(&str, &str)], by: f64) {
    *e.entry(key(name, labels)).or_default() += by;
}

/// A generated data set: the statements to run and what the collectors must report.
#[derive(Debug, Clone, Default)]
pub struct DataSet {
    /// INSERT statements (without trailing `;`).
    pub sql: Vec<String>,
    /// Expected values per collector name.
    pub expected: BTreeMap<&'static str, Expected>,
    /// Highest ticket id.
    pub max_ticket: i64,
    /// Highest article id.
    pub max_article: i64,
    /// Queue index (into the seven queue names) of each ticket, by ticket id - 1.
    pub ticket_queues: Vec<usize>,
}

/// Batches rows into multi-row INSERTs.
struct Inserts<'a> {
    out: &'a mut Vec<String>,
    head: String,
    rows: Vec<String>,
}

impl<'a> Inserts<'a> {
    fn new(out: &'a mut Vec<String>, table: &str, cols: &str) -> Self {
        Inserts {
            out,
            head: format!("INSERT INTO {table} ({cols}) VALUES "),
            rows: Vec::new(),
        }
    }
    fn row(&mut self, r: String) {
        self.rows.push(r);
        if self.rows.len() >= 500 {
            self.flush();
        }
    }
    fn flush(&mut self) {
        if !self.rows.is_empty() {
            self.out
                .push(format!("{}{}", self.head, self.rows.join(",")));
            self.rows.clear();
        }
    }
}

impl Drop for Inserts<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Generates `tickets` tickets (with articles, mail, daemon rows and sessions) around the
/// database time `now`. Times are written as UTC (the test databases run in UTC).
pub fn generate(tickets: u64, seed: u64, now: i64) -> DataSet {
    let mut r = Rng::new(seed);
    let mut ds = DataSet::default();
    let mut sql = Vec::new();
    let t0 = datetime(now - 86_400);
    {
        let mut q = Inserts::new(
            &mut sql,
            "queue",
            "id, name, group_id, system_address_id, salutation_id, signature_id, follow_up_id, \
             follow_up_lock, valid_id, create_time, create_by, change_time, change_by",
        );
        for (i, name) in EXTRA_QUEUES.iter().enumerate() {
            q.row(format!(
                "({}, '{name}', 1, 1, 1, 1, 1, 0, 1, '{t0}', 1, '{t0}', 1)",
                i + 5
            ));
        }
    }
    let mut et = Expected::new();
    for q in QUEUE_NAMES {
        inc(&mut et, "otrs_tickets_escalated", &[("queue", q)], 0.0);
        for kind in ["first_response", "update", "solution"] {
            inc(
                &mut et,
                "otrs_ticket_escalations",
                &[("queue", q), ("kind", kind)],
                0.0,
            );
        }
    }
    let mut ticket_queue = Vec::new();
    let mut article_id = 0i64;
    {
        let mut t = Inserts::new(
            &mut sql,
            "ticket",
            "id, tn, title, queue_id, ticket_lock_id, user_id, responsible_user_id, \
             ticket_priority_id, ticket_state_id, customer_id, customer_user_id, timeout, \
             until_time, escalation_time, escalation_update_time, escalation_response_time, \
             escalation_solution_time, archive_flag, create_time, create_by, change_time, change_by",
        );
        for id in 1..=tickets as i64 {
            let queue = r.weighted(&[10, 1, 3, 6, 40, 15, 25]);
            let state = r.weighted(&[10, 40, 5, 25, 1, 5, 3, 2, 2]);
            let (sname, stype) = STATES[state];
            let open = ["new", "open", "pending reminder", "pending auto"].contains(&stype);
            let lock = if open { r.weighted(&[60, 38, 2]) } else { 0 };
            let prio = r.weighted(&[5, 15, 60, 15, 5]);
            let mut esc = [0i64; 3]; // response, update, solution
            if open && r.below(10) < 4 {
                for e in esc.iter_mut() {
                    *e = match r.below(3) {
                        0 => 0,
                        1 => now - 3600 - r.below(86_400) as i64,
                        _ => now + 3600 + r.below(86_400) as i64,
                    };
                }
            }
            let earliest = esc.iter().copied().filter(|e| *e > 0).min().unwrap_or(0);
            let created = now - 3600 - r.below(90 * 86_400) as i64;
            t.row(format!(
                "({id}, '2026{id:010}', 'Ticket {id}', {}, {}, 1, 1, {}, {}, 'cust{}', 'user{}', \
                 0, 0, {earliest}, {}, {}, {}, 0, '{}', 1, '{}', 1)",
                queue + 1,
                lock + 1,
                prio + 1,
                state + 1,
                id % 50,
                id % 200,
                esc[1],
                esc[0],
                esc[2],
                datetime(created),
                datetime(created)
            ));
            let qn = QUEUE_NAMES[queue];
            inc(
                &mut et,
                "otrs_tickets",
                &[("queue", qn), ("state", sname), ("state_type", stype)],
                1.0,
            );
            if open {
                inc(
                    &mut et,
                    "otrs_tickets_open",
                    &[
                        ("queue", qn),
                        ("lock", LOCKS[lock]),
                        ("priority", PRIOS[prio]),
                    ],
                    1.0,
                );
                if earliest > 0 && earliest < now {
                    inc(&mut et, "otrs_tickets_escalated", &[("queue", qn)], 1.0);
                    for (i, kind) in ["first_response", "update", "solution"].iter().enumerate() {
                        let passed = esc[i] > 0 && esc[i] < now;
                        inc(
                            &mut et,
                            "otrs_ticket_escalations",
                            &[("queue", qn), ("kind", kind)],
                            f64::from(u8::from(passed)),
                        );
                    }
                }
            }
            ticket_queue.push(queue);
        }
    }
    ds.max_ticket = tickets as i64;
    ds.ticket_queues = ticket_queue.clone();
    {
        let mut a = Inserts::new(&mut sql, "article", ARTICLE_COLS);
        for (i, _) in ticket_queue.iter().enumerate() {
            for _ in 0..1 + r.weighted(&[30, 30, 20, 10, 6, 4]) {
                article_id += 1;
                a.row(article_row(&mut r, article_id, i as i64 + 1, now));
            }
        }
    }
    ds.max_article = article_id;
    ds.expected.insert("tickets", et);

    // Mail: finished communications first, then a few stuck ones in the middle, and the
    // ones still in progress (started minutes ago) last, as in a live system.
    let mut em = Expected::new();
    let ncomm = (tickets / 2).max(10) as i64;
    let mut comms = Inserts::new(
        &mut sql,
        "communication_log",
        "id, transport, direction, status, account_type, account_id, start_time, end_time",
    );
    let mut objs = Vec::new();
    let mut obj_id = 0i64;
    for id in 1..=ncomm {
        let in_progress = id > ncomm - 3;
        let stuck = !in_progress && id % 97 == 0;
        let dir = if r.below(3) == 0 {
            "Outgoing"
        } else {
            "Incoming"
        };
        let status = if in_progress || stuck {
            "Processing"
        } else {
            [
                "Successful",
                "Successful",
                "Successful",
                "Warning",
                "Failed",
            ][r.below(5) as usize]
        };
        let start = if in_progress {
            now - 60 - r.below(300) as i64
        } else {
            now - 7200 - r.below(6 * 86_400) as i64
        };
        let (at, end) = if status == "Processing" {
            ("NULL".to_string(), "NULL".to_string())
        } else {
            ("'IMAPS'".to_string(), format!("'{}'", datetime(start + 5)))
        };
        comms.row(format!(
            "({id}, 'Email', '{dir}', '{status}', {at}, '1', '{}', {end})",
            datetime(start)
        ));
        if in_progress {
            inc(
                &mut em,
                "otrs_mail_communications_processing",
                &[("direction", dir), ("transport", "Email")],
                1.0,
            );
        } else {
            if stuck {
                inc(
                    &mut em,
                    "otrs_mail_communications_processing",
                    &[("direction", dir), ("transport", "Email")],
                    1.0,
                );
            }
            inc(
                &mut em,
                "otrs_mail_communications_total",
                &[
                    ("direction", dir),
                    ("transport", "Email"),
                    ("status", status),
                ],
                1.0,
            );
        }
        obj_id += 1;
        objs.push((obj_id, id, "Connection", status, start));
        for _ in 0..r.weighted(&[20, 50, 20, 10]) {
            obj_id += 1;
            let ostatus = if status == "Processing" {
                "Processing"
            } else if r.below(10) == 0 {
                "Failed"
            } else {
                "Successful"
            };
            objs.push((obj_id, id, "Message", ostatus, start));
            if !in_progress {
                inc(
                    &mut em,
                    "otrs_mail_messages_total",
                    &[("direction", dir), ("status", ostatus)],
                    1.0,
                );
            }
        }
    }
    drop(comms);
    {
        let mut o = Inserts::new(
            &mut sql,
            "communication_log_object",
            "id, communication_id, object_type, status, start_time, end_time",
        );
        for (id, cid, ty, st, start) in objs {
            o.row(format!(
                "({id}, {cid}, '{ty}', '{st}', '{}', NULL)",
                datetime(start)
            ));
        }
    }
    let nq = (tickets / 100 + 3).min(50) as i64;
    let mut oldest = 0i64;
    {
        let mut q = Inserts::new(
            &mut sql,
            "mail_queue",
            "id, article_id, attempts, sender, recipient, raw_message, due_time, last_smtp_code, \
             last_smtp_message, create_time",
        );
        for id in 1..=nq {
            let age = 60 + r.below(7200) as i64;
            oldest = oldest.max(age);
            let attempts = r.weighted(&[6, 2, 1, 1]) as i64;
            let code = if attempts == 0 {
                "NULL".to_string()
            } else {
                ["451", "421", "NULL"][r.below(3) as usize].to_string()
            };
            q.row(format!(
                "({id}, NULL, {attempts}, 'otrs@localhost', 'user{id}@example.com', 'raw', NULL, \
                 {code}, NULL, '{}')",
                datetime(now - age)
            ));
            if attempts > 0 {
                let label = if code == "NULL" {
                    "none"
                } else {
                    code.as_str()
                };
                inc(
                    &mut em,
                    "otrs_mail_queue_retrying_items",
                    &[("last_smtp_code", label)],
                    1.0,
                );
            }
        }
    }
    inc(&mut em, "otrs_mail_queue_items", &[], nq as f64);
    inc(
        &mut em,
        "otrs_mail_queue_oldest_age_seconds",
        &[],
        oldest as f64,
    );
    ds.expected.insert("mail", em);

    // Daemon.
    let mut ed = Expected::new();
    {
        let mut t = Inserts::new(
            &mut sql,
            "scheduler_task",
            "id, ident, name, task_type, task_data, attempts, lock_key, lock_time, \
             lock_update_time, create_time",
        );
        let tasks: [(&str, &str, bool, i64); 6] = [
            ("Cron", "MailQueueSend", true, 12),
            ("Cron", "EscalationCheck", true, 600),
            ("GenericAgent", "CloseOld", false, 0),
            ("AsynchronousExecutor", "", false, 0),
            ("AsynchronousExecutor", "", false, 0),
            ("GenericInterface", "Invoke", true, 45),
        ];
        let mut longest: BTreeMap<&str, i64> = BTreeMap::new();
        for (i, (tt, name, running, age)) in tasks.iter().enumerate() {
            let id = i as i64 + 1;
            let (lk, lt) = if *running {
                ("100100012345", format!("'{}'", datetime(now - age)))
            } else {
                ("0", "NULL".to_string())
            };
            let nm = if name.is_empty() {
                "NULL".to_string()
            } else {
                format!("'{name}'")
            };
            t.row(format!(
                "({id}, {}, {nm}, '{tt}', 'x', 1, {lk}, {lt}, {lt}, '{}')",
                1000 + id,
                datetime(now - age - 1)
            ));
            let state = if *running { "running" } else { "queued" };
            inc(
                &mut ed,
                "otrs_scheduler_tasks",
                &[("task_type", tt), ("name", name), ("state", state)],
                1.0,
            );
            if *running {
                let e = longest.entry(tt).or_insert(0);
                *e = (*e).max(*age);
            }
        }
        for (tt, age) in longest {
            inc(
                &mut ed,
                "otrs_scheduler_task_longest_running_seconds",
                &[("task_type", tt)],
                age as f64,
            );
        }
    }
    {
        let mut f = Inserts::new(
            &mut sql,
            "scheduler_future_task",
            "id, ident, execution_time, name, task_type, task_data, attempts, lock_key, create_time",
        );
        // (type, seconds from now)
        let fut: [(&str, i64); 5] = [
            ("AsynchronousExecutor", 3600),
            ("AsynchronousExecutor", -300),
            ("AsynchronousExecutor", -900),
            ("CalendarAppointment", 86_400),
            ("GenericInterface", 120),
        ];
        let mut per: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
        for (i, (tt, off)) in fut.iter().enumerate() {
            let id = i as i64 + 1;
            f.row(format!(
                "({id}, {}, '{}', NULL, '{tt}', 'x', 1, 0, '{}')",
                2000 + id,
                datetime(now + off),
                datetime(now - 10)
            ));
            let e = per.entry(tt).or_default();
            e.0 += 1;
            if *off < 0 {
                e.1 += 1;
                e.2 = e.2.max(-off);
            }
        }
        for (tt, (n, over, age)) in per {
            inc(
                &mut ed,
                "otrs_scheduler_future_tasks",
                &[("task_type", tt)],
                n as f64,
            );
            inc(
                &mut ed,
                "otrs_scheduler_future_tasks_overdue",
                &[("task_type", tt)],
                over as f64,
            );
            inc(
                &mut ed,
                "otrs_scheduler_future_task_max_overdue_seconds",
                &[("task_type", tt)],
                age as f64,
            );
        }
    }
    {
        let mut rt = Inserts::new(
            &mut sql,
            "scheduler_recurrent_task",
            "id, name, task_type, last_execution_time, last_worker_task_id, last_worker_status, \
             last_worker_running_time, lock_key, create_time, change_time",
        );
        for (i, name) in CRON.iter().enumerate() {
            let id = i as i64 + 1;
            let last = now - 60 * (i as i64 + 1);
            let (status, secs) = match i % 4 {
                0 | 1 => ("1", (i * 3) as i64),
                2 => ("0", 7),
                _ => ("NULL", -1),
            };
            let secs_sql = if secs < 0 {
                "NULL".to_string()
            } else {
                secs.to_string()
            };
            rt.row(format!(
                "({id}, '{name}', 'Cron', '{}', {id}, {status}, {secs_sql}, 0, '{t0}', '{}')",
                datetime(last),
                datetime(last + 5)
            ));
            let l = [("task_type", "Cron"), ("name", *name)];
            inc(
                &mut ed,
                "otrs_recurrent_task_last_execution_timestamp_seconds",
                &l,
                last as f64,
            );
            let s = status.parse::<f64>().unwrap_or(-1.0);
            inc(&mut ed, "otrs_recurrent_task_last_success", &l, s);
            if secs >= 0 {
                inc(
                    &mut ed,
                    "otrs_recurrent_task_last_duration_seconds",
                    &l,
                    secs as f64,
                );
            }
        }
    }
    ds.expected.insert("daemon", ed);

    // Sessions: agents, customers and GenericInterface sessions, active or idle (never within
    // a minute of the idle limit, so the test cannot race it).
    let mut es = Expected::new();
    let nsess = (tickets / 20).clamp(6, 400) as i64;
    let mut stored: BTreeMap<&str, u64> = [("agent", 0), ("customer", 0)].into();
    let mut active = stored.clone();
    let mut users: BTreeMap<&str, std::collections::BTreeSet<String>> = BTreeMap::new();
    {
        let mut s = Inserts::new(
            &mut sql,
            "sessions",
            "session_id, data_key, data_value, serialized",
        );
        for i in 0..nsess {
            let sid = format!("s{i:06}");
            let (ut, kind) = if r.below(3) == 0 {
                ("Customer", "customer")
            } else {
                ("User", "agent")
            };
            let gi = r.below(10) == 0;
            let login = format!("{kind}{}", r.below(12));
            let is_active = r.below(3) != 0;
            let last = if is_active {
                now - r.below(7000) as i64
            } else {
                now - 7300 - r.below(20_000) as i64
            };
            for (k, v) in [
                ("UserType", ut.to_string()),
                ("UserLogin", login.clone()),
                ("UserLastRequest", last.to_string()),
                ("UserSessionStart", (last - 600).to_string()),
                ("UserFirstname", "Demo".to_string()),
            ] {
                s.row(format!("('{sid}', '{k}', '{v}', 0)"));
            }
            if gi {
                s.row(format!("('{sid}', 'SessionSource', 'GenericInterface', 0)"));
                continue;
            }
            *stored.get_mut(kind).expect("known kind") += 1;
            if is_active {
                *active.get_mut(kind).expect("known kind") += 1;
                users.entry(kind).or_default().insert(login);
            }
        }
    }
    for (kind, n) in &stored {
        inc(&mut es, "otrs_sessions", &[("user_type", kind)], *n as f64);
        inc(
            &mut es,
            "otrs_sessions_active",
            &[("user_type", kind)],
            active[kind] as f64,
        );
        inc(
            &mut es,
            "otrs_session_users_active",
            &[("user_type", kind)],
            users.get(kind).map(|u| u.len()).unwrap_or(0) as f64,
        );
    }
    ds.expected.insert("sessions", es);
    ds.sql = sql;
    ds
}

const ARTICLE_COLS: &str = "id, ticket_id, article_sender_type_id, communication_channel_id, \
     is_visible_for_customer, search_index_needs_rebuild, create_time, create_by, change_time, \
     change_by";

fn article_pick(r: &mut Rng) -> (usize, usize) {
    let sender = r.weighted(&[45, 10, 45]);
    let channel = r.weighted(&[60, 20, 19, 1]);
    (sender, channel)
}

fn article_row(r: &mut Rng, id: i64, ticket: i64, now: i64) -> String {
    let (sender, channel) = article_pick(r);
    let t = datetime(now - 3600 - r.below(90 * 86_400) as i64);
    format!(
        "({id}, {ticket}, {}, {}, 1, 0, '{t}', 1, '{t}', 1)",
        sender + 1,
        channel + 1
    )
}

/// `count` more articles (ids after `ds.max_article`) on random tickets of `ds`, and the
/// `otrs_articles_created_total` values they must add.
pub fn more_articles(ds: &DataSet, seed: u64, count: u64, now: i64) -> (Vec<String>, Expected) {
    let (queues, from_id, tickets) = (&ds.ticket_queues, ds.max_article, ds.max_ticket as u64);
    let mut r = Rng::new(seed ^ 0x5eed);
    let mut sql = Vec::new();
    let mut e = Expected::new();
    {
        let mut a = Inserts::new(&mut sql, "article", ARTICLE_COLS);
        for i in 0..count as i64 {
            let ticket = 1 + r.below(tickets) as i64;
            let mut pick = r.clone();
            let (sender, channel) = article_pick(&mut pick);
            a.row(article_row(&mut r, from_id + 1 + i, ticket, now));
            inc(
                &mut e,
                "otrs_articles_created_total",
                &[
                    ("queue", QUEUE_NAMES[queues[ticket as usize - 1]]),
                    ("sender_type", SENDERS[sender]),
                    ("channel", CHANNELS[channel]),
                ],
                1.0,
            );
        }
    }
    (sql, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes() {
        assert_eq!(datetime(0), "1970-01-01 00:00:00");
        assert_eq!(datetime(1_795_885_565), "2026-11-28 17:06:05");
        assert_eq!(datetime(951_782_400), "2000-02-29 00:00:00");
    }

    #[test]
    fn deterministic_and_split() {
        let a = generate(50, 7, 1_795_885_565);
        let b = generate(50, 7, 1_795_885_565);
        assert_eq!(a.sql, b.sql);
        let total: f64 = a.expected["tickets"]
            .iter()
            .filter(|(k, _)| k.starts_with("otrs_tickets{"))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(total, 50.0);
        assert_eq!(
            statements("-- c\nA;\nB\n  x;\n").len(),
            2,
            "comment skipped, multi-line statement joined"
        );
    }
}
