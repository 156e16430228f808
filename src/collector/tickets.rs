//! The `tickets` DB collector: tickets by queue and state, open tickets by lock and priority,
//! escalated open tickets.
//!
//! Works on OTRS 6, Znuny 6.5/7 and OTOBO 10/11 (tables `ticket`, `queue`, `ticket_state`,
//! `ticket_state_type`, `ticket_lock_type`, `ticket_priority`, unchanged since OTRS 6).
//!
//! Cost: [`ALL`] reads every ticket once (no index groups by queue and state; a sequential
//! scan, ~0.3 s per million tickets on PostgreSQL), hence the cache. An earlier version also
//! queried open tickets through the `ticket_queue_view` index and escalations through
//! `ticket_escalation_time`: on MariaDB the per-row lookups of that index path (half the
//! tickets are open) took 8 s for a million tickets, far more than one more scan. The lookup
//! tables are small.

use std::collections::{BTreeMap, HashMap};

use super::db::{db_now, id_names, rows, DbQuery, Refreshed};
use crate::db::{Db, DbError, DbSettings};
use crate::snapshot::{Family, MetricKind};

/// Tables this collector reads (`selftest` checks the SELECT grant on each).
pub const TABLES: &[&str] = &[
    "ticket",
    "ticket_state",
    "ticket_state_type",
    "queue",
    "ticket_priority",
    "ticket_lock_type",
];

/// Every ticket counted once, by queue, state, lock and priority, with how many are past each
/// escalation time: one pass over `ticket` gives all three families (no index lookups per
/// row, which on MariaDB cost more than the scan itself).
pub const ALL: &str = "SELECT queue_id, ticket_state_id, ticket_lock_id, ticket_priority_id, COUNT(*), \
     SUM(CASE WHEN escalation_time > 0 AND escalation_time < {now} THEN 1 ELSE 0 END), \
     SUM(CASE WHEN escalation_response_time > 0 AND escalation_response_time < {now} THEN 1 ELSE 0 END), \
     SUM(CASE WHEN escalation_update_time > 0 AND escalation_update_time < {now} THEN 1 ELSE 0 END), \
     SUM(CASE WHEN escalation_solution_time > 0 AND escalation_solution_time < {now} THEN 1 ELSE 0 END) \
     FROM ticket GROUP BY queue_id, ticket_state_id, ticket_lock_id, ticket_priority_id";
/// States with their type name.
pub const STATES: &str = "SELECT s.id, s.name, t.name FROM ticket_state s \
     JOIN ticket_state_type t ON t.id = s.type_id";

/// State types OTRS shows as open (`Ticket::ViewableStateType`).
pub const OPEN_STATE_TYPES: [&str; 4] = ["new", "open", "pending reminder", "pending auto"];

/// The `tickets` queries.
pub struct Tickets;

impl DbQuery for Tickets {
    fn name(&self) -> &'static str {
        "tickets"
    }

    fn refresh(
        &self,
        db: &mut dyn Db,
        _: &DbSettings,
        _: Option<serde_json::Value>,
    ) -> Result<Refreshed, DbError> {
        let now = db_now(db)?;
        let queues = id_names(db, "SELECT id, name FROM queue")?;
        let locks = id_names(db, "SELECT id, name FROM ticket_lock_type")?;
        let prios = id_names(db, "SELECT id, name FROM ticket_priority")?;
        let states: HashMap<i64, (String, String)> = db
            .query(STATES)?
            .iter()
            .map(|r| (rows::i(r, 0), (rows::s(r, 1), rows::s(r, 2))))
            .collect();
        let name = |m: &HashMap<i64, String>, id: i64| {
            m.get(&id).cloned().unwrap_or_else(|| id.to_string())
        };
        let mut by_state = Family::new(
            "otrs_tickets",
            "Tickets by queue, state and state type (all tickets, archived included).",
            MetricKind::Gauge,
        );
        let mut open_f = Family::new(
            "otrs_tickets_open",
            "Open tickets (state types new, open, pending reminder, pending auto) by queue, lock \
             and priority.",
            MetricKind::Gauge,
        );
        let mut esc = Family::new(
            "otrs_tickets_escalated",
            "Open tickets whose earliest escalation time has passed, by queue (0 = none).",
            MetricKind::Gauge,
        );
        let mut kinds = Family::new(
            "otrs_ticket_escalations",
            "Open tickets past their first response, update or solution escalation time, by \
             queue and kind.",
            MetricKind::Gauge,
        );
        let mut states_n: BTreeMap<(i64, i64), i64> = BTreeMap::new();
        let mut open_n: BTreeMap<(i64, i64, i64), i64> = BTreeMap::new();
        let mut per_queue: BTreeMap<i64, [i64; 4]> = queues.keys().map(|q| (*q, [0; 4])).collect();
        for r in db.query(&ALL.replace("{now}", &now.to_string()))? {
            let (q, st, lock, prio, n) = (
                rows::i(&r, 0),
                rows::i(&r, 1),
                rows::i(&r, 2),
                rows::i(&r, 3),
                rows::i(&r, 4),
            );
            *states_n.entry((q, st)).or_default() += n;
            let open = states
                .get(&st)
                .is_some_and(|(_, t)| OPEN_STATE_TYPES.contains(&t.as_str()));
            if open {
                *open_n.entry((q, lock, prio)).or_default() += n;
                let e = per_queue.entry(q).or_default();
                for (k, v) in e.iter_mut().enumerate() {
                    *v += rows::i(&r, k + 5);
                }
            }
        }
        for ((q, st), n) in states_n {
            let (state, stype) = states
                .get(&st)
                .cloned()
                .unwrap_or_else(|| (st.to_string(), String::new()));
            by_state.push(
                &[
                    ("queue", &name(&queues, q)),
                    ("state", &state),
                    ("state_type", &stype),
                ],
                n as f64,
            );
        }
        for ((q, lock, prio), n) in open_n {
            open_f.push(
                &[
                    ("queue", &name(&queues, q)),
                    ("lock", &name(&locks, lock)),
                    ("priority", &name(&prios, prio)),
                ],
                n as f64,
            );
        }
        for (q, v) in per_queue {
            let qn = name(&queues, q);
            esc.push(&[("queue", &qn)], v[0] as f64);
            for (i, kind) in ["first_response", "update", "solution"].iter().enumerate() {
                kinds.push(&[("queue", &qn), ("kind", kind)], v[i + 1] as f64);
            }
        }
        Ok(Refreshed {
            families: vec![by_state, open_f, esc, kinds],
            state: None,
        })
    }
}
