//! From `[stack]` and `[middleware.*]` to a [`Stack`]: the kinds a table can name, the
//! application's own middlewares, the order, and the printed stack.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::shown::keys_of;
use super::{Config, FileError};
use crate::{Entry, MiddlewareKind};

type Factory = Arc<dyn Fn(&MiddlewareSettings<'_>) -> Result<Entry, FileError> + Send + Sync>;

/// The factory of one of callnext's own kinds.
pub(crate) type BuiltinFactory = fn(&MiddlewareSettings<'_>) -> Result<Entry, FileError>;

pub(super) struct Kind {
    pub(super) name: String,
    pub(super) factory: Factory,
    /// Position in the recommended order (DESIGN.md); `None` for the application's own.
    pub(super) rank: Option<u32>,
    /// An application middleware registered by name: may stand in `order` without a table.
    pub(super) by_name: bool,
}

/// The middleware kinds a configuration can name: callnext's own, and the application's.
///
/// ```
/// use callnext::config::{Config, Registry};
/// use callnext::{Entry, Next, Request, Response};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Greeting {
///     text: String,
/// }
///
/// async fn greet(req: Request, next: Next<'_>) -> Response {
///     next.run(req).await
/// }
///
/// let registry = Registry::new()
///     // Settings from `[middleware.greeting]`, checked when the stack is built.
///     .middleware("greeting", |settings| {
///         let greeting: Greeting = settings.parse()?;
///         assert_eq!(greeting.text, "hi");
///         Ok(Entry::func(greet))
///     });
/// let config = Config::parse("[middleware.greeting]\ntext = \"hi\"\n", "app.toml", &[]).unwrap();
/// assert_eq!(config.stack(&registry).unwrap().len(), 1);
///
/// let config = Config::parse("[middleware.greeting]\ntxt = \"hi\"\n", "app.toml", &[]).unwrap();
/// assert_eq!(
///     config.stack(&registry).unwrap_err().to_string(),
///     "app.toml:2: `middleware.greeting.txt`: unknown field `txt`, expected `text`"
/// );
/// ```
#[derive(Clone)]
pub struct Registry {
    pub(super) kinds: Vec<Arc<Kind>>,
    /// The Redis clients of the stacks built with this registry, one per URL: a configuration
    /// reload that keeps a URL keeps its client (and its connection).
    #[cfg(feature = "redis")]
    pub(super) redis: Arc<std::sync::Mutex<Vec<crate::backends::Redis>>>,
    /// The SQL stores (and their pools) of the stacks built with this registry, one per type
    /// and URL, kept the same way.
    pub(super) stores: Arc<std::sync::Mutex<Vec<SharedStore>>>,
}

/// A store shared by the stacks of one registry: its type, the URL it was opened with, and
/// the store.
pub(super) type SharedStore = (
    std::any::TypeId,
    String,
    Box<dyn std::any::Any + Send + Sync>,
);

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.kinds.iter().map(|k| &k.name))
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A registry of `builtin` kinds (name, rank in the recommended order, factory): callnext's
    /// batteries, listed where they are assembled (`Registry::new`).
    pub(crate) fn with_builtin(builtin: &[(&str, u32, BuiltinFactory)]) -> Self {
        let kinds = builtin
            .iter()
            .map(|&(name, rank, factory)| {
                Arc::new(Kind {
                    name: name.to_owned(),
                    factory: Arc::new(factory),
                    rank: Some(rank),
                    by_name: false,
                })
            })
            .collect();
        Self {
            kinds,
            #[cfg(feature = "redis")]
            redis: Arc::default(),
            stores: Arc::default(),
        }
    }

    /// A kind that `[middleware.<name>]` tables can name with `kind = "..."`. Without an
    /// `order`, its entries go after callnext's batteries, with the application's own.
    #[must_use]
    pub fn kind<F>(mut self, kind: &str, factory: F) -> Self
    where
        F: Fn(&MiddlewareSettings<'_>) -> Result<Entry, FileError> + Send + Sync + 'static,
    {
        self.add(kind, Arc::new(factory), false);
        self
    }

    /// An application middleware by name: `[stack] order` may list it without a table (its
    /// settings are then empty), and a `[middleware.<name>]` table gives it settings. Without
    /// an `order`, the application's middlewares go after callnext's batteries, in the order
    /// they are registered here.
    #[must_use]
    pub fn middleware<F>(mut self, name: &str, factory: F) -> Self
    where
        F: Fn(&MiddlewareSettings<'_>) -> Result<Entry, FileError> + Send + Sync + 'static,
    {
        self.add(name, Arc::new(factory), true);
        self
    }

    fn add(&mut self, name: &str, factory: Factory, by_name: bool) {
        self.kinds.retain(|k| k.name != name);
        self.kinds.push(Arc::new(Kind {
            name: name.to_owned(),
            factory,
            rank: None,
            by_name,
        }));
    }

    pub(super) fn get(&self, kind: &str) -> Option<&Kind> {
        self.kinds.iter().find(|k| k.name == kind).map(|k| &**k)
    }

    pub(super) fn names(&self) -> String {
        list(self.kinds.iter())
    }

    pub(super) fn app_names(&self) -> String {
        let names = list(self.kinds.iter().filter(|k| k.by_name));
        if names.is_empty() {
            "it has none".to_owned()
        } else {
            names
        }
    }
}

fn list<'a>(kinds: impl Iterator<Item = &'a Arc<Kind>>) -> String {
    kinds
        .map(|k| format!("`{}`", k.name))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Registry {}

/// One middleware's settings, as its factory sees them.
#[derive(Debug)]
pub struct MiddlewareSettings<'a> {
    pub(super) name: &'a str,
    pub(super) kind: &'a str,
    pub(super) table: Option<&'a toml::Table>,
    pub(super) config: &'a Config,
    #[cfg(feature = "redis")]
    pub(super) redis: &'a std::sync::Mutex<Vec<crate::backends::Redis>>,
    pub(super) stores: &'a std::sync::Mutex<Vec<SharedStore>>,
    /// The keys of the settings type [`parse`](Self::parse) read the table as.
    pub(super) keys: std::cell::Cell<&'static [&'static str]>,
    /// The table as [`parse_shown`](Self::parse_shown) read it, secrets by their type.
    pub(super) shown: std::cell::RefCell<Option<toml::Table>>,
}

