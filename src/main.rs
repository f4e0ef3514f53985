//! Process entry: the command line decides what runs and with which exit code.

fn main() -> std::process::ExitCode {
    // moat's own TLS passes its provider explicitly; the Redis client's rustls config takes
    // the process default, so there is exactly one to take (never rustls's guess or panic).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    moat::cli::run()
}
