//! `callnext keys`: make, list and revoke the API keys of `[middleware.auth] api_keys`.

use std::process::ExitCode;

use callnext::config::Config;
use callnext::middleware::auth::{KeyCommand, SqlKeyStore};

/// What to do with the keys.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeysAction {
    /// Make a key and print it, once: only its digest is stored.
    Create {
        /// Who or what holds the key.
        #[arg(long)]
        name: String,
        /// Scopes, comma-separated (`reports:read,reports:write`).
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
    },
    /// List the keys (id, name, scopes, made, revoked); never the keys themselves.
    List,
    /// Revoke the key with this public id (`cnk_<id>_...`), or every live key of this name;
    /// exits 1 when there was no such live key.
    Revoke {
        /// The key's public id, or the name it was made with.
        key: String,
    },
}

/// The `api_keys` URL of the configuration's auth table (`--store` wins).
fn store_url(config: &Config, store: Option<String>) -> Option<String> {
    store.or_else(|| {
        config.middleware.iter().find_map(|(name, table)| {
            let kind = table.get("kind").and_then(|k| k.as_str()).unwrap_or(name);
            (kind == "auth")
                .then(|| table.get("api_keys")?.as_str().map(str::to_owned))
                .flatten()
        })
    })
}

pub(crate) fn run(config: &Config, store: Option<String>, action: KeysAction) -> ExitCode {
    let Some(url) = store_url(config, store).filter(|u| !u.is_empty()) else {
        eprintln!("error: no key store: set `[middleware.auth] api_keys` in the configuration, or --store");
        return ExitCode::from(2);
    };
    let keys = match SqlKeyStore::open(&url) {
        Ok(keys) => keys,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let command = match action {
        KeysAction::Create { name, scopes } => KeyCommand::Create { name, scopes },
        KeysAction::List => KeyCommand::List,
        KeysAction::Revoke { key } => KeyCommand::Revoke { key },
    };
    runtime.block_on(command.run(&keys))
}
