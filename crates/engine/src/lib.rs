//! Backstop's engine: configuration and policies in, jobs out.
//!
//! [`config::Config`] is `backstop.toml`, validated; [`policy::Policy`] one policy file,
//! validated, with every error located by file, line and column. The [`jobs`] are what the
//! command line (and, later, the daemon) runs: backup, restore, check, prune, diff.

pub mod anchors;
pub mod anomalies;
pub mod api;
pub mod catalog;
pub mod compliance;
pub mod config;
pub mod console;
pub mod daemon;
pub mod dr;
pub mod drill;
pub mod error;
pub mod evidence;
pub mod history;
pub mod human;
pub mod jobs;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod repos;
pub mod schedule;
pub mod scheduler;
pub mod status;
pub mod system;
pub mod toml_problems;
pub mod watch;

pub use config::Config;
pub use error::EngineError;
pub use policy::Policy;
