//! Compiling a stack's entries into a [`StackService`]: boundaries numbered, consecutive hooks
//! grouped, each tower layer's service built once around the rest, metrics registered.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::boundary::panic_message;
use super::chain::{Chain, Compiled};
use super::endpoint::endpoint;
use super::entry::Entry;
use super::entry::EntryDef;
use super::hook_group::{GroupHook, HookGroup, MAX_GROUP};
use super::service::StackInner;
use super::tower::NextService;
use super::{HttpService, StackService};
use crate::clock::ticks::duration_to_ticks;
use crate::error::{ConfigError, ConfigErrorKind};
use crate::instrument::report::StackReport;
use crate::instrument::timings::Span;
use crate::instrument::BlockingStats;

/// A run of the compiled chain: one entry, or several consecutive hooks.
enum Unit {
    Single(usize),
    Hooks(std::ops::Range<usize>),
}

/// Per-stack settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) instrument: bool,
    pub(crate) blocking_threshold: std::time::Duration,
    pub(crate) server_timing: bool,
    pub(crate) record_timings: bool,
    pub(crate) fastapi_bodies: bool,
    pub(crate) json_rejections: bool,
    pub(crate) trusted_proxies: Arc<crate::TrustedProxies>,
    pub(crate) strict_order: bool,
    pub(crate) debug: bool,
    pub(crate) handlers: super::handlers::Handlers,
    /// Traces exported over OTLP.
    #[cfg(feature = "otel")]
    pub(crate) telemetry: Option<crate::telemetry::Telemetry>,
}

/// Everything a build reads from the stack it builds.
pub(crate) struct Blueprint<'a> {
    pub(crate) entries: &'a [Entry],
    pub(crate) settings: &'a Settings,
    /// The `stack` label of its metrics.
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub(crate) name: &'a str,
    pub(crate) app_stats: &'a Arc<BlockingStats>,
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub(crate) identity: &'a Arc<dyn Send + Sync>,
    pub(crate) body_stats: &'a Arc<BlockingStats>,
    pub(crate) background: &'a Arc<crate::background::Tracker>,
    #[cfg(feature = "prometheus")]
    pub(crate) metrics: Option<&'a crate::metrics::Metrics>,
    pub(crate) live: Option<&'a crate::admin::LivePage>,
}

pub(crate) fn compile<S: HttpService>(
    stack: &Blueprint<'_>,
    app: S,
) -> Result<StackService, ConfigError> {
    let entries = &stack.entries;
    let app_slot = entries.len();

    // Boundaries are numbered in stack order, one per entry (each hook its own), then the app.
    let mut units = Vec::new();
    let mut spans = Vec::with_capacity(entries.len() + 1);
    for (i, entry) in entries.iter().enumerate() {
        match (&entry.def, units.last_mut()) {
            (EntryDef::Hook(_), Some(Unit::Hooks(run))) if run.len() < MAX_GROUP => {
                run.end = i + 1;
            }
            (EntryDef::Hook(_), _) => units.push(Unit::Hooks(i..i + 1)),
            _ => units.push(Unit::Single(i)),
        }
        spans.push(match units.last() {
            Some(Unit::Hooks(run)) => Span::Hook {
                group_first: run.start,
            },
            _ => Span::Around,
        });
    }
    spans.push(Span::Around);

    let names: Box<[Box<str>]> = entries
        .iter()
        .map(|e| Box::from(&*e.name))
        .chain(["app".into(), "body".into()])
        .collect();
    let stats: Box<[Arc<BlockingStats>]> = entries
        .iter()
        .map(|e| Arc::clone(&e.stats))
        .chain([Arc::clone(stack.app_stats), Arc::clone(stack.body_stats)])
        .collect();
    let settings = stack.settings;
    let live = stack
        .live
        .map(|page| page.recorder(stack.identity, || live_parts(stack, &names, &stats)));
    let options = super::endpoint::AppOptions {
        fastapi_bodies: settings.fastapi_bodies,
        json_rejections: settings.json_rejections,
        route_on_response: entries.iter().any(|e| e.caps.order.needs_route),
    };
    let (endpoint, app_reports_route) = endpoint(app, app_slot, options);
    let report = Arc::new(StackReport {
        app_reports_route,
        debug: settings.debug,
        handlers: (!settings.handlers.is_empty()).then(|| settings.handlers.clone()),
        #[cfg(feature = "prometheus")]
        metrics: stack_metrics(stack, &names)?,
        names,
        spans: spans.into(),
        stats,
        timed: settings.instrument,
        // Untimed stacks never touch the clock (its calibration is not free at start-up).
        threshold: if settings.instrument {
            duration_to_ticks(settings.blocking_threshold)
        } else {
            u64::MAX
        },
        server_timing: settings.server_timing,
        record_timings: settings.record_timings,
        live,
    });

    // Built from the inside out: a tower layer wraps the segment after it.
    let mut endpoint = Some(endpoint);
    let mut segment: Vec<Compiled> = Vec::new();
    for unit in units.iter().rev() {
        match *unit {
            Unit::Hooks(ref run) => {
                let hooks = run
                    .clone()
                    .map(|i| GroupHook {
                        hook: match &entries[i].def {
                            EntryDef::Hook(hook) => Arc::clone(hook),
                            _ => unreachable!("a run of hooks holds hooks"),
                        },
                        name: Arc::from(&*entries[i].name),
                        slot: i,
                    })
                    .collect();
                segment.push(Compiled {
                    entry: Arc::new(HookGroup { hooks }),
                    name: Box::from(&*entries[run.start].name),
                    slot: run.start,
                });
            }
            Unit::Single(i) => {
                let entry = &entries[i];
                let built = match &entry.def {
                    EntryDef::Around(around) => Arc::clone(around),
                    EntryDef::Hook(_) => unreachable!("hooks are grouped"),
                    EntryDef::Tower(build) => {
                        segment.reverse();
                        let rest = Arc::new(Chain {
                            entries: std::mem::take(&mut segment).into(),
                            endpoint: endpoint.take(),
                            report: Arc::clone(&report),
                        });
                        catch_unwind(AssertUnwindSafe(|| build.build(NextService::new(rest))))
                            .map_err(|payload| {
                                ConfigError::new(
                                    ConfigErrorKind::LayerFailed,
                                    format!(
                                        "tower layer `{}` failed while its service was built: {}",
                                        entry.name,
                                        panic_message(&*payload)
                                    ),
                                )
                            })?
                    }
                };
                segment.push(Compiled {
                    entry: built,
                    name: Box::from(&*entry.name),
                    slot: i,
                });
            }
        }
    }
    segment.reverse();
    let shared_ctx = entries.iter().any(|e| matches!(e.def, EntryDef::Tower(_)));
    Ok(StackService::new(StackInner {
        chain: Arc::new(Chain {
            entries: segment.into(),
            endpoint,
            report,
        }),
        shared_ctx,
        trusted_proxies: Arc::clone(&settings.trusted_proxies),
        background: Arc::clone(stack.background),
        debug: settings.debug,
        #[cfg(feature = "otel")]
        telemetry: settings.telemetry.clone(),
    }))
}

