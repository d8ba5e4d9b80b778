//! Who may call whom, decided on the host: the forward-auth decider and what keeps it current.

pub mod crl;
pub mod decider;
pub mod table;
