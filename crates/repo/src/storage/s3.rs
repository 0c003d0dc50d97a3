//! S3-compatible object storage through aws-sdk-s3.
//!
//! Credentials come from the standard AWS chain (environment, profile, instance role). The
//! SDK's own retries are turned off: [`super::RetryStorage`] is the one place that retries,
//! so that every store behaves the same, attempts are not multiplied and the retry budget
//! is the wrapper's alone.
//!
//! What this store does bound is one attempt, so that a server that accepts a request and
//! never answers costs one attempt, not the job: every request has an attempt timeout
//! ([`S3Options::attempt_timeout`]; an upload is given one more second per MiB it sends, a
//! floor of 1 MiB/s), connecting has a timeout of its own, and the SDK's stalled-stream
//! protection fails a body that stops flowing (for 5 s) in either direction. Each of these
//! ends as a transient error, which the wrapper retries.
//!
//! Over HTTPS, uploads are sent without a SigV4 hash of their body ([`signs_payload`]).

use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;
use std::time::Duration;

use super::{range_error, validate_key, LockMode, ObjectInfo, ObjectLock, Storage, StorageError};

#[derive(Debug, Clone)]
pub struct S3Options {
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing slash ("" for none).
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: bool,
    /// Objects of at least this size are sent as a multipart upload.
    pub multipart_threshold: usize,
    pub part_size: usize,
    /// The longest one request may go unanswered before it is abandoned (and retried by the
    /// wrapper); uploads get one more second per MiB sent.
    pub attempt_timeout: Duration,
    pub connect_timeout: Duration,
    /// Every object but `locks/` is written with this retention (the bucket must have
    /// versioning and Object Lock enabled).
    pub object_lock: Option<ObjectLock>,
}

impl S3Options {
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: prefix.into().trim_matches('/').to_string(),
            endpoint: None,
            region: None,
            path_style: false,
            multipart_threshold: 64 * 1024 * 1024,
            part_size: 16 * 1024 * 1024,
            attempt_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            object_lock: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct S3Storage {
    client: Client,
    options: S3Options,
    /// Whether an upload's signature covers a SHA-256 of its body ([`signs_payload`]).
    sign_payload: bool,
}

/// Whether uploads to `endpoint` (None: AWS's own, over HTTPS) carry a SigV4 hash of their
/// body. Over HTTPS they do not, as AWS's transfer manager and most S3 clients do: TLS
/// carries the body intact, the request's CRC32 checksum is still checked by the server,
/// and a pack is named by its SHA-256, so the signature's hash would be one more pass over
/// every byte uploaded for nothing. Over plain HTTP the signature is what ties the body to
/// the request, so it stays.
fn signs_payload(endpoint: Option<&str>) -> bool {
    endpoint.is_some_and(|e| {
        let e = e.trim_start();
        !e.get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    })
}

impl S3Storage {
    pub async fn connect(options: S3Options) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &options.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(options.path_style)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .timeout_config(timeouts(&options, 0))
            .stalled_stream_protection(
                aws_sdk_s3::config::StalledStreamProtectionConfig::enabled()
                    .grace_period(Duration::from_secs(5))
                    .build(),
            );
        if shared.region().is_none() {
            // S3-compatible stores often ignore the region, but the SDK needs one to sign.
            builder = builder.region(aws_config::Region::new("us-east-1"));
        }
        if let Some(endpoint) = &options.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Self {
            client: Client::from_conf(builder.build()),
            sign_payload: signs_payload(options.endpoint.as_deref()),
            options,
        }
    }

    /// The lock a new object under `key` gets: none for the repository's own lock files,
    /// which are rewritten and removed all the time.
    fn lock_for(&self, key: &str) -> Option<(aws_sdk_s3::types::ObjectLockMode, DateTime)> {
        let lock = self.options.object_lock?;
        if key.starts_with(crate::format::layout::LOCKS_PREFIX) {
            return None;
        }
        let mode = match lock.mode {
            LockMode::Governance => aws_sdk_s3::types::ObjectLockMode::Governance,
            LockMode::Compliance => aws_sdk_s3::types::ObjectLockMode::Compliance,
        };
        Some((mode, retain_until(jiff::Timestamp::now(), lock.retention)))
    }