impl MiddlewareSettings<'_> {
    /// The Redis at `url`, shared with every other entry that names the same URL, in this
    /// stack and in those a configuration reload builds (one client per server).
    ///
    /// # Errors
    ///
    /// A URL the `redis` crate cannot read, at `key`.
    #[cfg(feature = "redis")]
    pub fn redis(&self, key: &str, url: &str) -> Result<crate::backends::Redis, FileError> {
        let mut clients = self
            .redis
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let redis = crate::backends::Redis::open(url).map_err(|err| self.error(key, err))?;
        if let Some(shared) = clients.iter().find(|r| r.opened_with(url)) {
            return Ok(shared.clone());
        }
        clients.push(redis.clone());
        Ok(redis)
    }

    /// The store of type `T` at `url`: opened by `open` the first time a stack built with this
    /// registry asks for it, then the same store (a clone, sharing its pool) for every later
    /// stack, as a configuration reload that keeps the URL builds.
    #[cfg_attr(not(feature = "sql"), allow(dead_code))]
    pub(crate) fn shared_store<T: Clone + Send + Sync + 'static>(
        &self,
        url: &str,
        open: impl FnOnce() -> Result<T, FileError>,
    ) -> Result<T, FileError> {
        let mut stores = self
            .stores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let kind = std::any::TypeId::of::<T>();
        let found = stores
            .iter()
            .filter(|(k, u, _)| *k == kind && u == url)
            .find_map(|(_, _, store)| store.downcast_ref::<T>());
        if let Some(store) = found {
            return Ok(store.clone());
        }
        let store = open()?;
        stores.push((kind, url.to_owned(), Box::new(store.clone())));
        Ok(store)
    }

    /// The entry's name (its `[middleware.<name>]` table, or its name in `order`).
    pub fn name(&self) -> &str {
        self.name
    }

    /// Its kind.
    pub fn kind(&self) -> &str {
        self.kind
    }

    /// The whole configuration (for settings of the application's own tables).
    pub fn config(&self) -> &Config {
        self.config
    }

    /// The table's keys (but `kind`) as `T`; an absent table is an empty one.
    ///
    /// # Errors
    ///
    /// A key of the wrong type or value, or unknown (with `#[serde(deny_unknown_fields)]`),
    /// with its file, line and dotted key.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, FileError> {
        self.keys.set(keys_of::<T>());
        let mut table = self.table.cloned().unwrap_or_default();
        table.remove("kind");
        serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|err| self.error(&err.path().to_string(), err.inner().message()))
    }

    /// Like [`parse`](Self::parse), and what `--print-stack` and the live page show of the
    /// table comes from `T` serialized: a [`Secret`](super::Secret) field shows as
    /// `<redacted>` whatever its key is named, and every URL loses the password in its
    /// userinfo and query. (A table read with [`parse`](Self::parse) alone is shown with the
    /// values of keys named like secrets hidden.)
    ///
    /// # Errors
    ///
    /// As [`parse`](Self::parse).
    pub fn parse_shown<T: DeserializeOwned + serde::Serialize>(&self) -> Result<T, FileError> {
        let parsed: T = self.parse()?;
        if let Ok(toml::Value::Table(table)) = toml::Value::try_from(&parsed) {
            self.shown.replace(Some(table));
        }
        Ok(parsed)
    }

    /// A builder's error at the key it names, when that is a key of the table (else at the
    /// table).
    pub fn built(&self, err: &crate::ConfigError) -> FileError {
        let key = err
            .setting()
            .filter(|k| {
                self.keys.get().contains(k) || self.table.is_some_and(|t| t.contains_key(*k))
            })
            .unwrap_or("");
        self.error(key, err)
    }

    /// An error at `key` of this middleware's table.
    pub fn error(&self, key: &str, message: impl fmt::Display) -> FileError {
        let key = if key.is_empty() || key == "." {
            format!("middleware.{}", self.name)
        } else {
            format!("middleware.{}.{key}", self.name)
        };
        self.config.error(&key, message)
    }
}

/// One line of `--print-stack`: an entry and its settings, secrets redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StackLine {
    /// Position in execution order.
    pub index: usize,
    /// The entry's name.
    pub name: String,
    /// Its configuration kind (`process_time`, or the application middleware's name).
    pub kind: String,
    /// How it runs (function, struct, hook, tower).
    pub runs_as: MiddlewareKind,
    /// Its settings as `key=value`, secrets redacted.
    pub settings: Vec<String>,
}

impl fmt::Display for StackLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>3}  {:<18} {:<16} {:<9}",
            self.index,
            self.name,
            self.kind,
            self.runs_as.to_string()
        )?;
        if self.settings.is_empty() {
            f.write_str(" (defaults)")
        } else {
            write!(f, " {}", self.settings.join(" "))
        }
    }
}
