//! Deploys: the set of custom metrics every exporter process serves.
//!
//! A deploy records the enabled definitions as JSON in `otrs_exporter_custom_deploy` and
//! publishes the same [`Deployment`] to the shared segment (cache key [`SLOT`]), which is what
//! the `custom` collector of every process reads. Edits after a deploy therefore change
//! nothing in scrapes until the next deploy. When the segment has no deployment (cleared,
//! recreated, another node), the collector loads the latest one from the database.

use serde::{Deserialize, Serialize};

use super::Definition;
use crate::db::{Db, DbError, Driver};
use crate::segment::{Segment, SegmentError};

/// Cache key of the published deployment in the segment.
pub const SLOT: &str = "custom:deployment";

/// One deploy: who published which definitions when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Deployment {
    /// Row id in `otrs_exporter_custom_deploy` (0 = nothing was ever deployed).
    pub id: i64,
    /// Database time of the deploy, `YYYY-MM-DD HH:MM:SS`.
    pub deployed_at: String,
    /// The user who deployed.
    pub deployed_by: String,
    /// The enabled definitions at deploy time.
    pub metrics: Vec<Definition>,
}

impl Deployment {
    /// From a row of `otrs_exporter_custom_deploy`.
    pub fn from_row(id: i64, at: String, by: String, json: &str) -> Result<Deployment, String> {
        let metrics = serde_json::from_str(json)
            .map_err(|e| format!("deploy {id}: stored definitions are not readable: {e}"))?;
        Ok(Deployment {
            id,
            deployed_at: at,
            deployed_by: by,
            metrics,
        })
    }

    /// Publishes this deployment to every exporter process using `seg`.
    pub fn publish(&self, seg: &Segment) -> Result<(), SegmentError> {
        let bytes = serde_json::to_vec(self).map_err(|e| SegmentError::Invalid(e.to_string()))?;
        seg.cache_slot(SLOT)?.put(&bytes)
    }

    /// The deployment published in `seg` and the seconds since it was stored or confirmed,
    /// if any.
    pub fn published(seg: &Segment) -> Result<Option<(Deployment, f64)>, SegmentError> {
        let Some(c) = seg.cache_slot(SLOT)?.get()? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&c.bytes).ok().map(|d| (d, c.age())))
    }
}

/// The query for the newest deploy: id (as text), time, user, definitions.
pub fn latest_sql(driver: Driver) -> String {
    let (id, at) = match driver {
        Driver::Postgres => (
            "CAST(id AS VARCHAR)",
            "to_char(deploy_time, 'YYYY-MM-DD HH24:MI:SS')",
        ),
        Driver::Mysql => (
            "CAST(id AS CHAR)",
            "DATE_FORMAT(deploy_time, '%Y-%m-%d %H:%i:%s')",
        ),
    };
    format!(
        "SELECT {id}, {at}, deploy_by, definitions FROM otrs_exporter_custom_deploy \
         ORDER BY id DESC LIMIT 1"
    )
}

/// The newest deploy read on the collectors' read-only connection. No table (db-init never
/// ran) means nothing deployed.
pub fn latest_read_only(db: &mut dyn Db) -> Result<Deployment, DbError> {
    match db.query(&latest_sql(db.driver())) {
        Ok(rows) => match rows.first() {
            None => Ok(Deployment::default()),
            Some(r) => {
                let t = |i: usize| r.get(i).map(|c| c.text()).unwrap_or_default();
                Deployment::from_row(t(0).parse().unwrap_or(0), t(1), t(2), &t(3)).map_err(DbError)
            }
        },
        Err(e) if is_missing_table(&e) => Ok(Deployment::default()),
        Err(e) => Err(e),
    }
}

/// The newest deploy id (cheap check whether another node deployed).
pub fn latest_id_read_only(db: &mut dyn Db) -> Result<i64, DbError> {
    match db.query("SELECT MAX(id) FROM otrs_exporter_custom_deploy") {
        Ok(rows) => Ok(rows
            .first()
            .and_then(|r| r.first())
            .and_then(|c| c.int())
            .unwrap_or(0)),
        Err(e) if is_missing_table(&e) => Ok(0),
        Err(e) => Err(e),
    }
}

fn is_missing_table(e: &DbError) -> bool {
    let m = e.0.to_ascii_lowercase();
    m.contains("otrs_exporter_custom_deploy")
        && (m.contains("does not exist") || m.contains("doesn't exist"))
}
