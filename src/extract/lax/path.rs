//! A place in a JSON value, by a path of keys and indexes: read, replaced, removed.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn get<'a>(value: &'a Value, path: &[Step]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, step| match step {
        Step::Key(k) => v.as_object()?.get(k),
        Step::Index(i) => v.as_array()?.get(*i),
    })
}

pub(super) fn set(value: &mut Value, path: &[Step], new: Value) {
    let Some((last, parents)) = path.split_last() else {
        *value = new;
        return;
    };
    let mut at = value;
    for step in parents {
        at = match step {
            Step::Key(k) => {
                if !at.is_object() {
                    *at = Value::Object(Map::new());
                }
                at.as_object_mut()
                    .expect("made an object")
                    .entry(k.clone())
                    .or_insert(Value::Null)
            }
            Step::Index(i) => match at.get_mut(*i) {
                Some(v) => v,
                None => return,
            },
        };
    }
    match last {
        Step::Key(k) => {
            if !at.is_object() {
                *at = Value::Object(Map::new());
            }
            at.as_object_mut()
                .expect("made an object")
                .insert(k.clone(), new);
        }
        Step::Index(i) => {
            if let Some(v) = at.get_mut(*i) {
                *v = new;
            }
        }
    }
}

/// Removes the key at `path`; whether there was one.
pub(super) fn remove(value: &mut Value, path: &[Step]) -> bool {
    let Some((Step::Key(last), parents)) = path.split_last() else {
        return false;
    };
    let mut at = value;
    for step in parents {
        at = match step {
            Step::Key(k) => match at.get_mut(k.as_str()) {
                Some(v) => v,
                None => return false,
            },
            Step::Index(i) => match at.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
        };
    }
    at.as_object_mut()
        .is_some_and(|map| map.remove(last).is_some())
}
