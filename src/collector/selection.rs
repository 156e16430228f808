//! `collect[]` / `exclude[]` query parameters, with node_exporter's semantics.

use std::collections::BTreeSet;

/// Which collectors a scrape runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Selection {
    /// Every enabled collector.
    #[default]
    All,
    /// Only these.
    Only(BTreeSet<String>),
    /// All but these.
    Except(BTreeSet<String>),
}

impl Selection {
    /// Reads `collect[]` and `exclude[]` from an URL query string (form-encoded, so
    /// `collect%5B%5D=segment` works too). Unknown collector names and mixing both parameters
    /// are errors, as in node_exporter, so a typo in a scrape config is noticed at once.
    pub fn from_query(query: &str, known: &[&str]) -> Result<Selection, String> {
        let mut collect = BTreeSet::new();
        let mut exclude = BTreeSet::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let set = match k.as_ref() {
                "collect[]" => &mut collect,
                "exclude[]" => &mut exclude,
                _ => continue,
            };
            if !known.contains(&v.as_ref()) {
                return Err(format!(
                    "unknown collector {:?}; known collectors: {}",
                    v,
                    known.join(", ")
                ));
            }
            set.insert(v.into_owned());
        }
        match (collect.is_empty(), exclude.is_empty()) {
            (true, true) => Ok(Selection::All),
            (false, true) => Ok(Selection::Only(collect)),
            (true, false) => Ok(Selection::Except(exclude)),
            (false, false) => Err("collect[] and exclude[] cannot be combined".into()),
        }
    }

    /// Whether the collector `name` runs.
    pub fn includes(&self, name: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::Only(s) => s.contains(name),
            Selection::Except(s) => !s.contains(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["segment", "exporter", "tickets"];

    #[test]
    fn parses_like_node_exporter() {
        assert_eq!(Selection::from_query("", KNOWN), Ok(Selection::All));
        let s =
            Selection::from_query("collect%5B%5D=segment&collect[]=tickets&x=1", KNOWN).unwrap();
        assert!(s.includes("segment") && s.includes("tickets") && !s.includes("exporter"));
        let s = Selection::from_query("exclude[]=tickets", KNOWN).unwrap();
        assert!(s.includes("segment") && !s.includes("tickets"));
        assert!(Selection::from_query("collect[]=nope", KNOWN)
            .unwrap_err()
            .contains("known collectors: segment, exporter, tickets"));
        assert!(Selection::from_query("collect[]=segment&exclude[]=tickets", KNOWN).is_err());
    }
}
