//! The jobs the command line runs (and, later, the daemon schedules).

pub mod backup;
pub mod diff;
pub mod restore;
