//! The runner host's cache of name lookups: flavor, image, network and security group names
//! (and the compute API's version), for a few minutes, so that each job does not list flavors,
//! images, networks and security groups again.
//!
//! One JSON file, `$XDG_CACHE_HOME/executor/lookups.json` (else `~/.cache/executor/`), in a
//! directory of mode 0700, written with mode 0600 under a lock and renamed into place, so that
//! concurrent jobs never see half a file. Entries are keyed by the cloud's auth URL, the project
//! and the region, and live [`DEFAULT_TTL`] (`EXECUTOR_LOOKUP_CACHE_TTL`, in seconds; `0` turns
//! the cache off). Nothing secret is kept: names and ids only.
//!
//! A cache is a second source of truth, so it is distrusted: an entry is used only while young,
//! a file or directory that others may write is ignored, and an id that the cloud no longer
//! knows (a create answered 400 or 404) is dropped and looked up again by the caller.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use super::credentials::EnvLookup;
use executor_foundation::bounded_read::{CONFIG_LIMIT, read_bounded};

/// How long an entry is used.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);
/// The variable that changes it (seconds; `0`: no cache).
pub const TTL_VARIABLE: &str = "EXECUTOR_LOOKUP_CACHE_TTL";
const FILE: &str = "lookups.json";
const LOCK: &str = "lookups.lock";

/// One lookup this process answered from the cache (and may have to take back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// What was looked up: `flavor`, `image`, `network`, `security group`.
    pub kind: String,
    /// The name (or id) asked for.
    pub name: String,
    /// The id the cache gave.
    pub id: String,
}

/// The cache, for one cloud, project and region.
#[derive(Debug)]
pub struct LookupCache {
    dir: Option<PathBuf>,
    scope: String,
    ttl: Duration,
    served: Mutex<Vec<Served>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether others than the owner may write `path` (then what it says is not ours).
fn writable_by_others(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o022 != 0)
}

impl LookupCache {
    /// A cache that keeps nothing.
    pub fn disabled() -> LookupCache {
        LookupCache {
            dir: None,
            scope: String::new(),
            ttl: Duration::ZERO,
            served: Mutex::new(Vec::new()),
        }
    }

