//! What the test files share.

use std::fs;
use std::path::Path;

/// The names in `dir`, sorted: proves no temporary or partial file is left.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
