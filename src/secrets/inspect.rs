//! `moat env inspect`: an encrypted dotenv file's format, who can decrypt it and which
//! variables it holds — never a value.

use std::fmt::Write as _;
use std::path::Path;

use super::{Format, IDENTITY_FILE_VAR, IDENTITY_VAR, decrypt, dotenvx, read_detected, sops};

/// `moat env inspect`: the format, who can decrypt, and which variables, never a value.
pub fn inspect(path: &Path) -> Result<String, String> {
    let (text, format) = read_detected(path)?;
    match format {
        Format::Age => Ok(age_file(&text, path)),
        Format::Sops => sops_file(&text),
        Format::Dotenvx => dotenvx_file(&text, path),
    }
}

/// An age file names neither its recipients nor, until decrypted, its variables.
fn age_file(text: &[u8], path: &Path) -> String {
    let mut out = String::new();
    let armored = text.starts_with(b"-----BEGIN");
    let _ = writeln!(
        out,
        "format      age (moat env encrypt){}",
        if armored { ", ASCII-armored" } else { "" }
    );
    let _ = writeln!(out, "recipients  not recorded in an age file");
    let names = match decrypt(Format::Age, text, path, None) {
        Ok(variables) => names_of(variables.iter().map(|(n, _)| n.as_str())),
        Err(_) => format!(
            "encrypted with the values (set {IDENTITY_VAR} or {IDENTITY_FILE_VAR} to list them)"
        ),
    };
    let _ = writeln!(out, "variables   {names}");
    let _ = writeln!(out, "integrity   the whole file is authenticated");
    out
}

fn sops_file(text: &[u8]) -> Result<String, String> {
    let file = sops::File::parse(text)?;
    let mut out = String::new();
    let _ = writeln!(out, "format      SOPS dotenv (sops {})", file.version());
    let _ = writeln!(out, "recipients  {}", sops_recipients(&file));
    let _ = writeln!(out, "variables   {}", names_of(file.names()));
    let _ = writeln!(
        out,
        "integrity   a MAC over every value, in order (checked when decrypted)"
    );
    Ok(out)
}

/// Every holder of a copy of the data key, age or not; `none` when there is no copy.
fn sops_recipients(file: &sops::File<'_>) -> String {
    let recipients: Vec<String> = file
        .recipients()
        .into_iter()
        .map(|r| match r {
            sops::Recipient::Age { recipient, .. } => format!("age {recipient}"),
            sops::Recipient::Other(other) => other,
        })
        .collect();
    if recipients.is_empty() {
        "none".to_owned()
    } else {
        recipients.join(", ")
    }
}

fn dotenvx_file(text: &[u8], path: &Path) -> Result<String, String> {
    let file = dotenvx::File::parse(text, path)?;
    let mut out = String::new();
    let _ = writeln!(out, "format      dotenvx");
    for key in file.public_keys() {
        let _ = writeln!(out, "public key  {key}");
    }
    let _ = writeln!(out, "variables   {}", dotenvx_names(&file));
    let _ = writeln!(
        out,
        "integrity   each value on its own: a dropped line, or values swapped between names, is not detected"
    );
    Ok(out)
}

/// The variables, those dotenvx left unencrypted marked `(plain)`.
fn dotenvx_names(file: &dotenvx::File) -> String {
    let names: Vec<String> = file
        .names()
        .map(|(name, encrypted)| {
            if encrypted {
                name.to_owned()
            } else {
                format!("{name} (plain)")
            }
        })
        .collect();
    names_of(names.iter().map(String::as_str))
}

fn names_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    match names.len() {
        0 => "none".into(),
        n => format!("{n}: {}", names.join(", ")),
    }
}
