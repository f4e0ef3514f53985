//! The permission rule for files that hold secrets or vouch for identities: never
//! world-writable; readable by others only with a warning.

use std::path::Path;

/// Anyone able to write a secret file can replace it (mint keys, swap the identity, trust
/// another CA): world-writable is refused. Readable by others is only a warning, since
/// Kubernetes mounts secrets 0644 by default.
pub fn check_permissions(path: &Path, what: &str) -> Result<(), String> {
    let Some(mode) = refuse_world_writable(path, what)? else {
        return Ok(());
    };
    if mode & 0o044 != 0 {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the {what} is readable by other users; 0600 is safer"
        );
    }
    Ok(())
}

/// The check for files that are public but must not be replaceable (certificates, CAs);
/// returns the mode when the file exists.
pub fn refuse_world_writable(path: &Path, what: &str) -> Result<Option<u32>, String> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(metadata) = std::fs::metadata(path) else {
        return Ok(None); // reading it will report the real problem
    };
    if !metadata.is_file() {
        // A device's or a FIFO's mode says nothing of the file moat should have read, and
        // reading it will refuse it for what it is (see `input`).
        return Ok(None);
    }
    let mode = metadata.permissions().mode();
    if mode & 0o002 != 0 {
        return Err(format!(
            "{}: the {what} is world-writable (mode {:o}); remove write access for others (`chmod o-w`, or 600 for secrets)",
            path.display(),
            mode & 0o777
        ));
    }
    Ok(Some(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_writable_secret_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.txt");
        std::fs::write(&path, "x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let error = check_permissions(&path, "age identity file").unwrap_err();
        assert!(error.contains("world-writable"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check_permissions(&path, "age identity file").is_ok());
    }
}
