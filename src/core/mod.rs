//! The pure core: names, policy, labels → desired certificates → a plan of actions. No I/O here.

pub mod atomic_dir;
pub mod authz;
pub mod client_cert;
pub mod container;
pub mod container_set;
pub mod labelled;
pub mod labels;
pub mod names;
pub mod plan;
pub mod policy;
pub mod renew;
pub mod secret;
pub mod trust_only;
pub mod wire;
