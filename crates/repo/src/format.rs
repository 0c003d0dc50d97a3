//! The repository format, version 1. `docs/repository-format.md` is the normative
//! description; these modules are its implementation and must stay in step with it.

pub mod chunker;
pub mod config;
pub mod crypto;
pub mod id;
pub mod index;
pub mod layout;
pub mod pack;
pub mod snapshot;
pub mod tree;
pub mod xaes;
