//! [`KeyCommand`]: the `callnext keys` subcommand (make, list, revoke API keys), for an
//! application's own binary too.

use std::process::ExitCode;

use super::{KeyStoreError, SqlKeyStore};

/// One `keys` command: what `callnext keys ...` runs, and what an application's own binary
/// runs in one line with [`KeyCommand::parse`] and [`KeyCommand::run`].
///
/// ```no_run
/// use callnext::middleware::auth::{KeyCommand, SqlKeyStore};
///
/// # async fn cli() -> std::process::ExitCode {
/// // myapp keys create --name reporting --scopes reports:read
/// let args: Vec<String> = std::env::args().skip(2).collect();
/// let store = SqlKeyStore::open("sqlite://keys.db").unwrap();
/// match KeyCommand::parse(&args) {
///     Ok(command) => command.run(&store).await,
///     Err(usage) => {
///         eprintln!("{usage}");
///         std::process::ExitCode::from(2)
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyCommand {
    /// `create --name NAME [--scopes a,b]`: makes a key and prints it, once (only its digest
    /// is stored).
    Create {
        /// Who or what holds the key.
        name: String,
        /// Its scopes.
        scopes: Vec<String>,
    },
    /// `list`: the keys (id, name, scopes, made, revoked); never the keys themselves.
    List,
    /// `revoke ID_OR_NAME`: the key with this public id, or every live key of this name;
    /// fails (exit code 1) when there was no such live key.
    Revoke {
        /// A public id (`cnk_<id>_...`) or a name.
        key: String,
    },
}

/// How the commands are written.
const USAGE: &str =
    "usage: keys create --name NAME [--scopes a,b] | keys list | keys revoke ID_OR_NAME";

impl KeyCommand {
    /// Reads a command from its arguments (those after `keys`).
    ///
    /// # Errors
    ///
    /// A line of usage when the arguments are not a command.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Self, String> {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        match args.as_slice() {
            ["list"] => Ok(Self::List),
            ["revoke", key] => Ok(Self::Revoke {
                key: (*key).to_owned(),
            }),
            ["create", rest @ ..] => {
                let (mut name, mut scopes) = (None, Vec::new());
                let mut rest = rest.iter();
                while let Some(flag) = rest.next() {
                    let value = rest.next().ok_or_else(|| USAGE.to_owned())?;
                    match *flag {
                        "--name" => name = Some((*value).to_owned()),
                        "--scopes" => {
                            scopes = value
                                .split(',')
                                .filter(|s| !s.is_empty())
                                .map(str::to_owned)
                                .collect();
                        }
                        _ => return Err(USAGE.to_owned()),
                    }
                }
                let name = name.ok_or_else(|| USAGE.to_owned())?;
                Ok(Self::Create { name, scopes })
            }
            _ => Err(USAGE.to_owned()),
        }
    }

    /// Runs the command against `store`, printing what it did (the new key on stdout, the
    /// rest as `callnext keys` does); the exit code says whether it did it.
    pub async fn run(&self, store: &SqlKeyStore) -> ExitCode {
        match self.execute(store).await {
            Ok(code) => code,
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::FAILURE
            }
        }
    }

    async fn execute(&self, keys: &SqlKeyStore) -> Result<ExitCode, KeyStoreError> {
        match self {
            Self::Create { name, scopes } => {
                let made = keys.create(name, scopes).await?;
                println!("{}", made.key);
                eprintln!(
                    "made key {} for {name}: keep it now, it is not shown again",
                    made.stored.id
                );
            }
            Self::List => {
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
            Self::Revoke { key } => {
                if keys.revoke(key).await? {
                    println!("revoked {key}");
                } else {
                    let named = keys.revoke_named(key).await?;
                    if named == 0 {
                        // A script revoking a leaked key must see that nothing was done.
                        eprintln!("error: no live key with id or name `{key}`");
                        return Ok(ExitCode::FAILURE);
                    }
                    println!("revoked {named} key(s) named {key}");
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_read_from_their_arguments() {
        assert_eq!(KeyCommand::parse(&["list"]), Ok(KeyCommand::List));
        assert_eq!(
            KeyCommand::parse(&["create", "--name", "ci", "--scopes", "a,b"]),
            Ok(KeyCommand::Create {
                name: "ci".to_owned(),
                scopes: vec!["a".to_owned(), "b".to_owned()]
            })
        );
        assert_eq!(
            KeyCommand::parse(&["revoke", "0123456789abcdef"]),
            Ok(KeyCommand::Revoke {
                key: "0123456789abcdef".to_owned()
            })
        );
        for bad in [
            &[][..],
            &["create"],
            &["create", "--name"],
            &["revoke"],
            &["drop", "x"],
        ] {
            assert_eq!(KeyCommand::parse(bad), Err(USAGE.to_owned()), "{bad:?}");
        }
    }
}
