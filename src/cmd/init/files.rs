//! Writing `moat init`'s files all or nothing, and never over an existing file: a config
//! directory may hold the only copy of a key store or a pepper, and a pepper overwritten
//! voids every key minted with it.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A file to create, its contents and its mode.
pub(super) struct NewFile {
    pub path: PathBuf,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// Refuses when any of `files` exists (a dangling symlink too: writing through it would
/// land somewhere else), naming each one.
pub(super) fn refuse_existing(paths: &[PathBuf]) -> Result<(), String> {
    let existing: Vec<String> = paths
        .iter()
        .filter(|path| path.symlink_metadata().is_ok())
        .map(|path| path.display().to_string())
        .collect();
    if existing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} already exist{}; moat init never overwrites a file. Nothing was written: move {} \
         away, or write the new config elsewhere with --dir",
        existing.join(", "),
        if existing.len() == 1 { "s" } else { "" },
        if existing.len() == 1 { "it" } else { "them" },
    ))
}

/// Creates `dir` when missing, then each file, never replacing one; on any failure, the
/// files (and the directory) this call created are removed again.
pub(super) fn write_all(dir: &Path, files: &[NewFile]) -> Result<(), String> {
    let created_dir = !dir.exists();
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut written: Vec<&Path> = Vec::new();
    for file in files {
        if let Err(error) = create(file) {
            for path in written {
                let _ = std::fs::remove_file(path);
            }
            if created_dir {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(format!(
                "cannot write {}: {error}; nothing was written",
                file.path.display()
            ));
        }
        written.push(&file.path);
    }
    Ok(())
}

/// One file, created with its mode from the start (a secret is never readable by others,
/// not even for a moment), and synced.
fn create(file: &NewFile) -> std::io::Result<()> {
    let mut handle = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(file.mode)
        .open(&file.path)?;
    let written = handle
        .write_all(&file.contents)
        .and_then(|()| handle.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(&file.path);
    }
    written
}
