//! What a task has seen: the lines of the files it read and the outputs of its other tools. A leg
//! is judged by whether it saw anything earlier legs had not: reading on through a large module is
//! exploration, reading the same ranges again is a loop.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::steady::steady;

/// Lines `first..=last` of a file (workspace-relative) that a tool showed; `last < first` for none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SpanWire")]
pub struct Span {
    pub path: String,
    pub first: u64,
    pub last: u64,
}

/// Journals written before spans named only the file.
#[derive(Deserialize)]
#[serde(untagged)]
enum SpanWire {
    Lines { path: String, first: u64, last: u64 },
    File(String),
}

impl From<SpanWire> for Span {
    fn from(wire: SpanWire) -> Span {
        match wire {
            SpanWire::Lines { path, first, last } => Span { path, first, last },
            SpanWire::File(path) => Span { path, first: 1, last: 0 },
        }
    }
}

/// The hash of `output` as any identical run would print it (see [`steady`]): computed once, when
/// the result is journaled, so replaying a journal never normalises an output again.
pub fn digest(output: &str) -> u64 {
    crate::stable_hash(&[steady(output).as_bytes()])
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Per file, the line ranges seen, sorted and disjoint.
    lines: BTreeMap<String, Vec<(u64, u64)>>,
    /// Digests of other tools' outputs.
    outputs: BTreeSet<u64>,
}

impl Coverage {
    /// Records `span` as seen; whether any of its lines was new.
    pub fn read(&mut self, span: &Span) -> bool {
        if span.last < span.first {
            return false;
        }
        let ranges = self.lines.entry(span.path.clone()).or_default();
        let mut new = span.last - span.first + 1;
        let (mut first, mut last) = (span.first, span.last);
        let mut merged = Vec::with_capacity(ranges.len() + 1);
        // Ranges that overlap or touch the span join it; the others stay as they are.
        for &(a, b) in ranges.iter() {
            if b.saturating_add(1) < span.first || a > span.last.saturating_add(1) {
                merged.push((a, b));
                continue;
            }
            let (from, to) = (a.max(span.first), b.min(span.last));
            if from <= to {
                new -= to - from + 1;
            }
            (first, last) = (first.min(a), last.max(b));
        }
        merged.push((first, last));
        merged.sort_unstable();
        *ranges = merged;
        new > 0
    }

    /// Records an output by its digest; whether it was new.
    pub fn output(&mut self, digest: u64) -> bool {
        self.outputs.insert(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::{Coverage, Span, digest};

    fn span(first: u64, last: u64) -> Span {
        Span { path: "big.py".into(), first, last }
    }

    #[test]
    fn a_read_is_new_while_any_of_its_lines_is() {
        let mut coverage = Coverage::default();
        assert!(coverage.read(&span(1, 100)));
        assert!(coverage.read(&span(101, 200)), "the next page");
        assert!(!coverage.read(&span(1, 200)), "both pages again");
        assert!(!coverage.read(&span(50, 150)));
        assert!(coverage.read(&span(150, 201)), "one line further");
        assert!(coverage.read(&span(400, 420)));
        assert!(!coverage.read(&span(405, 410)));
        assert!(coverage.read(&span(202, 399)), "the gap between");
        assert!(!coverage.read(&span(1, 420)));
        assert_eq!(coverage.lines["big.py"], [(1, 420)]);
        assert!(coverage.read(&Span { path: "other.py".into(), first: 1, last: 100 }), "another file");
        assert!(!coverage.read(&span(1, 0)), "an empty file shows nothing");
    }

    #[test]
    fn an_output_is_new_unless_an_identical_run_printed_it() {
        let mut coverage = Coverage::default();
        assert!(coverage.output(digest("FAILED test_add in 0.07s")));
        assert!(!coverage.output(digest("FAILED test_add in 0.09s")));
        assert!(coverage.output(digest("FAILED test_sub in 0.07s")));
    }

    #[test]
    fn spans_round_trip_and_old_journals_name_only_the_file() {
        let json = serde_json::to_string(&span(3, 9)).unwrap();
        assert_eq!(serde_json::from_str::<Span>(&json).unwrap(), span(3, 9));
        assert_eq!(serde_json::from_str::<Span>("\"big.py\"").unwrap(), span(1, 0));
    }
}
