//! [`FaultProxy`]: an HTTP/1.1 proxy on 127.0.0.1:0 in front of an S3 test server that
//! breaks a share of the requests it is given, and can go down for a while.
//!
//! Each request draws a number from a seeded sequence (request `n` always draws the same
//! number for the same seed), and a drawn fault replaces the request:
//! - [`Fault::InternalError`]: a `500 InternalError` with the S3 XML error body;
//! - [`Fault::SlowDown`]: a `503 SlowDown`, likewise;
//! - [`Fault::Reset`]: the connection is reset (TCP RST) without an answer;
//! - [`Fault::Stall`]: the request is read and held without an answer for
//!   [`FaultConfig::stall`] (longer than the client's attempt timeout), then the connection is
//!   reset.
//!
//! None of them reaches the server, so a fault never leaves a half-done write behind it. The
//! body of a refused request is read first, so the connection stays usable afterwards (except
//! after a reset or a stall). Every injected fault is counted ([`FaultProxy::counts`]), so a
//! test can assert that faults really happened.
//!
//! An outage ([`FaultProxy::outage`], [`FaultProxy::outage_after`]) closes every open
//! connection and stops listening, so that connections are refused, then listens again on
//! the same address.
//!
//! The proxy runs on its own thread and runtime, like [`crate::S3Server`], so that it serves
//! in-process clients and child processes alike.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What the proxy can do to a request instead of forwarding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    InternalError,
    SlowDown,
    Reset,
    Stall,
}

impl Fault {
    pub const ALL: [Fault; 4] = [
        Fault::InternalError,
        Fault::SlowDown,
        Fault::Reset,
        Fault::Stall,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// Share of requests that get a fault, in percent (0 to 100).
    pub percent: u32,
    /// Seeds the sequence of draws: the same seed gives the same faults to the same request
    /// numbers.
    pub seed: u64,
    /// The faults drawn from, with equal chances.
    pub kinds: Vec<Fault>,
    /// How long a stalled request is held before its connection is reset.
    pub stall: Duration,
}

impl FaultConfig {
    /// No faults: every request is forwarded (outages can still be asked for).
    pub fn none() -> Self {
        Self {
            percent: 0,
            seed: 0,
            kinds: Fault::ALL.to_vec(),
            stall: Duration::from_secs(30),
        }
    }

    /// `percent` of the requests get one of every kind of fault.
    pub fn percent(percent: u32, seed: u64) -> Self {
        Self {
            percent,
            seed,
            ..Self::none()
        }
    }
}

/// How many requests were forwarded and how many got each fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub forwarded: u64,
    pub internal_error: u64,
    pub slow_down: u64,
    pub reset: u64,
    pub stall: u64,
    /// Outages begun.
    pub outages: u64,
}

impl FaultCounts {
    /// Faults injected into requests (outages aside).
    pub fn faults(&self) -> u64 {
        self.internal_error + self.slow_down + self.reset + self.stall
    }
}

struct Shared {
    upstream: SocketAddr,
    config: FaultConfig,
    /// Requests seen, which numbers the draws.
    requests: AtomicU64,
    forwarded: AtomicU64,
    faults: [AtomicU64; 4],
    outages: AtomicU64,
    /// An outage to begin once this many more requests have been seen.
    pending_outage: Mutex<Option<(u64, Duration)>>,
    commands: mpsc::UnboundedSender<Command>,
}

enum Command {
    Outage(Duration),
    Shutdown,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy forwarding to `upstream` (e.g. [`crate::S3Server::addr`]).
    pub fn start(upstream: SocketAddr, config: FaultConfig) -> Self {
        assert!(config.percent <= 100, "a share of requests, in percent");
        assert!(!config.kinds.is_empty(), "at least one kind of fault");
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            upstream,
            config,
            requests: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            faults: Default::default(),
            outages: AtomicU64::new(0),
            pending_outage: Mutex::new(None),
            commands: tx,
        });
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let for_thread = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("fault proxy runtime");
            rt.block_on(accept_loop(for_thread, rx, addr_tx));
            // Held requests (stalls) are dropped with the runtime.
            rt.shutdown_background();
        });
        let addr = addr_rx.recv().expect("fault proxy started");
        Self {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn counts(&self) -> FaultCounts {
        let f = |fault: Fault| self.shared.faults[fault.index()].load(Ordering::SeqCst);
        FaultCounts {
            forwarded: self.shared.forwarded.load(Ordering::SeqCst),
            internal_error: f(Fault::InternalError),
            slow_down: f(Fault::SlowDown),
            reset: f(Fault::Reset),
            stall: f(Fault::Stall),
            outages: self.shared.outages.load(Ordering::SeqCst),
        }
    }

    /// Requests seen so far, faulted or not.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Goes down now for `duration`: open connections are reset and new ones refused.
    pub fn outage(&self, duration: Duration) {
        let _ = self.shared.commands.send(Command::Outage(duration));
    }

    /// Goes down for `duration` once `requests` more requests have been seen (the one that
    /// triggers it is cut off with its connection), so that an outage falls in the middle of
    /// the work rather than before it.
    pub fn outage_after(&self, requests: u64, duration: Duration) {
        *self.shared.pending_outage.lock().unwrap() = Some((requests.max(1), duration));
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.shared.commands.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    addr_tx: std::sync::mpsc::Sender<SocketAddr>,
) {
    let mut listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    addr_tx.send(addr).expect("report addr");
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                // Every close is a reset: a client cut off by a fault or an outage sees
                // "connection reset", as from a crashed server.
                let _ = socket.set_zero_linger();
                let _ = socket.set_nodelay(true);
                connections.spawn(serve(shared.clone(), socket));
            }
            Some(Ok(())) = connections.join_next(), if !connections.is_empty() => {}
            command = commands.recv() => match command {
                Some(Command::Outage(duration)) => {
                    shared.outages.fetch_add(1, Ordering::SeqCst);
                    connections.abort_all();
                    while connections.join_next().await.is_some() {}
                    drop(listener);
                    // Down until the end of the outage, or until the proxy is dropped.
                    tokio::select! {
                        _ = tokio::time::sleep(duration) => {}
                        command = commands.recv() => match command {
                            Some(Command::Outage(_)) => {}
                            Some(Command::Shutdown) | None => return,
                        },
                    }
                    listener = rebind(addr).await;
                }
                Some(Command::Shutdown) | None => break,
            },
        }
    }
    connections.abort_all();
}

