//! The ecosystem's own dump and load tools (`pg_dump`, `mariadb-dump`, …): found at a
//! configured path or on PATH, run with their stderr kept, and judged by their exit status.
//! A missing tool is an error naming it; a tool that fails or is killed names itself and
//! shows the end of what it printed.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::SourceError;

/// How much of a tool's stderr is kept for the error message.
const STDERR_KEPT: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    PgDump,
    PgDumpall,
    PgRestore,
    MariadbDump,
    Mariadb,
}

impl Tool {
    /// The name used in messages and as the `[tools]` key (with `-` as `_`).
    pub fn name(self) -> &'static str {
        match self {
            Tool::PgDump => "pg_dump",
            Tool::PgDumpall => "pg_dumpall",
            Tool::PgRestore => "pg_restore",
            Tool::MariadbDump => "mariadb-dump",
            Tool::Mariadb => "mariadb",
        }
    }

    /// Executable names tried on PATH, in order.
    fn candidates(self) -> &'static [&'static str] {
        match self {
            Tool::PgDump => &["pg_dump"],
            Tool::PgDumpall => &["pg_dumpall"],
            Tool::PgRestore => &["pg_restore"],
            Tool::MariadbDump => &["mariadb-dump", "mysqldump"],
            Tool::Mariadb => &["mariadb", "mysql"],
        }
    }

    fn package(self) -> &'static str {
        match self {
            Tool::PgDump | Tool::PgDumpall | Tool::PgRestore => "postgresql-client",
            Tool::MariadbDump | Tool::Mariadb => "mariadb-client",
        }
    }

    fn config_key(self) -> &'static str {
        match self {
            Tool::PgDump => "pg_dump",
            Tool::PgDumpall => "pg_dumpall",
            Tool::PgRestore => "pg_restore",
            Tool::MariadbDump => "mariadb_dump",
            Tool::Mariadb => "mariadb",
        }
    }
}

/// `[tools]` in backstop.toml: explicit paths; a tool not named here is looked up on PATH.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tools {
    pub pg_dump: Option<PathBuf>,
    pub pg_dumpall: Option<PathBuf>,
    pub pg_restore: Option<PathBuf>,
    pub mariadb_dump: Option<PathBuf>,
    pub mariadb: Option<PathBuf>,
}

impl Tools {
    fn configured(&self, tool: Tool) -> Option<&PathBuf> {
        match tool {
            Tool::PgDump => self.pg_dump.as_ref(),
            Tool::PgDumpall => self.pg_dumpall.as_ref(),
            Tool::PgRestore => self.pg_restore.as_ref(),
            Tool::MariadbDump => self.mariadb_dump.as_ref(),
            Tool::Mariadb => self.mariadb.as_ref(),
        }
    }

    /// The executable for `tool`, or an error naming it and how to provide it.
    pub fn find(&self, tool: Tool) -> Result<PathBuf, SourceError> {
        if let Some(path) = self.configured(tool) {
            return if is_executable(path) {
                Ok(path.clone())
            } else {
                Err(SourceError::ToolMissing {
                    tool: tool.name(),
                    hint: format!(
                        "tools.{} = {} in backstop.toml is not an executable file",
                        tool.config_key(),
                        path.display()
                    ),
                })
            };
        }
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        for name in tool.candidates() {
            for dir in std::env::split_paths(&path_var) {
                let candidate = dir.join(name);
                if is_executable(&candidate) {
                    return Ok(candidate);
                }
            }
        }
        Err(SourceError::ToolMissing {
            tool: tool.name(),
            hint: format!(
                "not found on PATH; install {} or set tools.{} in backstop.toml",
                tool.package(),
                tool.config_key()
            ),
        })
    }

    /// A command for `tool` that is killed when dropped (a cancelled job leaves no tool
    /// running), with stdin closed and stdout and stderr piped.
    pub fn command(&self, tool: Tool) -> Result<Command, SourceError> {
        let mut cmd = Command::new(self.find(tool)?);
        cmd.kill_on_drop(true)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Ok(cmd)
    }

