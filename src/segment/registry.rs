//! Label-value registries: a cap on the number of distinct values a label may take, shared by
//! every process (so unknown or hostile input can never create unbounded series).

use std::sync::atomic::Ordering;

use super::family::FamilyDef;
use super::index::{encode_labels, key_hash};
use super::layout::*;
use super::{now_unix, Segment, SegmentError};

fn values_family() -> FamilyDef {
    FamilyDef::internal(
        "otrs_exporter_internal_label_values",
        "Admitted label values (internal).",
    )
}

fn counts_family() -> FamilyDef {
    FamilyDef::internal(
        "otrs_exporter_internal_label_value_counts",
        "Number of admitted values per capped label (internal).",
    )
}

impl Segment {
    /// Whether `value` may be used for the capped label `label`: true if it was admitted
    /// before, or if fewer than `cap` values have been admitted so far (then it is admitted
    /// now). The check and the admission happen under the semaphore, so the cap holds across
    /// processes.
    pub fn admit_label_value(
        &self,
        label: &str,
        value: &str,
        cap: u64,
    ) -> Result<bool, SegmentError> {
        let values = self.family(&values_family())?;
        let counts = self.family(&counts_family())?;
        let mut key = Vec::new();
        encode_labels(&[("l", label), ("v", value)], None, &mut key)?;
        let hash = key_hash(values.index, WORKER_NONE, &key);
        let mut scratch = Vec::new();
        let known =
            self.with_seq(|| self.lookup(values.index, WORKER_NONE, &key, hash, &mut scratch))?;
        if known.is_some() {
            return Ok(true);
        }
        let locked = self.lock()?;
        if self
            .lookup(values.index, WORKER_NONE, &key, hash, &mut scratch)?
            .is_some()
        {
            return Ok(true);
        }
        let mut count_key = Vec::new();
        encode_labels(&[("l", label)], None, &mut count_key)?;
        let counter = locked.find_or_insert(&counts, WORKER_NONE, &count_key, now_unix())?;
        let cell = self.map().u64(counter + E_VALUES)?;
        let admitted = cell.load(Ordering::Acquire);
        if admitted >= cap {
            return Ok(false);
        }
        locked.find_or_insert(&values, WORKER_NONE, &key, now_unix())?;
        cell.store(admitted + 1, Ordering::Release);
        Ok(true)
    }
}