/// Listens on `addr` again; the port was ours a moment ago, so a few tries suffice.
async fn rebind(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fault proxy: could not listen on {addr} again after an outage");
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Serves one client connection, forwarding over one upstream connection of its own.
async fn serve(shared: Arc<Shared>, socket: TcpStream) {
    let upstream: Arc<tokio::sync::Mutex<Option<SendRequest<Incoming>>>> = Default::default();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let shared = shared.clone();
        let upstream = upstream.clone();
        handle(shared, upstream, request)
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(socket), service)
        .await;
}

/// Why a request ends without an answer; hyper then closes (resets) the connection.
#[derive(Debug)]
struct Cut(String);

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cut {}

impl From<std::io::Error> for Cut {
    fn from(e: std::io::Error) -> Self {
        Cut(format!("upstream: {e}"))
    }
}

impl From<hyper::Error> for Cut {
    fn from(e: hyper::Error) -> Self {
        Cut(format!("upstream: {e}"))
    }
}

async fn handle(
    shared: Arc<Shared>,
    upstream: Arc<tokio::sync::Mutex<Option<SendRequest<Incoming>>>>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Cut> {
    let n = shared.requests.fetch_add(1, Ordering::SeqCst);
    let outage = {
        let mut pending = shared.pending_outage.lock().unwrap();
        match pending.as_mut() {
            Some((left, duration)) if *left <= 1 => {
                let duration = *duration;
                *pending = None;
                Some(duration)
            }
            Some((left, _)) => {
                *left -= 1;
                None
            }
            None => None,
        }
    };
    if let Some(duration) = outage {
        let _ = shared.commands.send(Command::Outage(duration));
        std::future::pending::<()>().await;
    }
    if let Some(fault) = draw(&shared.config, n) {
        shared.faults[fault.index()].fetch_add(1, Ordering::SeqCst);
        // Read what the client sends, so that it is waiting for an answer.
        let _ = request.into_body().collect().await;
        return match fault {
            Fault::InternalError => Ok(s3_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "We encountered an internal error. Please try again.",
            )),
            Fault::SlowDown => Ok(s3_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "SlowDown",
                "Please reduce your request rate.",
            )),
            Fault::Reset => Err(Cut("reset by the fault proxy".into())),
            Fault::Stall => {
                tokio::time::sleep(shared.config.stall).await;
                Err(Cut("stalled by the fault proxy".into()))
            }
        };
    }
    let mut guard = upstream.lock().await;
    if guard.as_ref().is_none_or(SendRequest::is_closed) {
        let stream = TcpStream::connect(shared.upstream).await?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        *guard = Some(sender);
    }
    let sender = guard.as_mut().expect("an upstream connection");
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    shared.forwarded.fetch_add(1, Ordering::SeqCst);
    Ok(response.map(BodyExt::boxed))
}

/// Request `n`'s draw: a fault with `percent` chance, of a kind picked evenly.
fn draw(config: &FaultConfig, n: u64) -> Option<Fault> {
    let x = splitmix64(config.seed ^ splitmix64(n));
    if x % 100 < u64::from(config.percent) {
        Some(config.kinds[((x >> 32) % config.kinds.len() as u64) as usize])
    } else {
        None
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn s3_error(status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>"
    );
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_deterministic_and_near_the_share() {
        let config = FaultConfig::percent(10, 7);
        let a: Vec<_> = (0..10_000).map(|n| draw(&config, n)).collect();
        let b: Vec<_> = (0..10_000).map(|n| draw(&config, n)).collect();
        assert_eq!(a, b);
        let faults = a.iter().flatten().count();
        assert!((800..1200).contains(&faults), "{faults} faults in 10000");
        for kind in Fault::ALL {
            assert!(a.contains(&Some(kind)), "{kind:?} drawn");
        }
        assert!((0..1000).all(|n| draw(&FaultConfig::none(), n).is_none()));
    }
}
