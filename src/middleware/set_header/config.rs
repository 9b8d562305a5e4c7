//! `[middleware.set_header]`: the table's keys and their defaults, checked into the builder.

use serde::{Deserialize, Serialize};

use super::{Mode, SetHeaders};
use crate::config::fields::header_name;
use crate::config::{FileError, MiddlewareSettings, Secret};
use crate::Entry;
use std::collections::BTreeMap;

/// A `[middleware.set_header]` table's entry.
pub(crate) fn from_config(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        request_set: BTreeMap<String, Secret>,
        request_append: BTreeMap<String, Secret>,
        request_if_absent: BTreeMap<String, Secret>,
        response_set: BTreeMap<String, Secret>,
        response_append: BTreeMap<String, Secret>,
        response_if_absent: BTreeMap<String, Secret>,
    }
    let s: Settings = settings.parse_shown()?;
    let mut headers = SetHeaders::new();
    let groups = [
        ("request_set", &s.request_set, true, Mode::Set),
        ("request_append", &s.request_append, true, Mode::Append),
        (
            "request_if_absent",
            &s.request_if_absent,
            true,
            Mode::IfAbsent,
        ),
        ("response_set", &s.response_set, false, Mode::Set),
        ("response_append", &s.response_append, false, Mode::Append),
        (
            "response_if_absent",
            &s.response_if_absent,
            false,
            Mode::IfAbsent,
        ),
    ];
    for (key, map, request, mode) in groups {
        for (name, value) in map {
            let name = header_name(settings, &format!("{key}.{name}"), name)?;
            let value = http::HeaderValue::from_str(value.expose())
                .map_err(|_| settings.error(&format!("{key}.{name}"), "not a header value"))?;
            headers = if request {
                headers.request(mode, name, value)
            } else {
                headers.response(mode, name, value)
            };
        }
    }
    Ok(Entry::hook(headers))
}