    /// The cache of `scope` (auth URL, project, region) in the directory the environment
    /// names; disabled without `XDG_CACHE_HOME` and `HOME`, or with a TTL of 0.
    pub fn open(env: EnvLookup<'_>, scope: &str) -> LookupCache {
        let ttl = match env(TTL_VARIABLE).map(|v| v.trim().parse::<u64>()) {
            Some(Ok(secs)) => Duration::from_secs(secs),
            Some(Err(_)) => {
                tracing::warn!("{TTL_VARIABLE} is not a number of seconds; using the default");
                DEFAULT_TTL
            }
            None => DEFAULT_TTL,
        };
        let base = env("XDG_CACHE_HOME")
            .filter(|p| Path::new(p).is_absolute())
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| Path::new(&h).join(".cache")));
        match base {
            Some(base) if !ttl.is_zero() => Self::at(&base.join("executor"), scope, ttl),
            _ => Self::disabled(),
        }
    }

    /// The cache in `dir` (tests).
    pub fn at(dir: &Path, scope: &str, ttl: Duration) -> LookupCache {
        LookupCache {
            dir: Some(dir.to_path_buf()),
            scope: scope.to_string(),
            ttl,
            served: Mutex::new(Vec::new()),
        }
    }

    /// Where the cache file is, when there is one.
    pub fn path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(FILE))
    }

    fn key(kind: &str, name: &str) -> String {
        format!("{kind}\u{1f}{name}")
    }

    fn read(dir: &Path) -> Map<String, Value> {
        let path = dir.join(FILE);
        if writable_by_others(dir) || writable_by_others(&path) {
            tracing::warn!(path = %path.display(), "lookup cache writable by others; not used");
            return Map::new();
        }
        read_bounded(&path, CONFIG_LIMIT)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// The young entry for `name` of `kind`, if any.
    pub fn get(&self, kind: &str, name: &str) -> Option<Value> {
        let dir = self.dir.as_ref()?;
        let all = Self::read(dir);
        let entry = all.get(&self.scope)?.get(Self::key(kind, name))?;
        let at = entry.get("at")?.as_u64()?;
        let now = now_secs();
        // An entry from the future (a clock set back) is as suspect as an old one.
        if at > now + 60 || now.saturating_sub(at) >= self.ttl.as_secs() {
            return None;
        }
        let value = entry.get("value")?.clone();
        if let Some(id) = value.get("id").and_then(Value::as_str)
            && let Ok(mut served) = self.served.lock()
        {
            let this = Served {
                kind: kind.to_string(),
                name: name.to_string(),
                id: id.to_string(),
            };
            if !served.contains(&this) {
                served.push(this);
            }
        }
        tracing::debug!(kind, name, "answered from the lookup cache");
        Some(value)
    }

    /// Remembers `value` for `name` of `kind`.
    pub fn put(&self, kind: &str, name: &str, value: Value) {
        let entry = serde_json::json!({ "at": now_secs(), "value": value });
        self.update(|scope| {
            scope.insert(Self::key(kind, name), entry);
        });
    }

    /// Drops the entry for `name` of `kind` (its id turned out stale).
    pub fn forget(&self, kind: &str, name: &str) {
        if let Ok(mut served) = self.served.lock() {
            served.retain(|s| !(s.kind == kind && s.name == name));
        }
        self.update(|scope| {
            scope.remove(&Self::key(kind, name));
        });
    }

    /// What this process answered from the cache so far.
    pub fn served(&self) -> Vec<Served> {
        self.served.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Read, change, prune and write the file under its lock. Failures only cost the cache.
    fn update(&self, change: impl FnOnce(&mut Map<String, Value>)) {
        let Some(dir) = &self.dir else {
            return;
        };
        if let Err(e) = self.try_update(dir, change) {
            tracing::debug!(error = %e, dir = %dir.display(), "cannot write the lookup cache");
        }
    }

    fn try_update(
        &self,
        dir: &Path,
        change: impl FnOnce(&mut Map<String, Value>),
    ) -> std::io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join(LOCK))?;
        lock.lock()?;
        let mut all = Self::read(dir);
        let mut scope = match all.remove(&self.scope) {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        change(&mut scope);
        all.insert(self.scope.clone(), Value::Object(scope));
        // Entries of every cloud past their time go, and clouds left with none.
        let now = now_secs();
        let ttl = self.ttl.as_secs().max(DEFAULT_TTL.as_secs());
        for entries in all.values_mut() {
            if let Value::Object(m) = entries {
                m.retain(|_, e| {
                    e.get("at")
                        .and_then(Value::as_u64)
                        .is_some_and(|at| now.saturating_sub(at) < ttl && at <= now + 60)
                });
            }
        }
        all.retain(|_, v| v.as_object().is_some_and(|m| !m.is_empty()));
        let tmp = dir.join(format!(".{FILE}.{}", std::process::id()));
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec(&Value::Object(all)).unwrap_or_default())?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(FILE))?;
        File::unlock(&lock)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cache(dir: &Path, scope: &str) -> LookupCache {
        LookupCache::at(&dir.join("executor"), scope, DEFAULT_TTL)
    }

    #[test]
    fn entries_round_trip_per_scope_in_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = cache(dir.path(), "cloud-a");
        let b = cache(dir.path(), "cloud-b");
        assert_eq!(a.get("flavor", "m1.small"), None);
        a.put(
            "flavor",
            "m1.small",
            json!({"id": "f1", "name": "m1.small"}),
        );
        assert_eq!(
            a.get("flavor", "m1.small"),
            Some(json!({"id": "f1", "name": "m1.small"}))
        );
        assert_eq!(b.get("flavor", "m1.small"), None, "another cloud's entry");
        assert_eq!(a.served().len(), 1);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("executor")), 0o700);
        assert_eq!(mode(&dir.path().join("executor").join(FILE)), 0o600);
        a.forget("flavor", "m1.small");
        assert_eq!(a.get("flavor", "m1.small"), None);
        assert!(a.served().is_empty());
    }

    #[test]
    fn old_entries_and_files_others_may_write_are_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), "s");
        c.put("image", "ubuntu", json!({"id": "i1"}));
        let path = c.path().unwrap();
        // Ten minutes and one second ago.
        let mut all: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        all["s"][LookupCache::key("image", "ubuntu")]["at"] = json!(now_secs() - 601);
        std::fs::write(&path, serde_json::to_vec(&all).unwrap()).unwrap();
        assert_eq!(c.get("image", "ubuntu"), None, "too old");
        c.put("image", "ubuntu", json!({"id": "i2"}));
        assert!(c.get("image", "ubuntu").is_some());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(c.get("image", "ubuntu"), None, "world-writable file");
    }

    #[test]
    fn no_home_or_a_zero_ttl_means_no_cache() {
        let none = LookupCache::open(&|_| None, "s");
        assert_eq!(none.path(), None);
        none.put("flavor", "x", json!({"id": "1"}));
        assert_eq!(none.get("flavor", "x"), None);
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().display().to_string();
        let off = LookupCache::open(
            &move |k| match k {
                "HOME" => Some(home.clone()),
                TTL_VARIABLE => Some("0".into()),
                _ => None,
            },
            "s",
        );
        assert_eq!(off.path(), None);
        let home = dir.path().display().to_string();
        let on = LookupCache::open(&move |k| (k == "HOME").then(|| home.clone()), "s");
        assert_eq!(
            on.path(),
            Some(dir.path().join(".cache/executor").join(FILE))
        );
    }
}
