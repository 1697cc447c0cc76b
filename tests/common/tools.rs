//! Finding the programs `.ci/install-interop.sh` installs. A missing one
//! fails the test (CI must have installed it), saying how to install it.

use std::path::{Path, PathBuf};

pub const INSTALL: &str = "run `bash .ci/install-interop.sh` (as root)";

/// A program of the interop virtualenv (`.venv/bin`).
pub fn venv_bin(program: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(program);
    assert!(path.is_file(), "{} is missing: {INSTALL}", path.display());
    path
}

/// A program on `PATH` (Debian packages, npm's node).
pub fn on_path(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| panic!("`{program}` is not on PATH: {INSTALL}"))
}
