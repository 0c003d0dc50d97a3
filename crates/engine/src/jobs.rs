//! The jobs the command line runs and the daemon schedules.

pub mod backup;
pub mod copy;
pub mod diff;
pub mod live;
pub mod maintenance;
pub mod restore;
