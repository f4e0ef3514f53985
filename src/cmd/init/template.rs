//! The text of the files `moat init` writes: `moat.yaml` as a commented template (a comment
//! per block saying what it does and what to change), the empty key store and the `.env`.
//! Everything that comes from the spec or the command line is written as an escaped YAML
//! double-quoted scalar, with `$` doubled so no `${…}` in an operationId reads as a variable.

use std::fmt::Write as _;

use super::model::{Entry, Model};
use crate::policy::classify::Access;

/// What the config is made of besides the model: where things are, and the scheme names.
pub(super) struct Settings<'a> {
    /// What `--from` named, for the header.
    pub from: &'a str,
    pub upstream: &'a str,
    /// `openapi.url`, or the path `openapi.file` names.
    pub openapi: Openapi<'a>,
    pub store: &'a str,
    pub dotenv: &'a str,
    pub bearer: &'a str,
    pub api_key: &'a str,
}

pub(super) enum Openapi<'a> {
    Url(&'a str),
    File { path: &'a str, copied: bool },
}

/// `moat.yaml`.
pub(super) fn config(settings: &Settings<'_>, model: &Model) -> String {
    let mut out = String::new();
    header(&mut out, settings, model);
    addresses(&mut out, settings);
    openapi(&mut out, settings);
    auth(&mut out, settings, model.llm);
    policy(&mut out, settings, &model.entries);
    out
}

fn header(out: &mut String, settings: &Settings<'_>, model: &Model) {
    let title = model.title.as_deref().unwrap_or("the model");
    let _ = writeln!(
        out,
        "# moat configuration for {}, written by `moat init --from {}`.\n\
         # Paths are relative to the directory moat runs in (where `moat init` ran). Any value\n\
         # may use ${{VAR}} or ${{VAR:-default}}. `moat check` loads it all and lists each operation.\n",
        comment(title),
        comment(settings.from),
    );
}

fn addresses(out: &mut String, settings: &Settings<'_>) {
    let _ = writeln!(
        out,
        "# Where clients connect, and the admin port (/healthz /readyz /metrics and the status\n\
         # page): keep admin_listen on loopback.\n\
         listen: \"${{MOAT_LISTEN:-0.0.0.0:8080}}\"\n\
         admin_listen: \"${{MOAT_ADMIN_LISTEN:-127.0.0.1:9090}}\"\n\n\
         # The model server. Bind it to 127.0.0.1 so that moat is the only way in.\n\
         upstream:\n  url: {}\n\
         \x20 response_timeout: 60s       # until the model's response headers; raise for slow models\n\
         \x20 idle_timeout: 300s          # between the chunks of a streamed response\n\n\
         # Request limits: raise max_body_bytes for models that take large inputs (images, batches).\n\
         limits:\n  max_body_bytes: 1048576\n  max_json_depth: 64\n\n\
         # Secrets (MOAT_JWT_SECRET, MOAT_KEY_PEPPER) come from this file, mode 0600: never commit\n\
         # it. Variables set in the real environment win over it.\n\
         env:\n  dotenv: {}\n",
        quoted(settings.upstream),
        quoted(settings.dotenv),
    );
}

fn openapi(out: &mut String, settings: &Settings<'_>) {
    let _ = writeln!(
        out,
        "# The model's own OpenAPI document: only its operations are forwarded, and every\n\
         # request is checked against it (parameters, content type, body schema)."
    );
    let _ = match settings.openapi {
        Openapi::Url(url) => writeln!(
            out,
            "# Fetched from the model at every start and reload; moat waits for it up to fetch_timeout.\n\
             openapi:\n  url: {}\n  fetch_timeout: 60s\n",
            quoted(url)
        ),
        Openapi::File { path, copied } => writeln!(
            out,
            "# {} when the model's API changes.\nopenapi:\n  file: {}\n",
            if copied {
                "A copy made by `moat init`: copy the new one over it"
            } else {
                "The document where it is (its `$ref`s name other files): keep it current"
            },
            quoted(path)
        ),
    };
}

fn auth(out: &mut String, settings: &Settings<'_>, llm: bool) {
    let key_bearer = if llm {
        "      bearer: true                # also `Authorization: Bearer moat_…`, as OpenAI clients send keys\n"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "# Who may call: a JWT in `Authorization: Bearer`, or an API key. Tokens are checked first.\n\
         auth:\n  schemes:\n    {}:\n      type: jwt\n\
         \x20     # Tokens signed with MOAT_JWT_SECRET (`moat token --scopes read` makes a test one).\n\
         \x20     # With an identity provider instead: its issuer and audience, algorithms: [RS256],\n\
         \x20     # and jwks_url: \"https://login.example.com/.well-known/jwks.json\" in place of secret.\n\
         \x20     issuer: \"moat-local\"\n      audience: [model-api]\n      algorithms: [HS256]\n\
         \x20     secret: \"${{MOAT_JWT_SECRET}}\"\n\
         \x20   {}:\n      type: api_key\n      header: X-API-Key\n{key_bearer}\
         \x20     store: {}   # `moat keys new --id NAME --scopes read`\n\
         \x20     # Mixed into every key's hash: a leaked store alone is useless. Changing it voids every key.\n\
         \x20     pepper: \"${{MOAT_KEY_PEPPER}}\"\n",
        settings.bearer,
        settings.api_key,
        quoted(settings.store),
    );
}

fn policy(out: &mut String, settings: &Settings<'_>, entries: &[Entry]) {
    let admin = requirement(settings, "admin");
    let _ = writeln!(
        out,
        "# What each operation needs. `read`: reads and inference calls; `admin`: operations that\n\
         # look administrative (load, unload, reload, config, repository, shutdown, admin, ...) or\n\
         # change something. Check every line: give clients keys with `read`, operators `admin`;\n\
         # `[]` makes an operation public (a health check for a load balancer, say).\n\
         policy:\n  mode: enforce               # or shadow: log and count validation failures, forward anyway\n\
         \x20 # Operations not listed below (ones the model adds later) need `admin` until listed.\n\
         \x20 default: {admin}\n  operations:{}",
        if entries.is_empty() { " {}" } else { "" }
    );
    for entry in entries {
        let _ = writeln!(out, "{}", operation_line(settings, entry));
    }
    let _ = writeln!(
        out,
        "  forward_credentials: false  # strip Authorization and X-API-Key before forwarding"
    );
}

/// `    "id": [{bearer: [read]}, {api_key: [read]}]   # METHOD /template (why)`.
fn operation_line(settings: &Settings<'_>, entry: &Entry) -> String {
    let scope = match entry.access {
        Access::Read => "read",
        Access::Admin => "admin",
    };
    let why = match (&entry.why, entry.access) {
        (Some(why), _) => format!(": {why}"),
        (None, Access::Admin) => ": changes something".to_owned(),
        (None, Access::Read) => String::new(),
    };
    format!(
        "    {}: {}   # {} {}{}",
        quoted_key(&entry.key),
        requirement(settings, scope),
        entry.method,
        comment(&entry.template),
        comment(&why),
    )
}

/// A token or a key with `scope`: two alternatives, so either credential alone passes.
fn requirement(settings: &Settings<'_>, scope: &str) -> String {
    format!(
        "[{{{}: [{scope}]}}, {{{}: [{scope}]}}]",
        settings.bearer, settings.api_key
    )
}

/// The key store: empty, with a comment saying how to fill it.
pub(super) const KEY_STORE: &str = "\
# API keys for moat.yaml: argon2id hashes only, never a key itself (keep it mode 0600).
# Add one with `moat keys new --id NAME --scopes read`; list, revoke and rotate with `moat keys`.
keys: []
";

/// The `.env` with fresh secrets: a JWT signing secret and the key pepper.
pub(super) fn dotenv(jwt_secret: &str, pepper: &str) -> String {
    format!(
        "# Secrets for moat.yaml, made by `moat init` (mode 0600). Never commit this file.\n\
         # Changing MOAT_KEY_PEPPER voids every stored key; changing MOAT_JWT_SECRET every token.\n\
         MOAT_JWT_SECRET={jwt_secret}\nMOAT_KEY_PEPPER={pepper}\n"
    )
}

/// `text` as a YAML double-quoted value: quotes and backslashes escaped, anything outside
/// printable ASCII as `\u`/`\U` escapes, and `$` doubled (values are expanded, and `$$` is
/// the escape for `$`).
pub(super) fn quoted(text: &str) -> String {
    escaped(text, "$$")
}

/// `text` as a YAML double-quoted mapping key. Keys are not expanded, so `$$` would stay
/// two; but a `$` seen in the text would be taken for a variable, so it is written `\x24`.
fn quoted_key(text: &str) -> String {
    escaped(text, "\\x24")
}

fn escaped(text: &str, dollar: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str(dollar),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08X}", u32::from(c));
            }
        }
    }
    out.push('"');
    out
}