    /// The versions of exactly `key`, and apart from them its delete markers.
    async fn versions(&self, key: &str) -> Result<(Vec<String>, Vec<String>), StorageError> {
        let full = self.full_key(key);
        let (mut out, mut markers) = (Vec::new(), Vec::new());
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.options.bucket)
                .prefix(&full)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| self.classify("delete", key, e))?;
            for v in page.versions() {
                if v.key() == Some(full.as_str()) {
                    out.extend(v.version_id().map(str::to_string));
                }
            }
            for m in page.delete_markers() {
                if m.key() == Some(full.as_str()) {
                    markers.extend(m.version_id().map(str::to_string));
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
        }
        Ok((out, markers))
    }

    /// A per-request override for an upload of `bytes`: more time to send it.
    fn upload_timeouts(&self, bytes: usize) -> aws_sdk_s3::config::Builder {
        aws_sdk_s3::config::Builder::new().timeout_config(timeouts(&self.options, bytes))
    }

    fn full_key(&self, key: &str) -> String {
        if self.options.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.options.prefix)
        }
    }

    /// Uploads `data` under `key`: in one PutObject, or in parts from the multipart
    /// threshold on.
    async fn put_payload(&self, key: &str, data: Payload<'_>) -> Result<(), StorageError> {
        validate_key("put", key)?;
        let full = self.full_key(key);
        if data.len() >= self.options.multipart_threshold as u64 {
            return self.put_multipart(key, &full, data).await;
        }
        let timeouts = self.upload_timeouts(data.len() as usize);
        let lock = self.lock_for(key);
        let mut request = self
            .client
            .put_object()
            .bucket(&self.options.bucket)
            .key(full)
            .set_object_lock_mode(lock.as_ref().map(|l| l.0.clone()))
            .set_object_lock_retain_until_date(lock.map(|l| l.1))
            .body(data.body(key, 0, data.len()).await?)
            .customize()
            .config_override(timeouts);
        if !self.sign_payload {
            request = request.disable_payload_signing();
        }
        request
            .send()
            .await
            .map_err(|e| self.classify("put", key, e))?;
        Ok(())
    }

    async fn put_multipart(
        &self,
        key: &str,
        full: &str,
        data: Payload<'_>,
    ) -> Result<(), StorageError> {
        let bucket = &self.options.bucket;
        let lock = self.lock_for(key);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(full)
            .set_object_lock_mode(lock.as_ref().map(|l| l.0.clone()))
            .set_object_lock_retain_until_date(lock.map(|l| l.1))
            .send()
            .await
            .map_err(|e| self.classify("put", key, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result: Result<(), StorageError> = async {
            let mut parts = Vec::new();
            let part_size = self.options.part_size.max(1) as u64;
            for (i, start) in (0..data.len()).step_by(part_size as usize).enumerate() {
                let number = i as i32 + 1;
                let length = part_size.min(data.len() - start);
                let body = data.body(key, start, length).await?;
                let mut request = self
                    .client
                    .upload_part()
                    .bucket(bucket)
                    .key(full)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(body)
                    .customize()
                    .config_override(self.upload_timeouts(length as usize));
                if !self.sign_payload {
                    request = request.disable_payload_signing();
                }
                let part = request
                    .send()
                    .await
                    .map_err(|e| self.classify("put", key, e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(part.e_tag().map(str::to_string))
                        .build(),
                );
            }
            self.client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(full)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| self.classify("put", key, e))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            // Until completed, nothing is visible; aborting frees the parts.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(full)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }
}

/// `now + retention`, rounded up to the whole second (S3 keeps retain-until dates to the
/// second), as the SDK's date type.
fn retain_until(now: jiff::Timestamp, retention: Duration) -> DateTime {
    let until = now.as_second() + retention.as_secs() as i64 + 1;
    DateTime::from_secs(until)
}

/// Connecting within `connect_timeout`, and an answer within `attempt_timeout` plus a second
/// per MiB of `upload` bytes.
fn timeouts(options: &S3Options, upload: usize) -> TimeoutConfig {
    let allowance = Duration::from_secs(upload.div_ceil(1024 * 1024) as u64);
    TimeoutConfig::builder()
        .connect_timeout(options.connect_timeout)
        .operation_attempt_timeout(options.attempt_timeout + allowance)
        .build()
}

/// What an upload sends: bytes in memory, or a file read as it is sent. A file's body
/// cannot be hashed before it is sent, so the SDK sends it without a SigV4 hash of its body
/// whatever [`signs_payload`] says (its CRC32 checksum still travels, in a trailer): the
/// one caller, a confirmed write, reads the object back and compares its SHA-256.
enum Payload<'a> {
    Memory(Bytes),
    File {
        path: &'a std::path::Path,
        length: u64,
    },
}

impl Payload<'_> {
    fn len(&self) -> u64 {
        match self {
            Payload::Memory(data) => data.len() as u64,
            Payload::File { length, .. } => *length,
        }
    }

    /// The body of `length` bytes from `start`, for an upload to `key`.
    async fn body(&self, key: &str, start: u64, length: u64) -> Result<ByteStream, StorageError> {
        match self {
            Payload::Memory(data) => Ok(ByteStream::from(
                data.slice(start as usize..(start + length) as usize),
            )),
            Payload::File { path, .. } => ByteStream::read_from()
                .path(path)
                .offset(start)
                .length(aws_sdk_s3::primitives::Length::Exact(length))
                .build()
                .await
                .map_err(|e| super::spool_error("put", key, path, e)),
        }
    }
}

/// The TLS library's refusal of the server's certificate, if that is why a request failed
/// (rustls says "invalid peer certificate: <why>"; the connector hands it on in an I/O
/// error). Permanent: the same certificate is refused on every retry.
fn tls_refusal(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if let Some(at) = text.find("invalid peer certificate") {
            return Some(text[at..].to_string());
        }
        current = e.source();
    }
    None
}

