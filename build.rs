//! Build facts for `moat --version`: the git commit, the build date and the enabled
//! features, handed to the crate as `MOAT_BUILD_*` environment variables at compile time.
//!
//! Nothing here may fail the build: without git (a crate tarball, a Docker context without
//! `.git`) the commit is `unknown`. `SOURCE_DATE_EPOCH` fixes the date for reproducible
//! builds, and `MOAT_GIT_COMMIT` names the commit where git cannot (`docker build
//! --build-arg MOAT_GIT_COMMIT=…`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-env-changed=MOAT_GIT_COMMIT");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = given_commit()
        .or_else(|| git_commit(&manifest_dir))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=MOAT_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=MOAT_BUILD_DATE={}", build_date());
    println!("cargo:rustc-env=MOAT_BUILD_FEATURES={}", features());
}

/// `MOAT_GIT_COMMIT`, when set: reduced to the characters a commit name has, so nothing
/// in it can reach cargo as a directive of its own.
fn given_commit() -> Option<String> {
    let given = std::env::var("MOAT_GIT_COMMIT").ok()?;
    let clean: String = given
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(40)
        .collect();
    (!clean.is_empty()).then_some(clean)
}

/// The short hash of HEAD, only when the crate is itself the top of a git work tree (a
/// tarball unpacked inside some other repository must not take that repository's commit).
/// Cargo is told which git files to watch, so a new commit rebuilds the version.
fn git_commit(manifest_dir: &Path) -> Option<String> {
    let toplevel = git(manifest_dir, &["rev-parse", "--show-toplevel"])?;
    if !same_dir(Path::new(&toplevel), manifest_dir) {
        return None;
    }
    watch_git_files(manifest_dir);
    git(manifest_dir, &["rev-parse", "--short=12", "HEAD"])
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// HEAD, the branch it points to and `packed-refs`. Only paths that exist: cargo reruns a
/// build script on every build when a watched path is missing. A branch packed into
/// `packed-refs` has no file of its own until its next commit writes one: its directory is
/// watched instead.
fn watch_git_files(dir: &Path) {
    let git_dir = git(dir, &["rev-parse", "--absolute-git-dir"]).map(PathBuf::from);
    let common_dir = git(dir, &["rev-parse", "--git-common-dir"]).map(|d| dir.join(d));
    let branch = git(dir, &["symbolic-ref", "-q", "HEAD"]);
    let mut watched = Vec::new();
    if let Some(git_dir) = &git_dir {
        watched.push(git_dir.join("HEAD"));
    }
    if let Some(common_dir) = &common_dir {
        if let Some(branch) = branch.map(|branch| common_dir.join(branch)) {
            if !branch.is_file() {
                watched.extend(branch.parent().map(Path::to_owned));
            }
            watched.push(branch);
        }
        watched.push(common_dir.join("packed-refs"));
    }
    for path in watched.into_iter().filter(|path| path.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// `git ARGS` in `dir`: its first line, or `None` for any failure (no git, not a repository).
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let line = text.lines().next()?.trim().to_owned();
    (!line.is_empty()).then_some(line)
}

/// The build's UTC date, `YYYY-MM-DD`: from `SOURCE_DATE_EPOCH` when it is a number of
/// seconds, else today.
fn build_date() -> String {
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|epoch| epoch.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs())
        });
    let (year, month, day) = civil_date(seconds / 86_400);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative days).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The enabled cargo features (cargo sets `CARGO_FEATURE_<NAME>` for each), `default`
/// left out: it names a set, not a capability. `none` when there are none.
fn features() -> String {
    let mut names: Vec<String> = std::env::vars()
        .filter_map(|(name, _)| {
            let feature = name.strip_prefix("CARGO_FEATURE_")?;
            Some(feature.to_ascii_lowercase().replace('_', "-"))
        })
        .filter(|feature| feature != "default")
        .collect();
    names.sort();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(",")
    }
}
