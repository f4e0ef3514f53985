//! `moat version` and `moat --version`: what was built — the version, the git commit, the
//! build date and the cargo features — as `build.rs` found them at compile time.

/// One line, for `-V`, the start-up log and the man page: `0.1.0 (1f94cff2a3b4 2026-12-07)`.
pub const SHORT: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("MOAT_BUILD_COMMIT"),
    " ",
    env!("MOAT_BUILD_DATE"),
    ")"
);

/// The whole report, for `--version` and `moat version`: the version on the first line,
/// where scripts look for it, then one fact per line.
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit:   ",
    env!("MOAT_BUILD_COMMIT"),
    "\nbuilt:    ",
    env!("MOAT_BUILD_DATE"),
    " (UTC)\nfeatures: ",
    env!("MOAT_BUILD_FEATURES"),
);

/// The build date alone (`YYYY-MM-DD`), for the man page's date.
pub const DATE: &str = env!("MOAT_BUILD_DATE");

/// `moat version`: the same as `moat --version`.
pub fn main() -> std::process::ExitCode {
    println!("moat {LONG}");
    std::process::ExitCode::SUCCESS
}