/// The innermost cause of a failed request, short enough for a one-line error: "connection
/// refused", "connection reset", or the last message in the chain.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut last = err;
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | BrokenPipe
                    | TimedOut
                    | UnexpectedEof
                    | HostUnreachable
                    | NetworkUnreachable
            ) {
                return io.kind().to_string();
            }
        }
        last = e;
        current = e.source();
    }
    last.to_string()
}

impl S3Storage {
    /// The whole object's body, as a stream.
    async fn body(&self, key: &str) -> Result<ByteStream, StorageError> {
        validate_key("get", key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.options.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.classify("get", key, e))?;
        Ok(out.body)
    }

    /// An SDK error as a storage error: not found, transient (worth another try) or
    /// permanent. A permanent one is one line naming the repository and the cause
    /// (authentication, a missing bucket), never the SDK's whole error chain.
    fn classify<E>(
        &self,
        op: &'static str,
        key: &str,
        err: SdkError<E, HttpResponse>,
    ) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let key = key.to_string();
        // Only a request that never got an answer can have been refused by TLS: the chain's
        // texts are read for those alone, not for every 404.
        let refused = match &err {
            SdkError::DispatchFailure(_) => tls_refusal(&err),
            _ => None,
        };
        if let Some(why) = refused {
            return StorageError::Permanent {
                op,
                key,
                message: format!(
                    "{}: the server's TLS certificate was refused ({why}); trust its authority (SSL_CERT_FILE names a PEM file of extra ones)",
                    self.location()
                ),
            };
        }
        match &err {
            SdkError::TimeoutError(_) => StorageError::Transient {
                op,
                key,
                message: "no answer within the attempt timeout".into(),
            },
            SdkError::DispatchFailure(failure) if failure.is_timeout() => StorageError::Transient {
                op,
                key,
                message: format!("timed out: {}", root_cause(&err)),
            },
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => StorageError::Transient {
                op,
                key,
                message: root_cause(&err),
            },
            SdkError::ServiceError(service) => {
                let code = service.err().code().unwrap_or_default();
                let status = service.raw().status().as_u16();
                let answer = match service.err().message() {
                    Some(text) => format!("{status} {code}: {text}"),
                    None => format!("{status} {code}"),
                };
                if status == 404 && code != "NoSuchBucket"
                    || code == "NoSuchKey"
                    || code == "NotFound"
                {
                    StorageError::NotFound { key }
                } else if status >= 500
                    || status == 429
                    || matches!(
                        code,
                        "SlowDown" | "Throttling" | "RequestTimeout" | "InternalError"
                    )
                {
                    StorageError::Transient {
                        op,
                        key,
                        message: answer,
                    }
                } else {
                    let cause = if status == 401
                        || status == 403
                        || matches!(
                            code,
                            "InvalidAccessKeyId"
                                | "SignatureDoesNotMatch"
                                | "AccessDenied"
                                | "InvalidToken"
                                | "ExpiredToken"
                        ) {
                        "authentication or permission refused (check the access key, secret and region, and the bucket policy)"
                    } else if code == "NoSuchBucket" {
                        "the bucket does not exist"
                    } else {
                        "refused"
                    };
                    StorageError::Permanent {
                        op,
                        key,
                        message: format!("{}: {cause}: {answer}", self.location()),
                    }
                }
            }
            _ => StorageError::Permanent {
                op,
                key,
                message: format!("{}: {}", self.location(), root_cause(&err)),
            },
        }
    }
}

