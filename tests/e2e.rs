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
    mod governance;
    mod policy_errors;

    /// Stops a daemon with SIGTERM and waits for it.
    pub fn daemon_stop(daemon: &mut std::process::Child) {
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(daemon.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        assert!(daemon.wait().unwrap().success());
    }
}
