//! Signals, handled here at the binary's edge: the library takes a cancellation token and a
//! reload channel instead.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Resolves when the process is asked to stop (SIGTERM or SIGINT).
pub async fn terminated() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// A token cancelled on SIGTERM or SIGINT.
pub fn cancel_on_termination() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        terminated().await;
        cancel.cancel();
    });
    token
}

/// The daemon's controls: a token cancelled on SIGTERM or SIGINT, and a message on each
/// SIGHUP.
pub fn daemon_controls() -> std::io::Result<(CancellationToken, mpsc::UnboundedReceiver<()>)> {
    let mut hangup = signal(SignalKind::hangup())?;
    let shutdown = CancellationToken::new();
    let (reload, reloads) = mpsc::unbounded_channel();
    let cancel = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = terminated() => {
                    tracing::info!("shutting down: cancelling running jobs");
                    cancel.cancel();
                    return;
                }
                _ = hangup.recv() => {
                    if reload.send(()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok((shutdown, reloads))
}