    /// The tool's `major.minor` version, from `--version`.
    pub async fn version(&self, tool: Tool) -> Result<(u32, u32), SourceError> {
        let mut cmd = self.command(tool)?;
        let out = cmd
            .arg("--version")
            .output()
            .await
            .map_err(|e| spawn_error(tool.name(), e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        parse_version(&text).ok_or_else(|| SourceError::ToolFailed {
            tool: tool.name(),
            detail: format!("`--version` printed no version: {}", text.trim()),
        })
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn spawn_error(tool: &'static str, e: std::io::Error) -> SourceError {
    SourceError::ToolFailed {
        tool,
        detail: format!("could not be started: {e}"),
    }
}

/// The first `N.N` in a version banner, e.g. `pg_dump (PostgreSQL) 15.19 (Debian …)` or
/// `mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB` (for the latter, the Distrib).
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let text = text.split("Distrib ").nth(1).unwrap_or(text);
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|word| {
            let mut parts = word.split('.');
            let major = parts.next()?.parse().ok()?;
            let minor = parts.next()?.parse().ok()?;
            Some((major, minor))
        })
        .next()
}

/// A program's process group (the program started with `process_group(0)`), killed when
/// dropped or by [`ProcessGroup::kill`]: a script's children cannot outlive the job that
/// started it, nor hold its pipes open after it was cancelled.
pub struct ProcessGroup(Option<u32>);

impl ProcessGroup {
    /// The group led by the process `pid` (none: nothing to kill).
    pub fn of(pid: Option<u32>) -> Self {
        Self(pid)
    }

    /// Sends SIGKILL to every process of the group; one already gone is fine.
    pub fn kill(&self) {
        if let Some(pid) = self
            .0
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Which of several streams of one snapshot file read at once a feed is: the one that
/// verifies the file whole, or another (each chunk still verified against its id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStream {
    Verifying,
    Again,
}

impl FileStream {
    /// The first of `n` streams verifies.
    pub fn nth(n: usize) -> Self {
        if n == 0 {
            Self::Verifying
        } else {
            Self::Again
        }
    }

    async fn copy(
        self,
        reader: &backstop_repo::SnapshotReader,
        entry: &backstop_repo::Entry,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<u64, backstop_repo::RepoError> {
        match self {
            Self::Verifying => reader.stream_file(entry, out).await,
            Self::Again => reader.stream_file_again(entry, out).await,
        }
    }
}

/// Runs `tasks` side by side, each on a task of its own; the first error is returned, and the
/// other tasks are then stopped (their tools killed as they are dropped).
pub async fn side_by_side(
    tasks: Vec<impl std::future::Future<Output = Result<(), SourceError>> + Send + 'static>,
) -> Result<(), SourceError> {
    let mut set = tokio::task::JoinSet::new();
    for task in tasks {
        set.spawn(task);
    }
    while let Some(done) = set.join_next().await {
        done.map_err(|e| SourceError::Invalid(format!("a load task ended abnormally: {e}")))??;
    }
    Ok(())
}

/// A started tool: its stderr is drained in the background (so it can never block on a
/// full pipe) and shown, in part, if the tool fails.
pub struct Running {
    /// The tool's name in messages: a dump tool's, or a command source's key.
    tool: &'static str,
    child: Child,
    stderr: Option<JoinHandle<String>>,
    /// The tool runs in a group of its own, killed with it: a cancelled job (dropped) or a
    /// tool that has ended leaves none of its children running.
    _group: ProcessGroup,
    /// Our end of the socket a tool started by [`Running::spawn_fed`] reads as its stdin,
    /// until it is taken to be written.
    input: Option<std::os::unix::net::UnixStream>,
}

/// The send buffer asked for a fed tool's input socket (the kernel doubles it, and keeps it
/// within `net.core.wmem_max`): a writer woken at a quarter full refills most of it.
const INPUT_SOCKET_BUFFER: usize = 512 << 10;

impl Running {
    pub fn spawn(tool: Tool, cmd: Command) -> Result<Self, SourceError> {
        Self::spawn_named(tool.name(), cmd)
    }

    /// As [`Running::spawn`], for a tool that reads what Backstop feeds it
    /// ([`Running::feed`] and the like): its stdin is one end of a Unix socket pair rather
    /// than a pipe. The tools read their input 4 KiB at a time (stdio's buffer for a pipe or
    /// a socket), and a writer blocked on a full pipe is woken for every page the reader
    /// takes: a switch between the two processes for every 4 KiB. A socket's writer is woken
    /// only once the reader has drained three quarters of the buffer. Feeding an 830 MB
    /// dump to `pg_restore`: 0.35 s of system time, where a 1 MiB pipe costs 1.0 to 1.6 s
    /// (docs/benchmarks.md). A command source's own program keeps a pipe: a script may open
    /// `/dev/stdin`, which a socket refuses.
    pub fn spawn_fed(tool: Tool, mut cmd: Command) -> Result<Self, SourceError> {
        let (ours, theirs) =
            std::os::unix::net::UnixStream::pair().map_err(|e| spawn_error(tool.name(), e))?;
        // Best effort: a smaller buffer only costs more wake-ups.
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(&ours, INPUT_SOCKET_BUFFER);
        cmd.stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
        // `cmd`, and with it our copy of the tool's end, is gone once the tool has started:
        // when the tool ends, a write to ours fails (a broken pipe), and never waits.
        let mut running = Self::spawn_named(tool.name(), cmd)?;
        running.input = Some(ours);
        Ok(running)
    }

    /// As [`Running::spawn`], for a program named `tool` in messages (a command source's
    /// `backup_command`).
    pub fn spawn_named(tool: &'static str, mut cmd: Command) -> Result<Self, SourceError> {
        let mut child = cmd
            .process_group(0)
            .spawn()
            .map_err(|e| spawn_error(tool, e))?;
        let group = ProcessGroup::of(child.id());
        let stderr = child.stderr.take().map(|mut pipe| {
            tokio::spawn(async move {
                let mut kept = Vec::new();
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > 2 * STDERR_KEPT {
                        kept.drain(..kept.len() - STDERR_KEPT);
                    }
                }
                let start = kept.len().saturating_sub(STDERR_KEPT);
                String::from_utf8_lossy(&kept[start..]).trim().to_string()
            })
        });
        Ok(Self {
            tool,
            child,
            stderr,
            _group: group,
            input: None,
        })
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The tool's stdout as a plain blocking reader, for the snapshot writer's chunker
    /// thread: read directly, without a round trip through the async reactor per read, and
    /// through a 1 MiB pipe so that the tool seldom waits for the reader.
    pub fn blocking_stdout(&mut self) -> Result<std::fs::File, SourceError> {
        let stdout = self
            .child
            .stdout
            .take()
            .expect("the tool was started with a piped stdout");
        let fd = stdout
            .into_owned_fd()
            .map_err(|e| spawn_error(self.tool, e))?;
        blocking_pipe(fd).map_err(|e| spawn_error(self.tool, e))
    }

    /// Waits for the tool; anything but exit status 0 is an error with its stderr.
    pub async fn finish(mut self) -> Result<String, SourceError> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| spawn_error(self.tool, e))?;
        let stderr = match self.stderr.take() {
            Some(handle) => handle.await.unwrap_or_default(),
            None => String::new(),
        };
        if status.success() {
            Ok(stderr)
        } else {
            Err(SourceError::ToolFailed {
                tool: self.tool,
                detail: describe_failure(status, &stderr),
            })
        }
    }

    /// Streams one file of a snapshot into the tool's stdin, then waits for it. When the
    /// tool stops reading early, its own error is the one reported; when the repository
    /// fails (a corrupt chunk), the tool is killed and the repository's error reported.
    pub async fn feed(
        mut self,
        reader: &backstop_repo::SnapshotReader,
        entry: &backstop_repo::Entry,
    ) -> Result<(), SourceError> {
        let stdin = self.stdin_writer()?;
        self.stream_into(reader, entry, FileStream::Verifying, stdin)
            .await
    }

    /// As [`Running::feed`], passing the stream through `route` on its way: it is given
    /// each piece of the stream and appends what the tool takes. It is called again only
    /// once everything it appended before has been written to the tool.
    pub async fn feed_routed(
        mut self,
        reader: &backstop_repo::SnapshotReader,
        entry: &backstop_repo::Entry,
        stream: FileStream,
        route: impl FnMut(&[u8], &mut Vec<u8>) + Send + Unpin,
    ) -> Result<(), SourceError> {
        let routed = Rewritten {
            inner: self.stdin_writer()?,
            rewrite: route,
            pending: Vec::new(),
            written: 0,
        };
        self.stream_into(reader, entry, stream, routed).await
    }

    /// Streams a file into `stdin` (the tool's, behind any writer), then waits for the tool.
    async fn stream_into(
        self,
        reader: &backstop_repo::SnapshotReader,
        entry: &backstop_repo::Entry,
        stream: FileStream,
        mut stdin: impl tokio::io::AsyncWrite + Unpin,
    ) -> Result<(), SourceError> {
        let streamed = stream.copy(reader, entry, &mut stdin).await;
        drop(stdin);
        self.after_streaming(streamed.map(|_| ())).await
    }

    /// Waits for the tool once what the repository streamed into its stdin (now closed)
    /// has ended: when the tool stopped reading early, its own error; when the repository
    /// failed (a corrupt chunk), the tool is killed and the repository's error returned.
    pub(crate) async fn after_streaming(
        self,
        streamed: Result<(), backstop_repo::RepoError>,
    ) -> Result<(), SourceError> {
        match streamed {
            Ok(()) => self.finish().await.map(|_| ()),
            Err(backstop_repo::RepoError::Write { source, .. }) if tool_is_gone(&source) => {
                self.stopped_reading().await
            }
            Err(e) => {
                self.kill().await;
                Err(e.into())
            }
        }
    }

    /// As [`Running::feed`], passing on only the lines (ends included) that `keep` takes:
    /// a dump filtered as it streams, never held whole.
    pub async fn feed_lines(
        mut self,
        reader: &backstop_repo::SnapshotReader,
        entry: &backstop_repo::Entry,
        stream: FileStream,
        mut keep: impl FnMut(&[u8]) -> bool + Send,
    ) -> Result<(), SourceError> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        // Kept lines are gathered into large writes: a header's or a trigger's short lines
        // would otherwise cost a write each.
        let mut stdin = tokio::io::BufWriter::with_capacity(1 << 18, self.stdin_writer()?);
        let (mut into, from) = tokio::io::duplex(1 << 20);
        let streaming = async move {
            let streamed = stream.copy(reader, entry, &mut into).await;
            drop(into);
            streamed
        };
        let filtering = async move {
            let mut from = tokio::io::BufReader::with_capacity(1 << 20, from);
            let mut line = Vec::new();
            loop {
                line.clear();
                if from.read_until(b'\n', &mut line).await? == 0 {
                    break;
                }
                if keep(&line) {
                    stdin.write_all(&line).await?;
                }
            }
            stdin.flush().await
        };
        let (streamed, filtered) = tokio::join!(streaming, filtering);
        match streamed {
            // The repository failed (unless the tool stopped reading first: then its own
            // error says why).
            Err(e) if !is_broken_pipe(&filtered) => {
                self.kill().await;
                Err(e.into())
            }
            _ => self.after_writing(filtered).await,
        }
    }

    /// Writes `bytes` to the tool's stdin, then waits for it.
    pub async fn feed_bytes(mut self, bytes: &[u8]) -> Result<(), SourceError> {
        use tokio::io::AsyncWriteExt;
        let mut stdin = self.stdin_writer()?;
        let written = async {
            stdin.write_all(bytes).await?;
            stdin.flush().await
        }
        .await;
        drop(stdin);
        self.after_writing(written).await
    }

    /// Waits for the tool once its input is written (or failed to be): the tool's own error
    /// when it stopped reading early, a writing error otherwise.
    async fn after_writing(self, written: std::io::Result<()>) -> Result<(), SourceError> {
        if is_broken_pipe(&written) {
            return self.stopped_reading().await;
        }
        match written {
            Ok(()) => self.finish().await.map(|_| ()),
            Err(e) => {
                let tool = self.tool;
                self.kill().await;
                Err(SourceError::ToolFailed {
                    tool,
                    detail: format!("writing its input: {e}"),
                })
            }
        }
    }

    /// The tool's stdin to write: the socket of a tool started by [`Running::spawn_fed`],
    /// else a 1 MiB pipe written with plain blocking writes (as for stdout).
    pub(crate) fn stdin_writer(&mut self) -> Result<ToolInput, SourceError> {
        if let Some(socket) = self.input.take() {
            let socket = socket
                .set_nonblocking(true)
                .and_then(|()| tokio::net::UnixStream::from_std(socket))
                .map_err(|e| spawn_error(self.tool, e))?;
            return Ok(ToolInput::Left(socket));
        }
        let stdin = self
            .child
            .stdin
            .take()
            .expect("the tool was started with a piped stdin");
        let fd = stdin
            .into_owned_fd()
            .map_err(|e| spawn_error(self.tool, e))?;
        let pipe = blocking_pipe(fd).map_err(|e| spawn_error(self.tool, e))?;
        Ok(ToolInput::Right(tokio::fs::File::from_std(pipe)))
    }

    /// The tool closed its stdin before the end: its own failure says why, else this does.
    async fn stopped_reading(self) -> Result<(), SourceError> {
        let tool = self.tool;
        self.finish().await?;
        Err(SourceError::ToolFailed {
            tool,
            detail: "stopped reading its input before the end".into(),
        })
    }

    /// Stops the tool at once (the job failed elsewhere).
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A tool's stdin as Backstop writes it: a socket ([`Running::spawn_fed`]) or a pipe.
pub(crate) type ToolInput = tokio_util::either::Either<tokio::net::UnixStream, tokio::fs::File>;

/// A pipe end taken from the reactor: 1 MiB of capacity (best effort: a smaller pipe only
/// costs speed) and blocking mode, for plain reads and writes on a blocking thread.
fn blocking_pipe(fd: std::os::fd::OwnedFd) -> std::io::Result<std::fs::File> {
    let _ = rustix::pipe::fcntl_setpipe_size(&fd, 1 << 20);
    rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::empty())?;
    Ok(std::fs::File::from(fd))
}

fn describe_failure(status: ExitStatus, stderr: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "failed".to_string(),
    };
    let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
    if tail.is_empty() {
        how
    } else {
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("{how}: {}", tail.join("\n  "))
    }
}

