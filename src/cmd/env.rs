//! `moat env`: make age identities, encrypt dotenv files for `env.encrypted_dotenv`, and
//! inspect or decrypt any of the three formats it reads (age, SOPS dotenv, dotenvx).

#[cfg(feature = "age")]
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

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
    use crate::secrets;
    let outcome = match command {
        EnvCommand::Keygen { output } => {
            let (identity, public) = secrets::keygen();
            match output {
                Some(path) => write_new_private(&path, identity.as_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", path.display())),
                None => std::io::stdout()
                    .write_all(identity.as_bytes())
                    .map_err(|e| e.to_string()),
            }
            .map(|()| eprintln!("public key: {public}"))
        }
        EnvCommand::Encrypt {
            recipients,
            input,
            output,
        } => read_input(input.as_deref()).and_then(|plaintext| {
            let origin = input
                .as_deref()
                .map_or("stdin".into(), |p| p.display().to_string());
            // Refuse now what `serve` would refuse later, while the plaintext is at hand.
            secrets::parse_dotenv(&plaintext, &origin)?;
            let armored = secrets::encrypt(&recipients, &plaintext)?;
            match output {
                Some(path) => crate::auth::keystore::write_atomically(&path, &armored)
                    .map_err(|e| format!("cannot write {}: {e}", path.display())),
                None => std::io::stdout()
                    .write_all(armored.as_bytes())
                    .map_err(|e| e.to_string()),
            }
        }),
        EnvCommand::Inspect { input } => secrets::inspect(&input)
            .map_err(|e| format!("{}: {e}", input.display()))
            .and_then(|report| {
                std::io::stdout()
                    .write_all(report.as_bytes())
                    .map_err(|e| e.to_string())
            }),
        EnvCommand::Decrypt { input, keys } => secrets::decrypt_to_text(&input, keys.as_deref())
            .map_err(|e| format!("{}: {e}", input.display()))
            .and_then(|plaintext| {
                std::io::stdout()
                    .write_all(&plaintext)
                    .map_err(|e| e.to_string())
            }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("moat env: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "age"))]
pub fn main(_: EnvCommand) -> ExitCode {
    eprintln!("moat env: this moat was built without the `age` feature");
    ExitCode::FAILURE
}

/// A file's bytes, or stdin's when no file is named; wiped when dropped.
#[cfg(feature = "age")]
fn read_input(path: Option<&std::path::Path>) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
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
/// copy of an identity).
#[cfg(feature = "age")]
fn write_new_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
