//! What `--print-stack`, `--print-config` and the live page show of a table: as its settings
//! type reads it (secrets by type), URLs without credentials; the keys of a settings type.

use serde::de::DeserializeOwned;

/// The field names of a settings struct, as its `Deserialize` declares them (none for a type
/// that is not a struct).
pub(super) fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Error, Visitor};

    struct Fields(&'static [&'static str]);

    impl<'de> serde::Deserializer<'de> for &mut Fields {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Self::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(Self::Error::custom("fields read"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut fields = Fields(&[]);
    let _ = T::deserialize(&mut fields);
    fields.0
}

/// A table's settings as `key=value`, secrets hidden ([`redact`]).
pub(super) fn redacted(table: &toml::Table) -> Vec<String> {
    table
        .iter()
        .filter(|(key, _)| key.as_str() != "kind")
        .map(|(key, value)| {
            let mut value = value.clone();
            redact(key, &mut value);
            format!("{key}={value}")
        })
        .collect()
}

/// The keys the file set, as the typed settings show them (secrets by type, URLs without
/// credentials).
pub(super) fn shown_settings(shown: &toml::Table, table: &toml::Table) -> Vec<String> {
    table
        .keys()
        .filter(|key| key.as_str() != "kind")
        .filter_map(|key| {
            let mut value = shown.get(key)?.clone();
            redact_urls_in(&mut value);
            Some(format!("{key}={value}"))
        })
        .collect()
}

/// Every URL in a value without the credentials in its userinfo and query.
pub(super) fn redact_urls_in(value: &mut toml::Value) {
    match value {
        toml::Value::String(s) => *s = crate::redact::redact_urls(s),
        toml::Value::Array(items) => items.iter_mut().for_each(redact_urls_in),
        toml::Value::Table(table) => table.iter_mut().for_each(|(_, v)| redact_urls_in(v)),
        _ => {}
    }
}

/// Hides secrets in a value: keys naming a secret, token or password lose their value, and
/// every URL its password (`redis://:pw@host`).
pub(super) fn redact(key: &str, value: &mut toml::Value) {
    let lower = key.to_ascii_lowercase();
    let secret = ["secret", "token", "password", "passwd"]
        .iter()
        .any(|s| lower.contains(s));
    match value {
        toml::Value::String(s) if secret && !s.is_empty() => *s = "<redacted>".to_owned(),
        toml::Value::String(s) => *s = crate::redact::redact_urls(s),
        toml::Value::Array(items) => items.iter_mut().for_each(|v| redact(key, v)),
        toml::Value::Table(table) => table.iter_mut().for_each(|(k, v)| redact(k, v)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::redact_urls;

    #[test]
    fn the_keys_of_a_settings_struct_are_read_from_its_deserialize() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Settings {
            store: String,
            store_timeout: u64,
        }
        assert_eq!(keys_of::<Settings>(), ["store", "store_timeout"]);
        assert!(keys_of::<String>().is_empty());
    }

    #[test]
    fn urls_lose_their_passwords_and_secret_keys_their_values() {
        assert_eq!(
            redact_urls("\"redis://:hunter2@cache:6379/0\""),
            "\"redis://:***@cache:6379/0\""
        );
        assert_eq!(
            redact_urls("postgres://app:pw@db/x and sqlite://keys.db"),
            "postgres://app:***@db/x and sqlite://keys.db"
        );
        let table: toml::Table =
            toml::from_str("secret = \"abc\"\nstore = \"redis://u:p@h\"\nlimit = 3").unwrap();
        assert_eq!(
            redacted(&table),
            [
                "limit=3",
                "secret=\"<redacted>\"",
                "store=\"redis://u:***@h\""
            ]
        );
    }
}
