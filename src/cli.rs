//! The command line (design §8): each subcommand parses its arguments here and calls into
//! the library; exit codes are chosen here and nowhere else.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::cmd::env::EnvCommand;
use crate::cmd::init::InitArgs;
use crate::cmd::keys::KeysCommand;
use crate::cmd::{check, demo, env, explain, healthcheck, init, keys, serve, spec, token};
use crate::cmd::{completions, version};

#[derive(Debug, Parser)]
#[command(
    name = "moat",
    version = version::SHORT,
    long_version = version::LONG,
    about = "A security sidecar for model servers"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process: boxing buys nothing
enum Command {
    /// Write a starter config directory for a model, from its OpenAPI document.
    ///
    /// moat.yaml with a `read` or `admin` scope per operation, an empty key store, and .env
    /// with fresh secrets; existing files are never overwritten.
    Init(InitArgs),
    /// Load the config and serve until SIGTERM or SIGINT.
    Serve(ConfigArg),
    /// A sample model behind moat on the shipped config, with a fresh key and token, and
    /// curl lines to try; until Ctrl-C.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: std::net::SocketAddr,
    },
    /// Load the config, report every problem, and exit 1 if there is one.
    Check(CheckArgs),
    /// Run one request through stages 1-6 without forwarding; print each stage's verdict.
    /// Exit 0 if it would be forwarded, 1 if refused, 2 if the request or config is unusable.
    Explain {
        #[command(flatten)]
        config: ConfigArg,
        /// GET, POST, ...; or GRPC for a call of a `grpc` method.
        method: String,
        /// `/path?query` or a full URL (only its path and query are used); after GRPC, the
        /// method as `package.Service/Method`.
        url: String,
        /// A request header, `Name: value`; repeatable.
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// The request body, or @FILE to read it from a file; after GRPC, the message as
        /// proto3 JSON (moat encodes it).
        #[arg(short, long)]
        data: Option<String>,
        /// The client address the request comes from (for allowed_cidrs).
        #[arg(long, default_value = "127.0.0.1")]
        client: std::net::IpAddr,
        #[command(flatten)]
        response: explain::ResponseArgs,
    },
    /// Manage API keys in the key store.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print a test JWT signed with the configured HMAC secret (HS* schemes only).
    Token(TokenArgs),
    /// Encrypted dotenv files for `env.encrypted_dotenv`: make, inspect, decrypt.
    Env {
        #[command(subcommand)]
        command: EnvCommand,
    },
    /// The spec as moat enforces it, and what it leaves open.
    Spec {
        #[command(subcommand)]
        command: SpecCommand,
    },
    /// Exit 0 if moat's /healthz answers (for container HEALTHCHECKs without a shell).
    Healthcheck {
        #[arg(
            long,
            env = "MOAT_HEALTHCHECK_URL",
            default_value = "http://127.0.0.1:9090/healthz"
        )]
        url: String,
    },
    /// Print the version, the git commit, the build date and the enabled cargo features.
    Version,
    /// Print a shell completion script, e.g. `moat completions bash >
    /// /etc/bash_completion.d/moat`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print moat's man page (roff), e.g. `moat man | man -l -`.
    Man {
        /// Write one page per command and subcommand into this directory instead
        /// (moat.1, moat-serve.1, moat-keys-new.1, ...).
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum SpecCommand {
    /// Print the document moat enforces: the spec with `openapi.overlays` applied and its
    /// request schemas normalised to JSON Schema 2020-12.
    Effective {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_enum, default_value = "yaml")]
        format: spec::Format,
    },
    /// Print, as an OpenAPI Overlay to review and keep, what the effective spec leaves open
    /// in requests: unbounded strings, numbers and arrays, open objects, empty schemas; and,
    /// with `grpc`, the fields of each method's input that no proto bounds.
    Loose {
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// `moat token`: which scheme signs, and the token's subject, scopes and lifetime.
#[derive(Debug, Args)]
struct TokenArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The jwt scheme, when the config binds several.
    #[arg(long)]
    scheme: Option<String>,
    /// The token's subject (`sub`).
    #[arg(long, default_value = "test-user")]
    sub: String,
    /// Comma-separated scopes.
    #[arg(long, value_delimiter = ',')]
    scopes: Vec<String>,
    /// How long the token is valid.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
}

impl TokenArgs {
    /// Prints the token, or why there is none.
    fn run(&self) -> ExitCode {
        let claims = token::Claims {
            subject: &self.sub,
            scopes: &self.scopes,
            ttl: self.ttl,
        };
        match token::mint(&self.config.config, self.scheme.as_deref(), &claims) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("moat token: {error}");
                ExitCode::FAILURE
            }
        }
    }
}

/// `moat check`: the config, the report's format, and whether to use the network.
#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// `text` for a person, `json` for CI: one document on stdout (progress on stderr).
    #[arg(long, value_enum, default_value = "text")]
    format: check::Format,
    /// Never touch the network: `openapi.url`'s spec comes from the copy the last online
    /// check cached (else operation checks are skipped with a warning), and unset
    /// variables (secrets) are warnings checked with placeholders.
    #[arg(long)]
    offline: bool,
    /// The most fetching `openapi.url` may take, all attempts together (default: the
    /// config's `openapi.fetch_timeout`, at most 10s).
    #[arg(long, value_parser = humantime::parse_duration)]
    fetch_timeout: Option<Duration>,
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// The config file.
    #[arg(long, short, env = "MOAT_CONFIG", default_value = "config/moat.yaml")]
    config: PathBuf,
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Init(args) => init::main(&args),
        Command::Serve(args) => serve::main(args.config),
        Command::Check(args) => check::main(&check::Options {
            config: args.config.config,
            format: args.format,
            offline: args.offline,
            fetch_timeout: args.fetch_timeout,
        }),
        Command::Demo {
            listen,
            admin_listen,
        } => demo::main(listen, admin_listen),
        Command::Explain {
            config,
            method,
            url,
            headers,
            data,
            client,
            response,
        } => explain::main(config.config, method, url, headers, data, client, response),
        Command::Keys { command } => keys::main(command),
        Command::Token(args) => args.run(),
        Command::Env { command } => env::main(command),
        Command::Spec { command } => match command {
            SpecCommand::Effective { config, format } => spec::effective(&config.config, format),
            SpecCommand::Loose { config } => spec::loose(&config.config),
        },
        Command::Healthcheck { url } => healthcheck::main(&url),
        Command::Version => version::main(),
        Command::Completions { shell } => completions::completions(shell, Cli::command()),
        Command::Man { out_dir } => completions::man(Cli::command(), out_dir.as_deref()),
    }
}
