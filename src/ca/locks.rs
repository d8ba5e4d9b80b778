//! Poisoned locks as a [`CaError`]: one helper instead of a `map_err` at every lock site.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::CaError;

/// A lock is poisoned only when a thread panicked while holding it: a bug, reported as one.
fn poisoned(what: &str) -> CaError {
    CaError::Internal(format!("{what} lock poisoned"))
}

pub fn lock<'a, T>(m: &'a Mutex<T>, what: &str) -> Result<MutexGuard<'a, T>, CaError> {
    m.lock().map_err(|_| poisoned(what))
}

pub fn read<'a, T>(l: &'a RwLock<T>, what: &str) -> Result<RwLockReadGuard<'a, T>, CaError> {
    l.read().map_err(|_| poisoned(what))
}

pub fn write<'a, T>(l: &'a RwLock<T>, what: &str) -> Result<RwLockWriteGuard<'a, T>, CaError> {
    l.write().map_err(|_| poisoned(what))
}
