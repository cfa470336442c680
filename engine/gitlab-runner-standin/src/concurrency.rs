//! `CI_CONCURRENT_ID` / `CI_CONCURRENT_PROJECT_ID`: the lowest integer not held by a running job,
//! reused as soon as a job finishes (gitlab-runner's `buildsHelper.addBuild`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Clone, Default)]
pub struct ConcurrencySlots {
    taken: Arc<Mutex<BTreeMap<String, BTreeSet<u32>>>>,
}

/// A held slot; released when dropped.
pub struct SlotGuard {
    slots: ConcurrencySlots,
    pool: String,
    id: u32,
}

impl SlotGuard {
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl ConcurrencySlots {
    /// Takes the lowest free slot of `pool` (a runner token, or a runner token and a project).
    pub fn acquire(&self, pool: &str) -> SlotGuard {
        let [slot] = self.acquire_all([pool]);
        slot
    }

    /// Takes a slot of each pool at once, as gitlab-runner computes a job's
    /// `CI_CONCURRENT_ID` and `CI_CONCURRENT_PROJECT_ID` under one lock: taken one after the
    /// other, two jobs starting together could get (0, 1) and (1, 0).
    pub fn acquire_all<const N: usize>(&self, pools: [&str; N]) -> [SlotGuard; N] {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        pools.map(|pool| {
            let set = taken.entry(pool.to_owned()).or_default();
            let id = (0..).find(|i| !set.contains(i)).unwrap_or(u32::MAX);
            set.insert(id);
            SlotGuard {
                slots: self.clone(),
                pool: pool.to_owned(),
                id,
            }
        })
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut taken = self
            .slots
            .taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(set) = taken.get_mut(&self.pool) {
            set.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_slot_is_reused() {
        let s = ConcurrencySlots::default();
        let a = s.acquire("r");
        let b = s.acquire("r");
        let c = s.acquire("r");
        assert_eq!((a.id(), b.id(), c.id()), (0, 1, 2));
        drop(b);
        assert_eq!(s.acquire("r").id(), 1);
        assert_eq!(s.acquire("other").id(), 0);
    }
}
