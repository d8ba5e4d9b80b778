//! The state directory: atomic files, the lock, and the append-only journals.

pub mod atomic;
pub mod ca_policy;
pub mod inventory;
pub mod journal;
pub mod lock;
pub mod requester;
pub mod status;
pub mod tokens;