/// `text` made safe for a comment: one line, printable, and no `$` a variable could start
/// with (references are expanded on every line that does not start with `#`).
fn comment(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '$' => '¤',
            c if c.is_control() => '?',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn entry(key: &str, template: &str, access: Access) -> Entry {
        Entry {
            key: key.to_owned(),
            method: "POST".to_owned(),
            template: template.to_owned(),
            access,
            why: None,
        }
    }

    fn settings<'a>() -> Settings<'a> {
        Settings {
            from: "/tmp/$HOME/spec.json",
            upstream: "http://127.0.0.1:8000",
            openapi: Openapi::File {
                path: "conf $x/\"openapi\".json",
                copied: true,
            },
            store: "conf/keys.yaml",
            dotenv: "conf/.env",
            bearer: "bearer",
            api_key: "api_key",
        }
    }

    #[test]
    fn every_operation_id_reads_back_exactly_as_the_spec_wrote_it() {
        let keys = [
            "plain_id",
            "a$b",
            "${HOME}",
            "$HOME",
            "say \"hi\"",
            "back\\slash",
            "colon: and # hash",
            "tab\there",
            "line\nbreak",
            "café ☕ 𝄞",
            "POST /v1/{name}:predict",
        ];
        let model = Model {
            title: Some("evil\n$TITLE".to_owned()),
            entries: keys
                .iter()
                .map(|key| entry(key, "/a/$X/{b}\n# c", Access::Read))
                .collect(),
            llm: true,
            declared: Default::default(),
            copy: None,
        };
        let text = config(&settings(), &model);
        let lookup = |name: &str| {
            (name == "MOAT_JWT_SECRET" || name == "MOAT_KEY_PEPPER").then(|| "s".repeat(40))
        };
        let parsed = Config::parse(&text, &lookup).unwrap_or_else(|p| panic!("{p:?}\n{text}"));
        let read: Vec<&str> = parsed
            .policy
            .operations
            .keys()
            .map(String::as_str)
            .collect();
        let mut want = keys.to_vec();
        want.sort_unstable();
        assert_eq!(read, want, "{text}");
        let openapi = parsed.openapi.unwrap();
        assert_eq!(
            openapi.file.unwrap().to_str(),
            Some("conf $x/\"openapi\".json")
        );
    }

    #[test]
    fn no_operations_is_an_empty_map() {
        let model = Model {
            title: None,
            entries: Vec::new(),
            llm: false,
            declared: Default::default(),
            copy: None,
        };
        let text = config(&settings(), &model);
        assert!(text.contains("  operations: {}\n"), "{text}");
        let lookup = |name: &str| {
            (name == "MOAT_JWT_SECRET" || name == "MOAT_KEY_PEPPER").then(|| "s".repeat(40))
        };
        if let Err(problems) = Config::parse(&text, &lookup) {
            panic!("{problems:?}\n{text}");
        }
    }
}