/// Whether writing failed because the tool is gone ([`tool_is_gone`]).
fn is_broken_pipe(written: &std::io::Result<()>) -> bool {
    matches!(written, Err(e) if tool_is_gone(e))
}

/// A write to a tool's stdin failed because the tool is gone: a broken pipe, or a socket
/// reset (a Unix socket closed with bytes unread resets its peer, which a write already
/// under way may see before the broken pipe).
fn tool_is_gone(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
    )
}

/// A writer that hands each piece of a stream to `take` until it has what it needs
/// (`Ok(true)`), then refuses further writes, which stops the stream there: the start of a
/// dump read without fetching the rest.
pub(crate) struct Catcher<F> {
    take: F,
    whole: bool,
}

impl<F: FnMut(&[u8]) -> std::io::Result<bool> + Unpin> Catcher<F> {
    pub(crate) fn new(take: F) -> Self {
        Self { take, whole: false }
    }
}

impl<F: FnMut(&[u8]) -> std::io::Result<bool> + Unpin> tokio::io::AsyncWrite for Catcher<F> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        bytes: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.whole {
            return std::task::Poll::Ready(Err(std::io::Error::other("read as far as needed")));
        }
        this.whole = (this.take)(bytes)?;
        std::task::Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// A writer that passes what it accepts through `rewrite`, which appends what goes on to
