//! The certificate authority: its own certificates, who may sign what, leaf signing, the ledger,
//! CRL, PKCS#12, and the two certificate sources. No Docker, no HTTP server.

pub mod authority;
pub mod authorize;
pub mod commit;
pub mod crl;
pub mod csr;
mod error;
pub mod facts;
pub mod generation;
pub mod issue;
pub mod keys;
pub mod ledger;
pub mod local;
mod locks;
pub mod maintain;
pub mod p12;
pub mod pem;
pub mod remote;
pub mod sign;
pub mod source;

pub use error::CaError;

#[cfg(test)]
mod local_tests;
#[cfg(test)]
mod rotation_tests;
#[cfg(test)]
mod tests;
