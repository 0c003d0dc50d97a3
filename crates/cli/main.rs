//! The `backstop` binary: parse, run, map to an exit code. No logic of its own; errors are
//! printed with their whole chain to stderr.

mod args;
mod commands;
mod output;
mod signals;

use std::process::ExitCode;

use clap::Parser;

/// glibc raises its mmap threshold to the size of each large block freed (up to 32 MiB), after
/// which pack-sized buffers come from, and stay in, each thread's arena: a backup, restore or
/// read-data check then peaked at about twice its working set. Pinning the threshold at
/// 4 MiB (a chunk's maximum) keeps chunk buffers in the arenas, where they are reused, and
/// gives pack buffers back as they are freed.
#[allow(unsafe_code)]
fn pin_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; it runs first in main, before any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

fn main() -> ExitCode {
    pin_mmap_threshold();
    let cli = args::Cli::parse();
    let filter = match cli.verbose {
        // The daemon's log is its record of what it does.
        0 if matches!(cli.command, args::Command::Daemon) => "info",
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    // Colour is for people at a terminal: never in a file, a pipe or journald, nor under
    // NO_COLOR (https://no-color.org).
    let colour = {
        use std::io::IsTerminal;
        std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BACKSTOP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match cli.log_format {
        args::LogFormat::Text => logs.init(),
        args::LogFormat::Json => logs.json().init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return output::code(output::EXIT_FAILED);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => output::code(code),
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            output::code(if is_usage_error(&e) {
                output::EXIT_USAGE
            } else {
                output::EXIT_FAILED
            })
        }
    }
}

/// A mistake in what was typed (exit 2, as clap's own usage errors), not a failure.
fn is_usage_error(e: &anyhow::Error) -> bool {
    use backstop_engine::EngineError;
    use backstop_repo::RepoError;
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<RepoError>(),
            Some(RepoError::BadSnapshotPrefix { .. })
        ) || matches!(
            cause.downcast_ref::<EngineError>(),
            Some(EngineError::Repo(RepoError::BadSnapshotPrefix { .. }))
        )
    })
}

/// The error and its causes, joined by ": ", leaving out a cause that the message before it
/// already ends with (library errors often say their cause and also chain it).
fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if !out.ends_with(&cause) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&cause);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_the_message_already_names_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(io).context("key file ./repo.key: No such file");
        assert_eq!(super::chain(&e), "key file ./repo.key: No such file");
        let e = anyhow::anyhow!("disk full").context("writing pack");
        assert_eq!(super::chain(&e), "writing pack: disk full");
    }
}
