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

#[test]
fn core_source_never_reaches_for_the_outside_world() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for entry in fs::read_dir(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
        let path = entry.map(|e| e.path()).unwrap_or_default();
        let text = fs::read_to_string(&path).unwrap_or_default();
        // Only the code outside the unit tests counts: tests may use whatever they like.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for forbidden in FORBIDDEN {
            assert!(
                !code.contains(forbidden),
                "{} uses `{forbidden}`; the core takes such things as arguments",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 5, "found only {checked} source files in {}", src.display());
}
