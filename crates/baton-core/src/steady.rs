//! What stays the same when a command is run again unchanged: its output with durations, clock
//! times, addresses, process ids and temporary names taken out. Re-running the same slow failing
//! test is the commonest loop, and its output differs only there.

use std::sync::LazyLock;

use regex::Regex;

/// Each pattern, and what stands in for what it matched.
static VOLATILE: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // 2026-12-02T04:17:21.123Z, 2026-12-02 04:17:21,5+01:00
        (r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?", "<time>"),
        (r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b", "<time>"),
        // 0.42s, 12 ms, 1.5 seconds, 3m
        (r"\b\d+(?:\.\d+)?\s?(?:ns|µs|us|ms|s|sec|secs|seconds?|m|min|mins|minutes?)\b", "<duration>"),
        (r"\b0x[0-9a-fA-F]{6,}\b", "<address>"),
        (r"(?i)\b(pid|process)([\s:=#]+)\d+", "$1$2<pid>"),
        (r"/tmp/[\w.+-]+", "/tmp/<temporary>"),
    ]
    .into_iter()
    .filter_map(|(pattern, replacement)| Regex::new(pattern).ok().map(|regex| (regex, replacement)))
    .collect()
});

/// `output` as it would read on any identical run.
pub fn steady(output: &str) -> String {
    VOLATILE
        .iter()
        .fold(output.to_owned(), |text, (regex, replacement)| regex.replace_all(&text, *replacement).into_owned())
}

#[cfg(test)]
mod tests {
    use super::steady;

    #[test]
    fn two_runs_that_differ_only_in_timing_read_the_same_and_different_failures_do_not() {
        let one = "exit code 1 in 2.3 s\nFAILED test_add in 0.073s at 2026-12-02T04:17:21Z (pid 4121, /tmp/tmpab12x)\n<object at 0x7f3a2b1c9d40>";
        let two = "exit code 1 in 2.9 s\nFAILED test_add in 0.081s at 2026-12-02T04:18:02Z (pid 4388, /tmp/tmpq9z0k)\n<object at 0x7f3a2b1c0e10>";
        assert_eq!(steady(one), steady(two));
        assert!(
            steady(one).contains("FAILED test_add in <duration> at <time> (pid <pid>, /tmp/<temporary>)"),
            "{}",
            steady(one)
        );
        let other = "exit code 1 in 2.3 s\nFAILED test_sub in 0.073s";
        assert_ne!(steady(one), steady(other));
        // Numbers that are not times stay: an assertion's values are the failure.
        assert_ne!(steady("assert 5 == 4"), steady("assert 5 == 6"));
        assert_eq!(steady("ran 3 tests"), "ran 3 tests");
    }
}