#[async_trait]
impl Storage for S3Storage {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        self.put_payload(key, Payload::Memory(data)).await
    }

    async fn put_file(&self, key: &str, path: &std::path::Path) -> Result<(), StorageError> {
        let length = tokio::fs::metadata(path)
            .await
            .map_err(|e| super::spool_error("put", key, path, e))?
            .len();
        self.put_payload(key, Payload::File { path, length }).await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let body = self.body(key).await?;
        let body = body.collect().await.map_err(|e| body_error(key, e))?;
        Ok(body.into_bytes())
    }

    async fn sha256(&self, key: &str) -> Result<([u8; 32], u64), StorageError> {
        use sha2::Digest;
        // Hashed as the body arrives: a confirmed pack is not held a second time.
        let (mut body, mut digest, mut length) = (self.body(key).await?, sha2::Sha256::new(), 0);
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| body_error(key, e))?;
            digest.update(&piece);
            length += piece.len() as u64;
        }
        Ok((digest.finalize().into(), length))
    }

    async fn get_range(&self, key: &str, offset: u64, length: u64) -> Result<Bytes, StorageError> {
        validate_key("get", key)?;
        if length == 0 {
            return Ok(Bytes::new());
        }
        let out = self
            .client
            .get_object()
            .bucket(&self.options.bucket)
            .key(self.full_key(key))
            .range(format!("bytes={}-{}", offset, offset + length - 1))
            .send()
            .await
            .map_err(|e| match self.classify("get", key, e) {
                // 416: the range starts past the end of the object.
                StorageError::Permanent { message, .. } if message.contains("InvalidRange") => {
                    range_error("get", key, offset, length, 0)
                }
                other => other,
            })?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| body_error(key, e))?
            .into_bytes();
        if body.len() as u64 != length {
            return Err(range_error(
                "get",
                key,
                offset,
                length,
                offset + body.len() as u64,
            ));
        }
        Ok(body)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let full_prefix = self.full_key(prefix);
        let strip = if self.options.prefix.is_empty() {
            0
        } else {
            self.options.prefix.len() + 1
        };
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // No delimiter: the listing is flat and complete.
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.options.bucket)
                .prefix(&full_prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.classify("list", prefix, e))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    if key.len() >= strip {
                        out.push(ObjectInfo {
                            key: key[strip..].to_string(),
                            size: object.size().unwrap_or(0).max(0) as u64,
                        });
                    }
                }
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        validate_key("delete", key)?;
        if self.options.object_lock.is_some() {
            // A versioned bucket: a plain delete only hides the object behind a marker and
            // keeps its data. Removing it is removing every version; a locked one refuses.
            let (versions, markers) = self.versions(key).await?;
            for version in versions.into_iter().chain(markers) {
                if let Err(e) = self
                    .client
                    .delete_object()
                    .bucket(&self.options.bucket)
                    .key(self.full_key(key))
                    .version_id(&version)
                    .send()
                    .await
                {
                    let denied = e
                        .as_service_error()
                        .and_then(|s| s.code())
                        .is_some_and(|code| code == "AccessDenied");
                    if denied {
                        return Err(StorageError::Permanent {
                            op: "delete",
                            key: key.into(),
                            message: format!(
                                "{}: refused: the object is under Object Lock until its retain-until date",
                                self.location()
                            ),
                        });
                    }
                    match self.classify("delete", key, e) {
                        StorageError::NotFound { .. } => {}
                        other => return Err(other),
                    }
                }
            }
            return Ok(());
        }
        match self
            .client
            .delete_object()
            .bucket(&self.options.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match self.classify("delete", key, e) {
                StorageError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn object_lock(&self) -> Option<ObjectLock> {
        self.options.object_lock
    }

    async fn locked_until(&self, key: &str) -> Result<Option<jiff::Timestamp>, StorageError> {
        validate_key("head", key)?;
        if self.options.object_lock.is_none() {
            return Ok(None);
        }
        // Every version counts: an overwrite leaves the locked version underneath, and
        // deleting the object means deleting that one too.
        let (versions, _) = self.versions(key).await?;
        if versions.is_empty() {
            return Err(StorageError::NotFound { key: key.into() });
        }
        let mut latest: Option<jiff::Timestamp> = None;
        for version in versions {
            let head = self
                .client
                .head_object()
                .bucket(&self.options.bucket)
                .key(self.full_key(key))
                .version_id(version)
                .send()
                .await
                .map_err(|e| self.classify("head", key, e))?;
            let until = head
                .object_lock_retain_until_date()
                .and_then(|d| jiff::Timestamp::from_second(d.secs()).ok());
            latest = latest.max(until);
        }
        Ok(latest)
    }

    async fn extend_lock(&self, key: &str, until: jiff::Timestamp) -> Result<(), StorageError> {
        validate_key("extend lock", key)?;
        let Some(lock) = self.options.object_lock else {
            return Ok(());
        };
        let mode = match lock.mode {
            LockMode::Governance => aws_sdk_s3::types::ObjectLockRetentionMode::Governance,
            LockMode::Compliance => aws_sdk_s3::types::ObjectLockRetentionMode::Compliance,
        };
        self.client
            .put_object_retention()
            .bucket(&self.options.bucket)
            .key(self.full_key(key))
            .retention(
                aws_sdk_s3::types::ObjectLockRetention::builder()
                    .mode(mode)
                    .retain_until_date(DateTime::from_secs(until.as_second()))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.classify("extend lock", key, e))?;
        Ok(())
    }

    fn location(&self) -> String {
        if self.options.prefix.is_empty() {
            format!("s3://{}", self.options.bucket)
        } else {
            format!("s3://{}/{}", self.options.bucket, self.options.prefix)
        }
    }
}

/// A body that broke off while it was read: worth retrying.
fn body_error(key: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Transient {
        op: "get",
        key: key.into(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{signs_payload, tls_refusal};

    #[test]
    fn uploads_are_hashed_for_their_signature_only_over_plain_http() {
        assert!(signs_payload(Some("http://127.0.0.1:9000")));
        assert!(signs_payload(Some("HTTP://minio.internal")));
        assert!(!signs_payload(Some(
            "https://s3.eu-central-1.amazonaws.com"
        )));
        assert!(!signs_payload(Some("HTTPS://minio.internal:9000")));
        assert!(!signs_payload(Some(" https://minio.internal")));
        // No endpoint: AWS's own, which the SDK reaches over HTTPS.
        assert!(!signs_payload(None));
        // Anything else is not known to be TLS: signed, as before.
        assert!(signs_payload(Some("minio.internal:9000")));
        assert!(signs_payload(Some("")));
    }

    #[test]
    fn a_refused_certificate_is_found_in_the_error_chain() {
        let refused = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer",
        );
        assert_eq!(
            tls_refusal(&refused).as_deref(),
            Some("invalid peer certificate: UnknownIssuer")
        );
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(tls_refusal(&reset), None);
    }
}
