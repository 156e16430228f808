//! Times the DB collectors against a large database (see `bench/db.sh`): cold refresh,
//! cached scrape, and the seed's naive queries, printed as a table with ratios.
//!
//! `cargo run --release --example db_bench -- postgresql|mysql DBNAME`

use std::sync::Arc;
use std::time::{Duration, Instant};

use otrs_exporter::collector::db::{DbCollector, DbQuery};
use otrs_exporter::collector::segment::SegmentSource;
use otrs_exporter::collector::{articles, daemon, mail, sessions, tickets, Collector, Context};
use otrs_exporter::config::Config;
use otrs_exporter::db::DbHandle;
use otrs_exporter::segment::SegmentOptions;

/// Builds one collector's queries.
type MakeQuery = dyn Fn() -> Box<dyn DbQuery>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let driver = args.get(1).map(String::as_str).unwrap_or("postgresql");
    let name = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "otrsexp_bench".into());
    let mut c = Config {
        otrs_home: "/nonexistent".into(),
        ..Default::default()
    };
    c.db.driver = driver.into();
    c.db.host = "127.0.0.1".into();
    c.db.name = name;
    c.db.user = if driver == "postgresql" {
        "postgres"
    } else {
        "root"
    }
    .into();
    c.db.statement_timeout_seconds = 120.0;
    let s = otrs_exporter::db::settings::resolve_with(&c, None).unwrap();
    let h = Arc::new(DbHandle::new(Ok(s.clone())));
    let far = || Instant::now() + Duration::from_secs(300);
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64()
    };
    println!("| {driver} | cold refresh (s) | cached scrape (ms) | naive seed query (s) | naive / cold |");
    println!("|---|---|---|---|---|");
    let dir = tempfile::tempdir().unwrap();
    let source = SegmentSource::new(SegmentOptions::new(dir.path().join("seg")));
    let queries: Vec<(&str, Box<MakeQuery>)> = vec![
        ("tickets", Box::new(|| Box::new(tickets::Tickets))),
        ("articles", Box::new(|| Box::new(articles::Articles))),
        ("mail", Box::new(|| Box::new(mail::Mail))),
        ("daemon", Box::new(|| Box::new(daemon::Daemon))),
        ("sessions", Box::new(|| Box::new(sessions::Sessions))),
    ];
    for (name, make) in queries {
        let q = make();
        let mut state = None;
        if name == "articles" {
            // Steady state: 10,000 new articles since the previous refresh.
            let max = h.run(far(), |db| db.query(articles::MAX_ID)).unwrap()[0][0]
                .int()
                .unwrap();
            state = Some(
                serde_json::json!({"counted_to": max - 10_000, "seen_max": max,
                "created": 0.0, "counts": {}}),
            );
        }
        let cold = time(&mut || {
            h.run(far(), |db| q.refresh(db, &s, state.clone())).unwrap();
        });
        struct Boxed(Box<dyn DbQuery>);
        impl DbQuery for Boxed {
            fn name(&self) -> &'static str {
                self.0.name()
            }
            fn refresh(
                &self,
                db: &mut dyn otrs_exporter::db::Db,
                s: &otrs_exporter::db::DbSettings,
                st: Option<serde_json::Value>,
            ) -> Result<otrs_exporter::collector::db::Refreshed, otrs_exporter::db::DbError>
            {
                self.0.refresh(db, s, st)
            }
        }
        let coll = DbCollector::new(
            Boxed(make()),
            h.clone(),
            source.clone(),
            Duration::from_secs(3600),
        );
        let ctx = Context::new(far());
        coll.collect(&ctx).unwrap();
        let n = 200;
        let cached = time(&mut || {
            for _ in 0..n {
                coll.collect(&ctx).unwrap();
            }
        }) / n as f64
            * 1000.0;
        let naive: Option<f64> = match name {
            // The seed: one GROUP BY join, like RYDLAB's cron, and per-queue/per-state COUNT(*).
            "tickets" => Some(time(&mut || {
                h.run(far(), |db| {
                    db.query("SELECT queue.name, ticket_state.name, count(*) FROM ticket \
                              JOIN queue ON queue.id = ticket.queue_id \
                              JOIN ticket_state ON ticket_state.id = ticket.ticket_state_id \
                              GROUP BY queue.name, ticket_state.name")?;
                    let qs = db.query("SELECT id FROM queue")?;
                    let ss = db.query("SELECT id FROM ticket_state")?;
                    for q in &qs {
                        for st in &ss {
                            db.query(&format!(
                                "SELECT COUNT(*) FROM ticket WHERE queue_id = {} AND ticket_state_id = {}",
                                q[0].text(),
                                st[0].text()
                            ))?;
                        }
                    }
                    Ok(())
                })
                .unwrap();
            })),
            "articles" => Some(time(&mut || {
                h.run(far(), |db| {
                    db.query(
                        "SELECT queue.name, ticket_state.name, count(*) FROM article \
                              JOIN ticket ON ticket.id = article.ticket_id \
                              JOIN queue ON queue.id = ticket.queue_id \
                              JOIN ticket_state ON ticket_state.id = ticket.ticket_state_id \
                              GROUP BY queue.name, ticket_state.name",
                    )
                })
                .unwrap();
            })),
            _ => None,
        };
        match naive {
            Some(nv) => println!(
                "| {name} | {cold:.3} | {cached:.3} | {nv:.3} | {:.1}x |",
                nv / cold
            ),
            None => println!("| {name} | {cold:.3} | {cached:.3} | - | - |"),
        }
    }
}
