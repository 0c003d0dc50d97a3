//! An in-memory store: a real implementation of the contract, used by tests and benches.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use super::{range_error, validate_key, ObjectInfo, Storage, StorageError};

#[derive(Debug, Default)]
pub struct MemoryStorage {
    objects: Mutex<BTreeMap<String, Bytes>>,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Bytes>> {
        // A panic while holding the lock cannot leave the map half-updated: every
        // operation is a single insert, remove or read.
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        validate_key("put", key)?;
        self.objects().insert(key.to_string(), data);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        self.objects()
            .get(key)
            .cloned()
            .ok_or_else(|| StorageError::NotFound { key: key.into() })
    }

    async fn get_range(&self, key: &str, offset: u64, length: u64) -> Result<Bytes, StorageError> {
        let data = self.get(key).await?;
        let end = offset
            .checked_add(length)
            .filter(|end| *end <= data.len() as u64);
        match end {
            Some(end) => Ok(data.slice(offset as usize..end as usize)),
            None => Err(range_error("get", key, offset, length, data.len() as u64)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        Ok(self
            .objects()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| ObjectInfo {
                key: k.clone(),
                size: v.len() as u64,
            })
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.objects().remove(key);
        Ok(())
    }

    fn location(&self) -> String {
        "memory:".into()
    }
}