/// `inner`; a write is accepted once the previous one's output is written.
struct Rewritten<W, F> {
    inner: W,
    rewrite: F,
    pending: Vec<u8>,
    written: usize,
}

impl<W: tokio::io::AsyncWrite + Unpin, F: FnMut(&[u8], &mut Vec<u8>) + Unpin> Rewritten<W, F> {
    fn poll_pending(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        while self.written < self.pending.len() {
            match std::pin::Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..])
            {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: tokio::io::AsyncWrite + Unpin, F: FnMut(&[u8], &mut Vec<u8>) + Unpin> tokio::io::AsyncWrite
    for Rewritten<W, F>
{
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bytes: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        std::task::ready!(this.poll_pending(cx))?;
        (this.rewrite)(bytes, &mut this.pending);
        std::task::Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_banners() {
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)"),
            Some((15, 19))
        );
        assert_eq!(
            parse_version("mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu"),
            Some((10, 11))
        );
        assert_eq!(parse_version("no digits here"), None);
    }

    fn shell(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]).stderr(Stdio::piped());
        cmd
    }

    /// Feeds `bytes` to a fed tool running `script`, failing rather than hanging.
    async fn fed(script: &str, bytes: &[u8]) -> Result<(), SourceError> {
        let running = Running::spawn_fed(Tool::PgRestore, shell(script)).unwrap();
        tokio::time::timeout(
            std::time::Duration::from_secs(60),
            running.feed_bytes(bytes),
        )
        .await
        .expect("feeding the tool hung")
    }

    #[tokio::test]
    async fn a_fed_tool_reads_a_socket_to_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let bytes: Vec<u8> = (0..6_000_000u32).map(|i| (i % 251) as u8).collect();
        fed(
            &format!(
                "test -S /proc/self/fd/0 || exit 3; cat > '{}'",
                out.display()
            ),
            &bytes,
        )
        .await
        .unwrap();
        assert!(
            std::fs::read(&out).unwrap() == bytes,
            "the tool read other bytes"
        );
    }

    #[tokio::test]
    async fn a_fed_tool_that_stops_reading_early_is_reported_not_waited_for() {
        let bytes = vec![b'x'; 8 << 20];
        // Its own failure is the error.
        let err = fed("head -c 10 >/dev/null; echo 'gave up' >&2; exit 4", &bytes)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exited with status 4") && err.contains("gave up"),
            "{err}"
        );
        // Exiting well having read a part is a failure too.
        let err = fed("head -c 10 >/dev/null", &bytes)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("stopped reading its input before the end"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_tool_is_named_with_its_package() {
        let tools = Tools {
            pg_dump: Some("/nonexistent/pg_dump".into()),
            ..Tools::default()
        };
        let err = tools.find(Tool::PgDump).unwrap_err().to_string();
        assert!(
            err.contains("pg_dump") && err.contains("tools.pg_dump"),
            "{err}"
        );
    }
}
