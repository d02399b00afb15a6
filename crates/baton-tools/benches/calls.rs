//! The cost of a `read_file` and an `edit_file` call against doing the same with plain `std::fs`.
//!
//! `cargo bench -p baton-tools --bench calls`

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark code: a panic is the failure report

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use baton_tools::{Toolbox, Workspace};

const RUNS: usize = 1000;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time(mut run: impl FnMut(usize)) -> Duration {
    median(
        (0..RUNS)
            .map(|i| {
                let start = Instant::now();
                run(i);
                start.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("src/lib.rs");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    // A 1,000-line source file, the size agents read most.
    let text: String = (0..1000).map(|i| format!("    let value_{i} = compute({i}); // line {i}\n")).collect();
    std::fs::write(&file, &text).unwrap();
    let tools = Toolbox::new(Workspace::open(dir.path()).unwrap());

    let read_baseline = time(|_| {
        // What a naive tool does: read the file and number its lines.
        let text = std::fs::read_to_string(&file).unwrap();
        let mut out = String::with_capacity(text.len() + 8000);
        for (n, line) in text.lines().enumerate() {
            let _ = writeln!(out, "{:>6}\t{line}", n + 1);
        }
        assert!(out.len() > text.len());
    });
    let read_tool = time(|_| assert!(!tools.call("read_file", r#"{"path": "src/lib.rs"}"#).is_error));

    let edit_baseline = time(|i| {
        let text = std::fs::read_to_string(&file).unwrap();
        let edited = text.replacen(&format!("compute({})", i % 1000), &format!("compute({} + 0)", i % 1000), 1);
        std::fs::write(&file, edited).unwrap();
    });
    std::fs::write(&file, &text).unwrap();
    let edit_tool = time(|i| {
        let arguments = serde_json::json!({"path": "src/lib.rs", "old": format!("compute({});", i % 1000), "new": format!("compute({} + 0);", i % 1000)});
        assert!(!tools.call("edit_file", &arguments.to_string()).is_error);
    });

    for (name, tool, baseline) in [("read_file", read_tool, read_baseline), ("edit_file", edit_tool, edit_baseline)] {
        println!(
            "{name:<10} tool {:7.1} µs  std::fs {:7.1} µs  ratio {:4.2}x",
            tool.as_secs_f64() * 1e6,
            baseline.as_secs_f64() * 1e6,
            tool.as_secs_f64() / baseline.as_secs_f64()
        );
    }
}
