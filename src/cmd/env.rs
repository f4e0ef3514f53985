//! `moat env`: make age identities, encrypt dotenv files for `env.encrypted_dotenv`, and
//! inspect or decrypt any of the three formats it reads (age, SOPS dotenv, dotenvx).

#[cfg(feature = "age")]
use std::io::Write as _;
#[cfg(feature = "age")]
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[cfg(feature = "age")]
use crate::secrets;

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Make an age identity: its text goes to OUT (mode 0600) or stdout, its public key to
    /// stderr.
    Keygen {
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Encrypt a dotenv file (IN, or stdin) to one or more `age1…` recipients, ASCII-armored.
    Encrypt {
        #[arg(short, long = "recipient", required = true)]
        recipients: Vec<String>,
        input: Option<PathBuf>,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Decrypt an encrypted dotenv file (age, SOPS dotenv or dotenvx) to stdout, with the
    /// keys `serve` would use.
    Decrypt {
        input: PathBuf,
        /// dotenvx's `.env.keys` file (as `env.dotenv_keys`).
        #[arg(long)]
        keys: Option<PathBuf>,
    },
    /// Show an encrypted dotenv file's format, recipients and variable names; never a value.
    Inspect { input: PathBuf },
}

#[cfg(feature = "age")]
pub fn main(command: EnvCommand) -> ExitCode {
    let outcome = match command {
        EnvCommand::Keygen { output } => keygen(output.as_deref()),
        EnvCommand::Encrypt {
            recipients,
            input,
            output,
        } => encrypt(&recipients, input.as_deref(), output.as_deref()),
        EnvCommand::Inspect { input } => secrets::inspect(&input)
            .map_err(|e| format!("{}: {e}", input.display()))
            .and_then(|report| to_stdout(report.as_bytes())),
        EnvCommand::Decrypt { input, keys } => secrets::decrypt_to_text(&input, keys.as_deref())
            .map_err(|e| format!("{}: {e}", input.display()))
            .and_then(|plaintext| to_stdout(&plaintext)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("moat env: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `moat env keygen`: the identity to `output` (or stdout), its public key to stderr.
#[cfg(feature = "age")]
fn keygen(output: Option<&Path>) -> Result<(), String> {
    let (identity, public) = secrets::keygen();
    match output {
        Some(path) => write_new_private(path, identity.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display())),
        None => to_stdout(identity.as_bytes()),
    }?;
    eprintln!("public key: {public}");
    Ok(())
}

/// `moat env encrypt`: the dotenv file at `input` (or stdin), armored for `recipients`.
#[cfg(feature = "age")]
fn encrypt(
    recipients: &[String],
    input: Option<&Path>,
    output: Option<&Path>,
) -> Result<(), String> {
    let plaintext = read_input(input)?;
    let origin = input.map_or("stdin".into(), |p| p.display().to_string());
    // Refuse now what `serve` would refuse later, while the plaintext is at hand.
    secrets::parse_dotenv(&plaintext, &origin)?;
    let armored = secrets::encrypt(recipients, &plaintext)?;
    match output {
        Some(path) => crate::auth::keystore::write_atomically(path, &armored)
            .map_err(|e| format!("cannot write {}: {e}", path.display())),
        None => to_stdout(armored.as_bytes()),
    }
}

#[cfg(feature = "age")]
fn to_stdout(bytes: &[u8]) -> Result<(), String> {
    std::io::stdout()
        .write_all(bytes)
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "age"))]
pub fn main(_: EnvCommand) -> ExitCode {
    eprintln!("moat env: this moat was built without the `age` feature");
    ExitCode::FAILURE
}

/// A file's bytes, or stdin's when no file is named; wiped when dropped.
#[cfg(feature = "age")]
fn read_input(path: Option<&Path>) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    use std::io::Read as _;
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    match path {
        Some(path) => {
            *bytes =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        }
        None => {
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
        }
    }
    Ok(bytes)
}

/// Creates `path` with mode 0600; an existing file is never overwritten (it may be the only
/// copy of an identity). Missing parent directories are made, 0700: they hold a secret
/// (`moat env keygen -o secrets/age_identity` in a fresh checkout).
#[cfg(feature = "age")]
fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Existing directories keep their mode: only the ones made here are 0700.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
