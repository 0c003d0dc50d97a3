//! End to end, through the `backstop` binary: what a user runs.

mod e2e {
    pub mod util;

    mod anomalies;
    mod audit;
    mod backup_restore;
    mod break_glass;
    mod command_source;
    mod compliance;
    mod console;
    mod copies;
    mod corruption;
    mod coverage;
    mod crash;
    pub mod daemon;
    mod databases;
    mod degrade;
    mod deploy;
    mod dr;
    mod drills;
    mod encryption;
    pub mod evidence;
    mod first_hour;
    mod format_compat;
    pub mod governance;
    mod history;
    mod https_storage;
    mod object_lock;
    mod on_change;
    mod partial_restore;
    mod policy_errors;
    mod request_jobs;
    mod restore_safety;
    mod storage_faults;
    mod system_drill;
    mod table_restore;

    /// A running daemon, killed if a test fails before stopping it.
    pub struct Daemon(pub std::process::Child);

    impl Daemon {
        /// Stops it with SIGTERM and asserts a clean exit.
        pub fn stop(mut self) {
            let status = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(self.0.id().to_string())
                .status()
                .unwrap();
            assert!(status.success());
            assert!(self.0.wait().unwrap().success());
        }
    }

    impl Drop for Daemon {
        fn drop(&mut self) {
            if let Ok(None) = self.0.try_wait() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
}
