//! Reading the files moat is configured with — config, spec and overlays, key stores, env
//! files, secrets, PEMs, JWKS — and nothing else: a regular file (after symlinks are
//! resolved) within the size cap of its kind. A FIFO, a device such as `/dev/zero`, a
//! directory or a file past its cap is refused with a problem naming it, so an input swapped
//! for one can neither hang a reload (opening a FIFO waits for a writer) nor exhaust memory.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::Path;

/// What a file is read as; each kind has its own cap (docs/operations.md, "Input files").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `moat.yaml`.
    Config,
    /// An OpenAPI document, or a file its `$ref`s name.
    Spec,
    /// An OpenAPI Overlay.
    Overlay,
    /// An API-key store.
    KeyStore,
    /// `env.dotenv`, `env.encrypted_dotenv`, `env.dotenv_keys`.
    EnvFile,
    /// A `VAR_FILE` secret, a pepper file, an age identity.
    Secret,
    /// TLS certificates and keys, a JWT public key, a CA bundle, a JWKS file.
    KeyMaterial,
    /// Any of them, for comparing contents (the largest cap).
    Any,
}

const MIB: u64 = 1 << 20;

impl Kind {
    /// The largest file of this kind moat reads.
    pub fn cap(self) -> u64 {
        match self {
            Kind::Config | Kind::Secret | Kind::KeyMaterial => MIB,
            Kind::EnvFile => 8 * MIB,
            Kind::Overlay => 16 * MIB,
            Kind::Spec | Kind::KeyStore | Kind::Any => 64 * MIB,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Config => "a config file",
            Kind::Spec => "an OpenAPI document",
            Kind::Overlay => "an overlay",
            Kind::KeyStore => "a key store",
            Kind::EnvFile => "an env file",
            Kind::Secret => "a secret file",
            Kind::KeyMaterial => "a key or certificate file",
            Kind::Any => "an input file",
        }
    }
}

/// The bytes of `path`, a regular file within `kind`'s cap. The error names the file and
/// what to change.
pub fn read(path: &Path, kind: Kind) -> Result<Vec<u8>, String> {
    let file = open(path)?;
    let metadata = file
        .metadata()
        .map_err(|e| format!("{}: cannot read it: {e}", path.display()))?;
    if !metadata.is_file() {
        return Err(format!(
            "{}: not a regular file ({}); moat reads its inputs only from regular files",
            path.display(),
            describe(&metadata)
        ));
    }
    if metadata.len() > kind.cap() {
        return Err(too_big(path, kind, metadata.len()));
    }
    read_within_cap(file, path, kind, metadata.len())
}

/// The bytes of `file`, `len` of them when it does not change while it is read. A file that
/// grows meanwhile stops at the cap, one byte past it to tell.
fn read_within_cap(file: File, path: &Path, kind: Kind, len: u64) -> Result<Vec<u8>, String> {
    let cap = kind.cap();
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: cannot read it: {e}", path.display()))?;
    if bytes.len() as u64 > cap {
        return Err(too_big(path, kind, bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`read`], as UTF-8 text.
pub fn read_to_string(path: &Path, kind: Kind) -> Result<String, String> {
    String::from_utf8(read(path, kind)?)
        .map_err(|_| format!("{}: is not UTF-8 text", path.display()))
}

/// Opens without waiting: `O_NONBLOCK` makes opening a FIFO return at once (a blocking open
/// waits for a writer), and the file type is then checked on what was opened, not on a
/// path that could be swapped in between.
fn open(path: &Path) -> Result<File, String> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options
        .open(path)
        .map_err(|e| format!("{}: cannot read it: {e}", path.display()))
}

fn describe(metadata: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let kind = metadata.file_type();
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if metadata.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

fn too_big(path: &Path, kind: Kind, size: u64) -> String {
    format!(
        "{}: {size} bytes, over the {} MiB moat reads for {}",
        path.display(),
        kind.cap() / MIB,
        kind.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_is_read_and_a_symlink_to_one_too() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.yaml");
        std::fs::write(&file, "keys: []\n").unwrap();
        let link = dir.path().join("link.yaml");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read(&link, Kind::KeyStore).unwrap(), b"keys: []\n");
    }

    #[test]
    fn a_fifo_a_device_and_a_directory_are_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let link = dir.path().join(".env.age");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        let error = read(&link, Kind::EnvFile).unwrap_err();
        assert!(error.contains("a FIFO"), "{error}");
        let error = read(Path::new("/dev/zero"), Kind::KeyStore).unwrap_err();
        assert!(error.contains("a device"), "{error}");
        let error = read(dir.path(), Kind::Config).unwrap_err();
        assert!(error.contains("a directory"), "{error}");
    }

    #[test]
    fn a_file_past_its_cap_is_refused_naming_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("moat.yaml");
        std::fs::write(&file, vec![b'#'; (MIB + 1) as usize]).unwrap();
        let error = read(&file, Kind::Config).unwrap_err();
        assert!(error.contains("over the 1 MiB"), "{error}");
        assert!(read(&file, Kind::Spec).is_ok());
    }
}