/// What the live page is told of a stack when its first service is built.
fn live_parts(
    stack: &Blueprint<'_>,
    names: &[Box<str>],
    stats: &[Arc<BlockingStats>],
) -> crate::admin::live::Parts {
    use crate::admin::live::{BackendView, EntryView};
    let mut entries: Vec<EntryView> = stack
        .entries
        .iter()
        .enumerate()
        .map(|(index, e)| EntryView {
            index,
            name: e.name.to_string(),
            kind: e.kind.to_string(),
            battery: e.caps.kind,
            settings: e
                .settings
                .as_deref()
                .map(<[String]>::to_vec)
                .unwrap_or_default(),
        })
        .collect();
    for name in ["app", "body"] {
        entries.push(EntryView {
            index: entries.len(),
            name: name.to_owned(),
            kind: name.to_owned(),
            battery: None,
            settings: Vec::new(),
        });
    }
    crate::admin::live::Parts {
        name: stack.name.to_owned(),
        names: names.into(),
        entries,
        lint: super::lint::lint(stack.entries)
            .iter()
            .map(ToString::to_string)
            .collect(),
        timed: stack.settings.instrument,
        stats: stats.into(),
        backends: stack
            .entries
            .iter()
            .flat_map(|e| {
                e.caps
                    .stores
                    .iter()
                    .map(|b| BackendView::new(e.name.to_string(), b.clone()))
            })
            .collect(),
    }
}

#[cfg(feature = "prometheus")]
fn stack_metrics(
    stack: &Blueprint<'_>,
    names: &[Box<str>],
) -> Result<Option<crate::instrument::report::StackMetrics>, ConfigError> {
    use crate::metrics::{RequestMetrics, BLOCKING_TOTAL, POLL_SECONDS};
    let Some(metrics) = stack.metrics else {
        return Ok(None);
    };
    metrics.claim_stack(stack.name, stack.identity)?;
    for entry in stack.entries {
        if let Some(hook) = &entry.caps.metrics {
            hook(metrics, stack.name, &entry.name);
        }
    }
    let labels = |name: &str| {
        vec![
            ("stack", stack.name.to_string()),
            ("middleware", name.to_owned()),
        ]
    };
    Ok(Some(crate::instrument::report::StackMetrics {
        poll: names
            .iter()
            .map(|n| metrics.histogram(POLL_SECONDS, labels(n)))
            .collect(),
        blocking: names
            .iter()
            .map(|n| metrics.counter(BLOCKING_TOTAL, &labels(n)))
            .collect(),
        requests: RequestMetrics::new(metrics, Arc::from(stack.name)),
        _identity: Arc::clone(stack.identity),
    }))
}
