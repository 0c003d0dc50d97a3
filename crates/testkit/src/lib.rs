//! Test helpers for Backstop (a dev-dependency only; never in the shipped binary).
//!
//! [`S3Server`] is a real S3 HTTP server (s3s-fs) on 127.0.0.1:0, on its own thread and
//! runtime so that it serves both in-process clients and child processes.
//! [`faults::FaultProxy`] stands in front of it and breaks a share of the requests, or goes down.
//! [`seaweed::SeaweedServer`] is SeaweedFS on loopback, for Object Lock and versioning.
//! [`require_tool`] fails loudly when a tool a test needs is missing: tests never skip.

pub mod db;
pub mod faults;
pub mod seaweed;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

pub const ACCESS_KEY: &str = "backstop-test-access";
pub const SECRET_KEY: &str = "backstop-test-secret-key";

pub struct S3Server {
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl S3Server {
    /// Starts a server with authentication (SigV4) and the given buckets.
    pub fn start(buckets: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for s3s-fs");
        for bucket in buckets {
            std::fs::create_dir_all(dir.path().join(bucket)).expect("bucket dir");
        }
        let root = dir.path().to_path_buf();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, mut shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("s3 server runtime");
            rt.block_on(async move {
                let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs root");
                let mut builder = S3ServiceBuilder::new(fs);
                builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
                let service = builder.build();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
                addr_tx.send(listener.local_addr().expect("local addr")).expect("report addr");
                let http = ConnBuilder::new(TokioExecutor::new());
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((socket, _)) = accepted else { continue };
                            let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                            tokio::spawn(async move { let _ = conn.await; });
                        }
                        _ = &mut shutdown_rx => break,
                    }
                }
            });
        });
        let addr = addr_rx.recv().expect("s3 server started");
        Self {
            addr,
            dir,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where the objects lie on disk (`<root>/<bucket>/<key>`), for corrupting them in tests.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Environment for a client (the AWS SDK's standard variables).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        client_env()
    }
    /// Sets the credentials in this process's environment, for in-process clients.
    pub fn set_process_env(&self) {
        for (k, v) in self.env() {
            // Tests in one binary share these same values, so concurrent setting is benign.
            std::env::set_var(k, v);
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The AWS SDK's standard variables for a client of the test servers (both accept
/// [`ACCESS_KEY`] and [`SECRET_KEY`]).
pub fn client_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ]
}

/// The path of a tool a test needs; panics naming it when it is missing. Never skip.
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "required tool `{name}` is not on PATH; install it (the test script .ci/run does)"
            )
        })
}

/// Deterministic pseudo-random bytes (incompressible, reproducible).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
