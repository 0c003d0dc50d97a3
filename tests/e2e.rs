//! End to end, through the `backstop` binary: what a user runs.

mod e2e {
    pub mod util;

    mod audit;
    mod backup_restore;
    mod break_glass;
    mod corruption;
    mod crash;
    mod daemon;
    mod databases;
    mod drills;
    mod encryption;
    mod evidence;
    mod policy_errors;
}
