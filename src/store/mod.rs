//! The state directory: atomic files, the lock, and the append-only journals.

pub mod atomic;
pub mod lock;
