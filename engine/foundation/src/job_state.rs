//! State that later stages need (server id, address, pinned host key, key path), kept in the
//! per-job directory gitlab-runner gives every stage of one attempt as its working directory.
//!
//! Stages are separate processes and cleanup may overlap a still-running `run`, so writes take
//! a file lock, go to a temporary file with mode 0600, and are renamed into place.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::bounded_read::{CONFIG_LIMIT, read_bounded};
use serde_json::{Map, Value as Json};

pub const STATE_FILE: &str = "executor-state.json";

/// Keys that start with this are the driver's own (the cloud token saved for later stages):
/// kept and merged like any other, but never shown to recipe templates as `state.*`.
pub const PRIVATE_PREFIX: char = '_';

/// Whether `key` is one of the driver's private keys.
pub fn is_private_key(key: &str) -> bool {
    key.starts_with(PRIVATE_PREFIX)
}
const LOCK_FILE: &str = "executor-state.lock";

#[derive(Debug, Clone, Default)]
pub struct JobState {
    dir: Option<PathBuf>,
    values: Map<String, Json>,
    /// Keys this process removed, so that merging with the file does not bring them back.
    removed: std::collections::BTreeSet<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the job state {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the job state {path} is not valid JSON: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write the job state in {dir}: {source}")]
    Write {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Where the state lives: the working directory, which gitlab-runner sets to the per-attempt
/// temp dir. Deliberately not configurable: a directory shared by two jobs would hand one job's
/// server to the other (`state_binding` refuses that too, as a second line).
pub fn default_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

impl JobState {
    /// A state that is never written, for `render` and tests.
    pub fn in_memory(values: Map<String, Json>) -> Self {
        Self {
            dir: None,
            values,
            removed: Default::default(),
        }
    }

    /// An empty state in `dir`, whatever the file there holds; its first save replaces the
    /// file. For cleanup, which must go on when the state is damaged.
    pub fn empty_in(dir: &Path) -> Self {
        Self {
            dir: Some(dir.to_path_buf()),
            values: Map::new(),
            removed: Default::default(),
        }
    }

    pub fn load(dir: &Path) -> Result<Self, StateError> {
        let path = dir.join(STATE_FILE);
        let values = match read_bounded(&path, CONFIG_LIMIT) {
            Ok(bytes) => match serde_json::from_slice::<Json>(&bytes) {
                Ok(Json::Object(m)) => m,
                Ok(_) => Map::new(),
                Err(source) => return Err(StateError::Parse { path, source }),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        Ok(Self {
            dir: Some(dir.to_path_buf()),
            values,
            removed: Default::default(),
        })
    }

    /// The directory the state lives in, where steps may keep files of their own (a per-job
    /// key, a known_hosts line).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    pub fn values(&self) -> &Map<String, Json> {
        &self.values
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        self.values.get(key)
    }

    pub fn set(&mut self, key: &str, value: Json) {
        self.removed.remove(key);
        self.values.insert(key.to_string(), value);
    }

    pub fn remove(&mut self, key: &str) {
        self.values.shift_remove(key);
        self.removed.insert(key.to_string());
    }

    /// Write atomically. Keys written by another stage since we loaded are kept unless we set
    /// them too, so two overlapping stages do not erase each other's entries.
    pub fn save(&mut self) -> Result<(), StateError> {
        let Some(dir) = self.dir.clone() else {
            return Ok(());
        };
        let err = |source| StateError::Write {
            dir: dir.clone(),
            source,
        };
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join(LOCK_FILE))
            .map_err(err)?;
        lock.lock().map_err(err)?;
        let on_disk = Self::load(&dir).map(|s| s.values).unwrap_or_default();
        let mut merged = on_disk;
        for (k, v) in &self.values {
            merged.insert(k.clone(), v.clone());
        }
        merged.retain(|k, _| !self.removed.contains(k));
        let tmp = dir.join(format!(".{STATE_FILE}.{}", std::process::id()));
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(&serde_json::to_vec_pretty(&Json::Object(merged.clone())).unwrap_or_default())
            .map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, dir.join(STATE_FILE)).map_err(err)?;
        File::unlock(&lock).map_err(err)?;
        self.values = merged;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = JobState::load(dir.path()).unwrap();
        assert!(s.values().is_empty());
        s.set("server_id", Json::from("abc"));
        s.set("port", Json::from(22));
        s.save().unwrap();
        let mode = std::fs::metadata(dir.path().join(STATE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = JobState::load(dir.path()).unwrap();
        assert_eq!(again.get("server_id"), Some(&Json::from("abc")));
        assert_eq!(again.get("port"), Some(&Json::from(22)));
    }

    #[test]
    fn overlapping_writers_keep_each_others_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = JobState::load(dir.path()).unwrap();
        let mut b = JobState::load(dir.path()).unwrap();
        a.set("a", Json::from(1));
        a.save().unwrap();
        b.set("b", Json::from(2));
        b.save().unwrap();
        let s = JobState::load(dir.path()).unwrap();
        assert_eq!(s.get("a"), Some(&Json::from(1)));
        assert_eq!(s.get("b"), Some(&Json::from(2)));
    }

    #[test]
    fn garbage_state_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "{nope").unwrap();
        assert!(matches!(
            JobState::load(dir.path()),
            Err(StateError::Parse { .. })
        ));
    }
}
