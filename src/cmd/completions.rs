//! `moat completions SHELL` and `moat man`: shell completion scripts and roff man pages,
//! generated from the command line's own clap definition (passed in by `cli`), so they
//! always list exactly the subcommands and flags this binary parses.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::Command;
use clap_complete::Shell;

/// `moat completions SHELL`: the script on stdout.
pub fn completions(shell: Shell, mut command: Command) -> ExitCode {
    // clap_complete panics when its writer fails (`moat completions bash | head`): it
    // writes into memory, and only the copy to stdout can fail, as a plain error.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "moat", &mut script);
    to_stdout("completions", &script)
}

/// `moat man`: the top-level page on stdout; with `out_dir`, one page per command and
/// subcommand written there (`moat.1`, `moat-serve.1`, `moat-keys-new.1`, …).
pub fn man(command: Command, out_dir: Option<&Path>) -> ExitCode {
    let outcome = match out_dir {
        None => page(command).map(|page| to_stdout("man", &page)),
        Some(dir) => {
            write_pages(command.disable_help_subcommand(true), dir).map(|()| ExitCode::SUCCESS)
        }
    };
    outcome.unwrap_or_else(|error| {
        eprintln!("moat man: {error}");
        ExitCode::FAILURE
    })
}

/// One command's page. The `.TH` title line goes first: `mandb`, `lexgrog` and `file`
/// recognise a man page by its opening lines, and roff's apostrophe preamble (which the
/// title never needs: it holds no apostrophe) would otherwise come before it.
fn page(command: Command) -> Result<Vec<u8>, String> {
    let man = clap_mangen::Man::new(command)
        .date(super::version::DATE)
        .manual("moat manual");
    let mut rendered = Vec::new();
    man.render(&mut rendered).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&rendered);
    let (title, rest): (Vec<&str>, Vec<&str>) =
        text.lines().partition(|line| line.starts_with(".TH "));
    let mut page = String::with_capacity(text.len());
    for line in title.into_iter().chain(rest) {
        page.push_str(line);
        page.push('\n');
    }
    Ok(page.into_bytes())
}

/// The page of `command` and of each of its visible subcommands, recursively, into `dir`.
fn write_pages(mut command: Command, dir: &Path) -> Result<(), String> {
    command.build();
    let subcommands: Vec<Command> = command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .cloned()
        .collect();
    for sub in subcommands {
        write_pages(sub, dir)?;
    }
    let name = format!(
        "{}.1",
        command
            .get_display_name()
            .unwrap_or_else(|| command.get_name())
    );
    let path = dir.join(name);
    let text = page(command)?;
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn to_stdout(what: &str, bytes: &[u8]) -> ExitCode {
    match std::io::stdout().write_all(bytes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("moat {what}: {error}");
            ExitCode::FAILURE
        }
    }
}
