//! Delivery of certificates: atomic bundle directories on the host (and, via the Docker
//! adapter, inside containers).

pub mod bundle;
