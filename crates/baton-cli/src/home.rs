use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// baton's data directory: `--home`/`BATON_HOME`, else `$XDG_DATA_HOME/baton`, else
/// `~/.local/share/baton`. Made absolute, so paths recorded in the journal stay valid.
pub fn resolve(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = match explicit {
        Some(path) => path.to_owned(),
        None => match (env("XDG_DATA_HOME"), env("HOME")) {
            (Some(data), _) => data.join("baton"),
            (None, Some(home)) => home.join(".local/share/baton"),
            (None, None) => bail!("cannot find a data directory: set BATON_HOME (or HOME or XDG_DATA_HOME)"),
        },
    };
    std::path::absolute(&home).with_context(|| format!("cannot resolve data directory {}", home.display()))
}
