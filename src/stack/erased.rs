//! [`ErasedState`]: a hook's state between its `on_request` and its `on_response`, its type
//! erased for the group loop.
//!
//! A state of one of the small types batteries keep (a flag, an instant) is held inline; any
//! other is boxed (a zero-sized one without allocating). Larger inline variants (a header
//! value's 40 bytes) cost every hook more in copies of the group's future than the one box
//! they save. The boxes were one
//! allocation per hook per request; the types are told apart by `Any`, which the compiler
//! resolves for each hook's state type, so the choice costs nothing at run time.

use std::any::Any;
use std::time::Instant;

pub(crate) enum ErasedState {
    Flag(bool),
    Instant(Instant),
    Boxed(Box<dyn Any + Send>),
    /// Never made from a state (the slot a conversion took from was empty).
    Taken,
}

/// Moves `value` out as a `T` when it is one.
#[inline]
fn take_as<V: 'static, T: 'static>(value: V) -> Option<T> {
    let mut slot = Some(value);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<T>>()
        .and_then(Option::take)
}

impl ErasedState {
    #[inline]
    pub(crate) fn new<S: Send + 'static>(state: S) -> Self {
        let mut slot = Some(state);
        let any: &mut dyn Any = &mut slot;
        if let Some(flag) = any.downcast_mut::<Option<bool>>() {
            return flag.take().map_or(Self::Taken, Self::Flag);
        }
        if let Some(at) = any.downcast_mut::<Option<Instant>>() {
            return at.take().map_or(Self::Taken, Self::Instant);
        }
        match slot {
            // A zero-sized state is boxed without allocating.
            Some(state) => Self::Boxed(Box::new(state)),
            None => Self::Taken,
        }
    }

    /// The state as the `S` it was made from; `None` for another type.
    #[inline]
    pub(crate) fn into_state<S: 'static>(self) -> Option<S> {
        match self {
            Self::Flag(flag) => take_as(flag),
            Self::Instant(at) => take_as(at),
            Self::Boxed(state) => state.downcast::<S>().ok().map(|state| *state),
            Self::Taken => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_comes_back_as_its_own_type_only() {
        assert_eq!(ErasedState::new(true).into_state::<bool>(), Some(true));
        assert_eq!(ErasedState::new(true).into_state::<u8>(), None);
        assert!(matches!(ErasedState::new(true), ErasedState::Flag(_)));
        let value = http::HeaderValue::from_static("id-1");
        assert!(matches!(
            ErasedState::new(value.clone()),
            ErasedState::Boxed(_)
        ));
        assert_eq!(
            ErasedState::new(value.clone()).into_state::<http::HeaderValue>(),
            Some(value)
        );
        let at = Instant::now();
        assert_eq!(ErasedState::new(at).into_state::<Instant>(), Some(at));
        assert_eq!(ErasedState::new(()).into_state::<()>(), Some(()));
        assert_eq!(
            ErasedState::new(Some(7u64)).into_state::<Option<u64>>(),
            Some(Some(7))
        );
        assert_eq!(ErasedState::new(Some(7u64)).into_state::<u64>(), None);
        assert!(ErasedState::Taken.into_state::<()>().is_none());
    }
}
