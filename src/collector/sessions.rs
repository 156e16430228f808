//! The `sessions` DB collector: agent and customer sessions.
//!
//! Works on OTRS 6, Znuny 6.5/7 and OTOBO 10/11 with the default `SessionModule`
//! `Kernel::System::AuthSession::DB` (table `sessions`, one row per session and key). Reads
//! only the keys it needs through the `sessions_data_key` index. A session counts as active
//! like OTRS' own GetActiveSessions: `UserLastRequest + SessionMaxIdleTime >= now` (idle time
//! from Config.pm, default 7200 s); sessions created by the GenericInterface
//! (`SessionSource`) are left out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::db::{db_now, rows, DbQuery, Refreshed};
use crate::db::{Db, DbError, DbSettings};
use crate::snapshot::{Family, MetricKind};

/// Tables this collector reads (`selftest` checks the SELECT grant on each).
pub const TABLES: &[&str] = &["sessions"];

/// The session keys the collector reads.
pub const KEYS: &str = "SELECT session_id, data_key, data_value FROM sessions \
     WHERE data_key IN ('UserType', 'UserLastRequest', 'UserLogin', 'SessionSource')";

/// The `sessions` query.
pub struct Sessions;

#[derive(Default)]
struct One {
    user_type: String,
    last: Option<i64>,
    login: String,
    source: String,
}

impl DbQuery for Sessions {
    fn name(&self) -> &'static str {
        "sessions"
    }

    fn refresh(
        &self,
        db: &mut dyn Db,
        s: &DbSettings,
        _: Option<serde_json::Value>,
    ) -> Result<Refreshed, DbError> {
        if !s.session_module.ends_with("AuthSession::DB") {
            return Err(DbError(format!(
                "SessionModule is {} ({}); only Kernel::System::AuthSession::DB keeps sessions \
                 in the database; remove \"sessions\" from db.enabled",
                s.session_module, s.origin
            )));
        }
        let now = db_now(db)?;
        let mut by_id: HashMap<String, One> = HashMap::new();
        for r in db.query(KEYS)? {
            let one = by_id.entry(rows::s(&r, 0)).or_default();
            let v = rows::s(&r, 2);
            match rows::s(&r, 1).as_str() {
                "UserType" => one.user_type = v,
                "UserLastRequest" => one.last = v.trim().parse().ok(),
                "UserLogin" => one.login = v,
                "SessionSource" => one.source = v,
                _ => {}
            }
        }
        let mut stored: BTreeMap<String, u64> =
            ["agent", "customer"].map(|k| (k.to_string(), 0)).into();
        let mut active = stored.clone();
        let mut users: BTreeMap<String, BTreeSet<String>> = ["agent", "customer"]
            .map(|k| (k.to_string(), BTreeSet::new()))
            .into();
        for one in by_id.values() {
            if one.source == "GenericInterface" {
                continue;
            }
            let t = match one.user_type.as_str() {
                "User" => "agent".to_string(),
                "Customer" => "customer".to_string(),
                "" => continue,
                other => other.to_ascii_lowercase(),
            };
            *stored.entry(t.clone()).or_default() += 1;
            if one
                .last
                .is_some_and(|l| l + s.session_max_idle_time as i64 >= now)
            {
                *active.entry(t.clone()).or_default() += 1;
                users.entry(t).or_default().insert(one.login.clone());
            }
        }
        let mut f_stored = Family::new(
            "otrs_sessions",
            "Sessions stored (not yet deleted, idle ones included), by user type; \
             GenericInterface sessions excluded.",
            MetricKind::Gauge,
        );
        let mut f_active = Family::new(
            "otrs_sessions_active",
            "Sessions with a request within SessionMaxIdleTime, by user type (agent, customer); \
             GenericInterface sessions excluded.",
            MetricKind::Gauge,
        );
        let mut f_users = Family::new(
            "otrs_session_users_active",
            "Distinct logins with an active session, by user type.",
            MetricKind::Gauge,
        );
        for (t, n) in &stored {
            f_stored.push(&[("user_type", t)], *n as f64);
            f_active.push(
                &[("user_type", t)],
                active.get(t).copied().unwrap_or(0) as f64,
            );
            f_users.push(
                &[("user_type", t)],
                users.get(t).map(|u| u.len()).unwrap_or(0) as f64,
            );
        }
        Ok(Refreshed {
            families: vec![f_stored, f_active, f_users],
            state: None,
        })
    }
}
