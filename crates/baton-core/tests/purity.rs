//! Guards invariant 6: the core is pure. It may not depend on anything that does IO, and its source
//! may not reach for the clock, the filesystem, processes, the network or randomness.

use std::fs;
use std::path::Path;

// regex: matching commands against the approval policy; toml: reading a repository's declared
// environment from text; sha2: the environment's hash. None does IO.
const ALLOWED_DEPENDENCIES: &[&str] = &["regex", "serde", "sha2", "thiserror", "toml"];
const FORBIDDEN: &[&str] = &[
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "std::thread",
    "SystemTime",
    "Instant",
    "tokio",
    "rand::",
    "getrandom",
];

#[test]
fn core_depends_on_nothing_that_does_io() {
    let manifest = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap_or_default();
    let dependencies = manifest.split("[dependencies]").nth(1).unwrap_or_default();
    let section = dependencies.split("\n[").next().unwrap_or_default();
    let names: Vec<&str> =
        section.lines().filter_map(|line| line.split(['.', '=', ' ']).next()).filter(|name| !name.is_empty()).collect();
    assert!(!names.is_empty(), "could not read the [dependencies] of baton-core");
    for name in names {
        assert!(ALLOWED_DEPENDENCIES.contains(&name), "baton-core must stay pure, but depends on `{name}`");
    }
}

/// Every `.rs` file beneath `dir`.
fn sources(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.map(|e| e.path()).unwrap_or_default();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The modules a `use std::{…}` group names, so `use std::{fs, io}` counts as `std::fs`.
fn grouped(code: &str) -> Vec<String> {
    code.match_indices("std::{")
        .filter_map(|(at, _)| code[at + 6..].split('}').next())
        .flat_map(|group| group.split(',').map(|item| format!("std::{}", item.trim())).collect::<Vec<_>>())
        .collect()
}

#[test]
fn core_source_never_reaches_for_the_outside_world() {
    let mut files = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    assert!(files.len() >= 5, "found only {} source files", files.len());
    for path in files {
        let text = fs::read_to_string(&path).unwrap_or_default();
        // Only the code outside the unit tests counts: tests may use whatever they like.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let uses = grouped(code);
        for forbidden in FORBIDDEN {
            let named = code.contains(forbidden) || uses.iter().any(|used| used.starts_with(forbidden));
            assert!(!named, "{} uses `{forbidden}`; the core takes such things as arguments", path.display());
        }
    }
}

#[test]
fn a_grouped_use_counts_as_naming_each_module() {
    let uses = grouped("use std::{collections::BTreeMap, fs};\nfn f() {}");
    assert!(uses.iter().any(|used| used.starts_with("std::fs")), "{uses:?}");
}
