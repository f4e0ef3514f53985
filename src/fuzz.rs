//! Every parser of untrusted bytes as a fuzz target: the list `fuzz/` builds its libFuzzer
//! targets from and `tests/fuzz_targets.rs` replays on stable (the checked-in corpus, then
//! random inputs). Each target lives beside the code it drives and asserts that code's own
//! invariants; a new parser adds its line here (ARCHITECTURE.md, "Adding a stage").

/// One fuzz target: a name (its directory under `fuzz/corpus/`) and its function.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "path",
        run: crate::frame::fuzz::target,
    },
    Target {
        name: "credentials",
        run: crate::auth::fuzz::credentials,
    },
    Target {
        name: "api_key",
        run: crate::auth::fuzz::api_key,
    },
    Target {
        name: "key_store",
        run: crate::auth::fuzz::key_store,
    },
    Target {
        name: "jwt",
        run: crate::auth::fuzz::jwt,
    },
    Target {
        name: "json",
        run: crate::validate::json::fuzz::json,
    },
    Target {
        name: "plan",
        run: crate::validate::json::fuzz::plan,
    },
    Target {
        name: "params",
        run: crate::validate::fuzz::params,
    },
    Target {
        name: "form",
        run: crate::validate::fuzz::form,
    },
    Target {
        name: "config",
        run: crate::config::fuzz::target,
    },
    Target {
        name: "dotenv",
        run: crate::secrets::fuzz::dotenv,
    },
    Target {
        name: "overlay",
        run: crate::spec::overlay::fuzz::target,
    },
    Target {
        name: "sse",
        run: crate::llm::meter::fuzz::target,
    },
    Target {
        name: "grpc",
        run: crate::grpc::fuzz::target,
    },
    Target {
        name: "grpc_message",
        run: crate::grpc::fuzz::message,
    },
    #[cfg(feature = "age")]
    Target {
        name: "encrypted_env",
        run: crate::secrets::fuzz::encrypted_env,
    },
];

/// Runs the target called `name` on `bytes`.
///
/// # Panics
/// When no target has that name, or when the target finds a defect (a fuzzer's finding).
pub fn run(name: &str, bytes: &[u8]) {
    match TARGETS.iter().find(|target| target.name == name) {
        Some(target) => (target.run)(bytes),
        None => panic!("no fuzz target `{name}`"),
    }
}
