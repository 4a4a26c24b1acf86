//! Graceful shutdown: the first SIGTERM or SIGINT cancels the returned token
//! (services then turn NOT_SERVING, stop accepting and drain in-flight calls
//! within the grace period); a second signal exits at once.
use tokio_util::sync::CancellationToken;

/// Exit status used when a second signal forces an immediate exit.
pub const FORCED_EXIT_CODE: i32 = 130;

/// Spawns the signal listener and returns the token it cancels.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: draining (a second signal exits at once)");
        cancel.cancel();
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(FORCED_EXIT_CODE);
    });
    token
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers we cannot shut down gracefully; never resolve.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
