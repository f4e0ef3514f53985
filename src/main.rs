//! Process entry: the command line decides what runs and with which exit code.

fn main() -> std::process::ExitCode {
    moat::cli::run()
}
