//! `moat init --from URL|FILE`: a starter config directory for one model — `moat.yaml` with
//! a policy line per operation of the model's own document (reads and inference calls need
//! `read`, anything that looks administrative `admin`), an empty key store, a `.env` with
//! fresh secrets, and the document itself when it came from a file — then the commands to
//! run next. The key store starts empty: a key is minted with `moat keys new`, which prints
//! it once, under a name and with scopes the operator chose.

mod files;
mod model;
mod template;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use clap::Args;

use self::files::NewFile;
use self::model::{Model, Source};
use self::template::{Openapi, Settings};
use crate::policy::classify::Access;

/// `moat init`: where the model's document is, and where the config goes.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The model's OpenAPI document: an http:// URL (moat.yaml then fetches it from the
    /// model at every start) or a JSON or YAML file (copied into DIR).
    #[arg(long, value_name = "URL|FILE")]
    from: String,
    /// The directory to write moat.yaml, keys.yaml, .env (and the spec) into; created when
    /// missing. Existing files are never overwritten.
    #[arg(long, value_name = "DIR", default_value = "config")]
    dir: PathBuf,
    /// Where the model listens (default: the URL's host and port, else http://127.0.0.1:8000).
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
}

pub fn main(args: &InitArgs) -> ExitCode {
    match run(args) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("moat init: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the model's document, writes the files, and says what to do next.
fn run(args: &InitArgs) -> Result<String, String> {
    let dir = args
        .dir
        .to_str()
        .ok_or_else(|| format!("{}: the directory must be UTF-8", args.dir.display()))?;
    let source = Source::parse(&args.from)?;
    let upstream = upstream(args.upstream.as_deref(), &source)?;
    let layout = Layout::new(dir);
    // Refused before the model is even asked, so a second run says so at once.
    files::refuse_existing(&layout.fixed())?;
    let model = model::load(&source)?;
    let (bearer, api_key) = scheme_names(&model);
    let spec_path = layout.spec_path(&model, &source);
    let settings = Settings {
        from: &args.from,
        upstream: &upstream,
        openapi: match (&source, &model.copy) {
            (Source::Url { url, .. }, _) => Openapi::Url(url),
            (Source::File(_), copy) => Openapi::File {
                path: &spec_path,
                copied: copy.is_some(),
            },
        },
        store: &layout.store,
        dotenv: &layout.dotenv,
        bearer,
        api_key,
    };
    let config = template::config(&settings, &model);
    let new = layout.files(&model, config, &spec_path);
    let paths: Vec<PathBuf> = new.iter().map(|file| file.path.clone()).collect();
    files::refuse_existing(&paths)?;
    files::write_all(&args.dir, &new)?;
    Ok(next_steps(&layout, &new, &model, &upstream))
}

/// The model's address: `--upstream`, else the URL's origin, else the usual uvicorn port.
fn upstream(given: Option<&str>, source: &Source) -> Result<String, String> {
    let chosen = match (given, source) {
        (Some(given), _) => given.to_owned(),
        (None, Source::Url { origin, .. }) => origin.clone(),
        (None, Source::File(_)) => "http://127.0.0.1:8000".to_owned(),
    };
    let uri: http::Uri = chosen
        .parse()
        .map_err(|e| format!("--upstream {chosen}: not a URL: {e}"))?;
    match (uri.scheme_str(), uri.authority(), uri.query()) {
        (Some("http"), Some(_), None) => Ok(chosen),
        _ => Err(format!(
            "--upstream {chosen}: give the model's http://host:port (moat forwards to the model \
             beside it in plain HTTP)"
        )),
    }
}

/// `bearer` and `api_key`, unless the spec declares schemes of those names: its
/// declarations would then have to match moat's verifiers, and they need not.
fn scheme_names(model: &Model) -> (&'static str, &'static str) {
    let free = |name: &'static str, other: &'static str| {
        if model.declared.contains(name) {
            other
        } else {
            name
        }
    };
    (
        free("bearer", "moat_bearer"),
        free("api_key", "moat_api_key"),
    )
}

/// The paths of the files, as the config names them (relative to where moat runs).
struct Layout {
    dir: String,
    config: String,
    store: String,
    dotenv: String,
}

impl Layout {
    fn new(dir: &str) -> Layout {
        let join = |name: &str| Path::new(dir).join(name).display().to_string();
        Layout {
            dir: dir.to_owned(),
            config: join("moat.yaml"),
            store: join("keys.yaml"),
            dotenv: join(".env"),
        }
    }

    /// Where `openapi.file` points: the copy (`openapi.json` or `openapi.yaml`), or the
    /// document where it is when it could not be copied whole.
    fn spec_path(&self, model: &Model, source: &Source) -> String {
        match (&model.copy, source) {
            (Some(copy), _) if copy.json => self.join("openapi.json"),
            (Some(_), _) => self.join("openapi.yaml"),
            (None, Source::File(path)) => path.display().to_string(),
            (None, Source::Url { .. }) => String::new(),
        }
    }

    fn join(&self, name: &str) -> String {
        Path::new(&self.dir).join(name).display().to_string()
    }

    /// The files every config gets, whatever the model.
    fn fixed(&self) -> [PathBuf; 3] {
        [&self.config, &self.store, &self.dotenv].map(PathBuf::from)
    }

    /// The files to write: the config, the store and `.env` (both mode 0600), and the
    /// copy of the spec.
    fn files(&self, model: &Model, config: String, spec_path: &str) -> Vec<NewFile> {
        let [config_path, store, dotenv] = self.fixed();
        let file = |path, mode, contents: String| NewFile {
            path,
            contents: contents.into_bytes(),
            mode,
        };
        let mut files = vec![
            file(config_path, 0o644, config),
            file(store, 0o600, template::KEY_STORE.to_owned()),
            file(dotenv, 0o600, template::dotenv(&random(), &random())),
        ];
        if let Some(copy) = &model.copy {
            files.push(NewFile {
                path: PathBuf::from(spec_path),
                contents: copy.bytes.clone(),
                mode: 0o644,
            });
        }
        files
    }
}

/// 32 random bytes, base64url: a JWT secret of the length HS256 wants, or a pepper.
fn random() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What was written, each operation's scope, and the commands to run next.
fn next_steps(layout: &Layout, written: &[NewFile], model: &Model, upstream: &str) -> String {
    let mut out = String::from("wrote:\n");
    for file in written {
        let _ = writeln!(out, "  {} (mode {:04o})", file.path.display(), file.mode);
    }
    let _ = writeln!(out, "\n{} operations:", model.entries.len());
    operation_table(&mut out, model);
    let config = match layout.config.as_str() {
        "config/moat.yaml" => String::new(),
        path => format!(" --config {}", shell_quoted(path)),
    };
    let where_ = if Path::new(&layout.dir).is_absolute() {
        ""
    } else {
        ", from this directory (the config's paths are relative to it)"
    };
    let _ = write!(
        out,
        "\nCheck the scopes above in {}, then{where_}:\n\
         \x20 moat check{config}     # loads it all as serve does; lists each operation\n\
         \x20 moat keys new{config} --id my-client --scopes read    # a client's key: printed once, only its hash is kept\n\
         \x20 moat keys new{config} --id operator --scopes admin    # an operator's key, for the admin operations\n\
         \x20 moat serve{config}     # listens on $MOAT_LISTEN (default 0.0.0.0:8080), forwards to {upstream}\n\
         \x20 curl -H \"X-API-Key: $KEY\" http://127.0.0.1:8080/...\n",
        layout.config
    );
    out
}

/// One line per operation: its scope, method, template and policy key, and why it looks
/// administrative.
fn operation_table(out: &mut String, model: &Model) {
    let width = model.entries.iter().map(|e| e.template.len()).max();
    for entry in &model.entries {
        let scope = match entry.access {
            Access::Read => "read",
            Access::Admin => "admin",
        };
        let why = entry.why.as_deref().map(|w| format!("  ({w})"));
        let _ = writeln!(
            out,
            "  {scope:<5}  {:<7} {:<width$}  {}{}",
            entry.method,
            entry.template,
            entry.key,
            why.unwrap_or_default(),
            width = width.unwrap_or_default(),
        );
    }
}

/// `text` as one shell word.
fn shell_quoted(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        return text.to_owned();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}
