//! The `tickets` DB collector: tickets by queue and state, open tickets by lock and priority,
//! escalated open tickets.
//!
//! Works on OTRS 6, Znuny 6.5/7 and OTOBO 10/11 (tables `ticket`, `queue`, `ticket_state`,
//! `ticket_state_type`, `ticket_lock_type`, `ticket_priority`, unchanged since OTRS 6).
//!
//! Cost: [`BY_STATE`] reads every ticket (grouping by two columns no single index covers; on
//! PostgreSQL a sequential scan, ~0.1 s per million tickets), hence the cache. [`OPEN`] uses
//! the `ticket_queue_view` (ticket_state_id, ticket_lock_id) index and [`ESCALATED`] the
//! `ticket_escalation_time` index; lookups read the small lookup tables.

use std::collections::HashMap;

use super::db::{db_now, id_names, rows, DbQuery, Refreshed};
use crate::db::{Db, DbError, DbSettings};
use crate::snapshot::{Family, MetricKind};

/// Ticket counts by queue and state.
pub const BY_STATE: &str =
    "SELECT queue_id, ticket_state_id, COUNT(*) FROM ticket GROUP BY queue_id, ticket_state_id";
/// States with their type name.
pub const STATES: &str = "SELECT s.id, s.name, t.name FROM ticket_state s \
     JOIN ticket_state_type t ON t.id = s.type_id";
/// Open tickets (`{open}` = ids of states of the viewable types) by queue, lock, priority.
pub const OPEN: &str = "SELECT queue_id, ticket_lock_id, ticket_priority_id, COUNT(*) FROM ticket \
     WHERE ticket_state_id IN ({open}) GROUP BY queue_id, ticket_lock_id, ticket_priority_id";
/// Open tickets past their earliest escalation time, with the kinds passed.
pub const ESCALATED: &str = "SELECT queue_id, COUNT(*), \
     SUM(CASE WHEN escalation_response_time > 0 AND escalation_response_time < {now} THEN 1 ELSE 0 END), \
     SUM(CASE WHEN escalation_update_time > 0 AND escalation_update_time < {now} THEN 1 ELSE 0 END), \
     SUM(CASE WHEN escalation_solution_time > 0 AND escalation_solution_time < {now} THEN 1 ELSE 0 END) \
     FROM ticket WHERE escalation_time > 0 AND escalation_time < {now} \
     AND ticket_state_id IN ({open}) GROUP BY queue_id";

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
        let mut open_ids: Vec<i64> = states
            .iter()
            .filter(|(_, (_, t))| OPEN_STATE_TYPES.contains(&t.as_str()))
            .map(|(id, _)| *id)
            .collect();
        open_ids.sort_unstable();
        let open = if open_ids.is_empty() {
            "-1".to_string()
        } else {
            open_ids
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };

        let mut by_state = Family::new(
            "otrs_tickets",
            "Tickets by queue, state and state type (all tickets, archived included).",
            MetricKind::Gauge,
        );
        for r in db.query(BY_STATE)? {
            let (state, stype) = states
                .get(&rows::i(&r, 1))
                .cloned()
                .unwrap_or_else(|| (rows::s(&r, 1), String::new()));
            by_state.push(
                &[
                    ("queue", &name(&queues, rows::i(&r, 0))),
                    ("state", &state),
                    ("state_type", &stype),
                ],
                rows::i(&r, 2) as f64,
            );
        }
        let mut open_f = Family::new(
            "otrs_tickets_open",
            "Open tickets (state types new, open, pending reminder, pending auto) by queue, lock \
             and priority.",
            MetricKind::Gauge,
        );
        for r in db.query(&OPEN.replace("{open}", &open))? {
            open_f.push(
                &[
                    ("queue", &name(&queues, rows::i(&r, 0))),
                    ("lock", &name(&locks, rows::i(&r, 1))),
                    ("priority", &name(&prios, rows::i(&r, 2))),
                ],
                rows::i(&r, 3) as f64,
            );
        }
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
        let mut per_queue: HashMap<i64, [i64; 4]> = queues.keys().map(|q| (*q, [0; 4])).collect();
        let sql = ESCALATED
            .replace("{now}", &now.to_string())
            .replace("{open}", &open);
        for r in db.query(&sql)? {
            let e = per_queue.entry(rows::i(&r, 0)).or_default();
            for (k, v) in e.iter_mut().enumerate() {
                *v += rows::i(&r, k + 1);
            }
        }
        let mut ids: Vec<_> = per_queue.keys().copied().collect();
        ids.sort_unstable();
        for q in ids {
            let v = per_queue[&q];
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
