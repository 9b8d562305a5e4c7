//! `callnext keys`: make, list and revoke the API keys of `[middleware.auth] api_keys`.

use std::process::ExitCode;

use callnext::config::Config;
use callnext::middleware::auth::SqlKeyStore;

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
    let done = runtime.block_on(async {
        match action {
            KeysAction::Create { name, scopes } => {
                let made = keys.create(&name, &scopes).await?;
                println!("{}", made.key);
                eprintln!(
                    "made key {} for {name}: keep it now, it is not shown again",
                    made.stored.id
                );
            }
            KeysAction::List => {
                println!(
                    "{:<16}  {:<20}  {:<13}  {:<13}  scopes",
                    "id", "name", "made (ms)", "revoked (ms)"
                );
                for key in keys.list().await? {
                    let revoked = key
                        .revoked_ms
                        .map_or_else(|| "-".to_owned(), |t| t.to_string());
                    println!(
                        "{:<16}  {:<20}  {:<13}  {:<13}  {}",
                        key.id,
                        key.name,
                        key.created_ms,
                        revoked,
                        key.scopes.join(",")
                    );
                }
            }
            KeysAction::Revoke { key } => {
                if keys.revoke(&key).await? {
                    println!("revoked {key}");
                } else {
                    let named = keys.revoke_named(&key).await?;
                    if named == 0 {
                        // A script revoking a leaked key must see that nothing was done.
                        eprintln!("error: no live key with id or name `{key}`");
                        return Ok(ExitCode::FAILURE);
                    }
                    println!("revoked {named} key(s) named {key}");
                }
            }
        }
        Ok::<_, callnext::middleware::auth::KeyStoreError>(ExitCode::SUCCESS)
    });
    match done {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
