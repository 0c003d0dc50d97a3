//! From a repository URL to a [`Storage`]: `file://PATH` (or a plain path) and
//! `s3://BUCKET/PREFIX`. Every store is wrapped in [`RetryStorage`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{RepoError, Result};
use crate::storage::{LocalStorage, RetryPolicy, RetryStorage, S3Options, S3Storage, Storage};

#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: bool,
    pub object_lock: Option<crate::storage::ObjectLock>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoUrl {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl RepoUrl {
    /// Parses a URL; a relative local path is resolved against `base`.
    pub fn parse(url: &str, base: &Path) -> Result<Self> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.len() < 3 {
                return Err(RepoError::Invalid(format!(
                    "repository url `{url}`: the bucket name must have at least 3 characters"
                )));
            }
            return Ok(RepoUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        let path = url.strip_prefix("file://").unwrap_or(url);
        if path.is_empty() || url.contains("://") && !url.starts_with("file://") {
            return Err(RepoError::Invalid(format!(
                "repository url `{url}`: expected file://PATH or s3://BUCKET/PREFIX"
            )));
        }
        Ok(RepoUrl::Local(base.join(path)))
    }

    /// Opens the store, wrapped in [`RetryStorage`] with `retry`; `name` (the repository's
    /// name in the configuration, if it has one) is how errors name it, with its location.
    pub async fn connect(
        &self,
        s3: &S3Settings,
        retry: RetryPolicy,
        name: Option<&str>,
    ) -> Arc<dyn Storage> {
        fn wrap<S: Storage + 'static>(
            store: S,
            retry: RetryPolicy,
            name: Option<&str>,
        ) -> Arc<dyn Storage> {
            match name {
                Some(name) => Arc::new(RetryStorage::named(store, retry, name)),
                None => Arc::new(RetryStorage::new(store, retry)),
            }
        }
        match self {
            RepoUrl::Local(path) => wrap(LocalStorage::new(path), retry, name),
            RepoUrl::S3 { bucket, prefix } => {
                let mut options = S3Options::new(bucket, prefix);
                options.endpoint = s3.endpoint.clone();
                options.region = s3.region.clone();
                options.path_style = s3.path_style;
                options.object_lock = s3.object_lock;
                wrap(S3Storage::connect(options).await, retry, name)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_local_and_s3_urls() {
        let base = Path::new("/etc/backstop");
        assert_eq!(
            RepoUrl::parse("file://./data/repo", base).unwrap(),
            RepoUrl::Local(PathBuf::from("/etc/backstop/./data/repo"))
        );
        assert_eq!(
            RepoUrl::parse("/srv/repo", base).unwrap(),
            RepoUrl::Local(PathBuf::from("/srv/repo"))
        );
        assert_eq!(
            RepoUrl::parse("s3://backups/backstop/prod/", base).unwrap(),
            RepoUrl::S3 {
                bucket: "backups".into(),
                prefix: "backstop/prod".into()
            }
        );
        assert!(RepoUrl::parse("s3://ab", base).is_err());
        assert!(RepoUrl::parse("gs://x/y", base).is_err());
    }
}
