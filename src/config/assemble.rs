//! From `[stack]` and `[middleware.*]` to a [`Stack`](crate::Stack): the entries planned in
//! order, each built by its kind, and what `--print-stack` and `--print-config` show.

#[allow(clippy::wildcard_imports)]
use super::registry::*;
use super::shown::{redact, redact_urls_in, redacted, shown_settings};
use super::{Config, FileError};
use crate::Stack;
use std::collections::BTreeMap;

/// One planned entry: its name, kind and table.
struct Planned<'a> {
    name: &'a str,
    kind: &'a Kind,
    table: Option<&'a toml::Table>,
}

impl Config {
    /// The stack `[stack]` and `[middleware.*]` describe, with the `[server] trusted_proxies`
    /// that set each request's [`ClientIp`](crate::ClientIp).
    ///
    /// # Errors
    ///
    /// A name in `order` with no table that is no application middleware, a table left out
    /// of a given `order`, a name listed twice, an unknown kind, or a middleware's invalid
    /// settings.
    pub fn stack(&self, registry: &Registry) -> Result<Stack, FileError> {
        Ok(self.build(registry)?.0)
    }

    /// What [`Config::stack`] builds, line by line (for `--print-stack`).
    ///
    /// # Errors
    ///
    /// As [`Config::stack`].
    pub fn describe_stack(&self, registry: &Registry) -> Result<Vec<StackLine>, FileError> {
        Ok(self.build(registry)?.1)
    }

    /// The whole configuration as TOML (what `callnext --print-config` prints), with each
    /// `[middleware.*]` table as its kind reads it: defaults filled in, secrets shown as
    /// `<redacted>` by their type, URLs without credentials. [`Config::to_toml`] does the same
    /// without a registry, hiding the values of keys named like secrets.
    ///
    /// # Errors
    ///
    /// As [`Config::stack`].
    pub fn to_toml_with(&self, registry: &Registry) -> Result<String, FileError> {
        let shown = self.build(registry)?.2;
        Ok(self.render(Some(shown)))
    }

    #[allow(clippy::type_complexity)] // used by the three methods above only
    fn build(
        &self,
        registry: &Registry,
    ) -> Result<(Stack, Vec<StackLine>, BTreeMap<String, toml::Value>), FileError> {
        let settings = &self.stack;
        let mut stack = Stack::new()
            .name(settings.name.clone())
            .instrument(settings.instrument)
            .blocking_threshold(settings.blocking_threshold.get())
            .server_timing(settings.server_timing)
            .strict_order(settings.strict_order)
            .debug(settings.debug)
            .json_rejections(settings.json_rejections)
            .trusted_proxies(self.trusted_proxies()?);
        #[cfg(feature = "otel")]
        if !self.telemetry.endpoint.is_empty() {
            let telemetry = self.telemetry_settings()?.build().map_err(|err| {
                let key = err
                    .setting()
                    .filter(|k| ["sampling_ratio", "headers"].contains(k))
                    .unwrap_or("endpoint");
                self.error(&format!("telemetry.{key}"), &err)
            })?;
            stack = stack.telemetry(telemetry);
        }
        let mut lines = Vec::new();
        let mut tables = BTreeMap::new();
        for (index, planned) in self.plan(registry)?.into_iter().enumerate() {
            let middleware = MiddlewareSettings {
                name: planned.name,
                kind: &planned.kind.name,
                table: planned.table,
                config: self,
                #[cfg(feature = "redis")]
                redis: &registry.redis,
                stores: &registry.stores,
                keys: std::cell::Cell::new(&[]),
                shown: std::cell::RefCell::default(),
            };
            let mut entry = (planned.kind.factory)(&middleware)?.named(planned.name.to_owned());
            let shown = middleware.shown.take();
            let settings = match (&shown, planned.table) {
                (Some(shown), Some(table)) => shown_settings(shown, table),
                (None, Some(table)) => redacted(table),
                (_, None) => Vec::new(),
            };
            let mut table = match (shown, planned.table) {
                (Some(mut shown), raw) => {
                    if let Some(kind) = raw.and_then(|t| t.get("kind")) {
                        shown.insert("kind".to_owned(), kind.clone());
                    }
                    toml::Value::Table(shown)
                }
                (None, raw) => {
                    let mut raw = toml::Value::Table(raw.cloned().unwrap_or_default());
                    redact(planned.name, &mut raw);
                    raw
                }
            };
            redact_urls_in(&mut table);
            tables.insert(planned.name.to_owned(), table);
            entry.settings = Some(settings.clone().into());
            lines.push(StackLine {
                index,
                name: planned.name.to_owned(),
                kind: planned.kind.name.clone(),
                runs_as: entry.kind(),
                settings,
            });
            stack = stack.push(entry);
        }
        stack
            .validate()
            .map_err(|err| self.error("stack.order", err))?;
        if settings.strict_order {
            if let Some(warning) = stack.lint().into_iter().find(|w| w.is_order_rule()) {
                return Err(self.error("stack.order", warning));
            }
        }
        Ok((stack, lines, tables))
    }

    fn plan<'a>(&'a self, registry: &'a Registry) -> Result<Vec<Planned<'a>>, FileError> {
        let resolve = |name: &'a str| -> Result<Planned<'a>, FileError> {
            let table = self.middleware.get(name);
            let kind_name = match table.and_then(|t| t.get("kind")) {
                None => name,
                Some(toml::Value::String(kind)) => kind.as_str(),
                Some(other) => {
                    return Err(self.error(
                        &format!("middleware.{name}.kind"),
                        format!("expected a string, got {}", other.type_str()),
                    ))
                }
            };
            match registry.get(kind_name) {
                Some(kind) if table.is_some() || kind.by_name => Ok(Planned { name, kind, table }),
                Some(_) => Err(self.error(
                    "stack.order",
                    format!("`{name}` has no [middleware.{name}] table"),
                )),
                None if table.is_some() => Err(self.error(
                    &format!("middleware.{name}"),
                    format!("unknown middleware kind `{kind_name}`, expected one of {}", registry.names()),
                )),
                None => Err(self.error(
                    "stack.order",
                    format!(
                        "`{name}` has no [middleware.{name}] table and is not a middleware of the application ({})",
                        registry.app_names()
                    ),
                )),
            }
        };
        if let Some(order) = &self.stack.order {
            let mut planned = Vec::with_capacity(order.len());
            for (i, name) in order.iter().enumerate() {
                if order[..i].contains(name) {
                    return Err(self.error("stack.order", format!("`{name}` is listed twice")));
                }
                planned.push(resolve(name)?);
            }
            if let Some(left_out) = self.middleware.keys().find(|t| !order.contains(t)) {
                return Err(self.error(
                    &format!("middleware.{left_out}"),
                    "this table is not in [stack] order; add it there or remove the table",
                ));
            }
            return Ok(planned);
        }
        // The recommended order: callnext's batteries by rank, then the application's own
        // middlewares in registration order, then tables of other application kinds.
        let mut batteries = Vec::new();
        let mut others = Vec::new();
        for name in self.middleware.keys() {
            let planned = resolve(name)?;
            match planned.kind.rank {
                Some(rank) => batteries.push((rank, planned)),
                None if planned.kind.by_name && planned.kind.name == *name => {}
                None => others.push(planned),
            }
        }
        batteries.sort_by_key(|(rank, _)| *rank);
        let mut planned: Vec<Planned<'a>> = batteries.into_iter().map(|(_, p)| p).collect();
        for kind in registry.kinds.iter().filter(|k| k.by_name) {
            planned.push(resolve(&kind.name)?);
        }
        planned.extend(others);
        Ok(planned)
    }
}
