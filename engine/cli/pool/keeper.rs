//! Keeping the pool at its size: new VMs for warm keys below their idle count (at the create
//! rate, slower while creates fail, never past `max_instances`), old ones replaced, idle ones
//! checked.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Map;

use executor_driver::interpreter::new_vm_id;

use super::daemon::{Daemon, warm_key};
use super::vm::{Phase, Vm, same_key};

impl Daemon {
    /// Starts `provision` for every warm key below its idle count (as its periods set it now),
    /// one VM per create interval (longer while creates keep failing), never past
    /// `max_instances`.
    pub(super) fn fill(self: &Arc<Self>) {
        for warm in &self.settings.warm {
            let key = warm_key(warm);
            let (ready_or_coming, total) = {
                let vms = self.vms.lock().unwrap_or_else(|p| p.into_inner());
                let mine = vms.iter().filter(|v| same_key(&v.key, &key)).count();
                (mine, vms.len() + self.claimed_count())
            };
            if ready_or_coming >= warm.idle_now() as usize
                || total >= self.settings.max_instances as usize
            {
                continue;
            }
            {
                let mut pacing = self.pacing.lock().unwrap_or_else(|p| p.into_inner());
                if Instant::now() < pacing.next_create {
                    return;
                }
                pacing.next_create = Instant::now() + self.create_pause(pacing.failures_in_a_row);
            }
            let id = new_vm_id();
            let vm = Vm {
                dir: self.root.join(&id),
                id,
                key,
                phase: Phase::Booting,
                state: Map::new(),
                ready_at: None,
            };
            self.vms
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(vm.clone());
            let me = self.clone();
            // Tracked, so that a stopping daemon waits for each VM it is making to be ready or
            // deleted before it exits.
            let mut making = self.making.lock().unwrap_or_else(|p| p.into_inner());
            while making.try_join_next().is_some() {}
            making.spawn(async move {
                // Jobs come first: a create starts only while Nova's absolute limits leave room
                // for one more server (an instance, a core and a MB of RAM; the flavor's size
                // is not looked at). A full quota skips this round without counting a failure.
                if executor_cloud::quota::has_room_for_one(me.cloud.as_ref()).await {
                    me.provision(vm).await
                } else {
                    me.remove(&vm.id)
                }
            });
        }
    }

    /// When a period lowers a key's idle count (the evening), the oldest idle VMs above it go.
    pub(super) async fn trim_surplus(&self) {
        let taken: Vec<Vm> = {
            let mut vms = self.vms.lock().unwrap_or_else(|p| p.into_inner());
            let mut surplus = vec![];
            for warm in &self.settings.warm {
                let key = warm_key(warm);
                let mut idle: Vec<usize> = vms
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.phase == Phase::Idle && same_key(&v.key, &key))
                    .map(|(i, _)| i)
                    .collect();
                idle.sort_by_key(|&i| vms[i].ready_at);
                let extra = idle.len().saturating_sub(warm.idle_now() as usize);
                surplus.extend(idle.into_iter().take(extra));
            }
            // Highest index first, so that each removal leaves the others in place.
            surplus.sort_unstable_by(|a, b| b.cmp(a));
            surplus.into_iter().map(|i| vms.remove(i)).collect()
        };
        for vm in taken {
            self.log.info(&format!(
                "VM {} ({}) is more than the idle count needs now; deleting it",
                vm.id,
                vm.key_label()
            ));
            self.delete(&vm).await;
        }
    }

    /// The pause before the next create: the create interval, doubled for every failure in a
    /// row, up to `failure_backoff` (which is never shorter than the interval).
    pub(super) fn create_pause(&self, failures_in_a_row: u32) -> Duration {
        let base = self.settings.create_interval;
        if failures_in_a_row == 0 {
            return base;
        }
        let grown = base.saturating_mul(1u32 << failures_in_a_row.min(16));
        grown.min(self.settings.failure_backoff.max(base))
    }

    pub(super) fn claimed_count(&self) -> usize {
        self.claimed.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Idle VMs past `max_idle_age` make way for fresh ones.
    pub(super) async fn replace_old(&self) {
        let now = SystemTime::now();
        let old: Vec<Vm> = {
            let mut vms = self.vms.lock().unwrap_or_else(|p| p.into_inner());
            let (old, keep): (Vec<Vm>, Vec<Vm>) = vms.drain(..).partition(|v| {
                v.phase == Phase::Idle
                    && v.ready_at.is_some_and(|t| {
                        now.duration_since(t).unwrap_or_default() > self.settings.max_idle_age
                    })
            });
            *vms = keep;
            old
        };
        for vm in old {
            self.log.info(&format!(
                "VM {} reached the maximum idle age; replacing it",
                vm.id
            ));
            self.delete(&vm).await;
        }
    }

    /// Health check: every idle VM gets one SSH round trip; a dead one is deleted.
    pub(super) async fn check_idle(&self) {
        let ids: Vec<String> = {
            let vms = self.vms.lock().unwrap_or_else(|p| p.into_inner());
            vms.iter()
                .filter(|v| v.phase == Phase::Idle)
                .map(|v| v.id.clone())
                .collect()
        };
        // One at a time, so that a claim meanwhile finds every other idle VM ready.
        for id in ids {
            let vm = {
                let mut vms = self.vms.lock().unwrap_or_else(|p| p.into_inner());
                match vms
                    .iter_mut()
                    .find(|v| v.id == id && v.phase == Phase::Idle)
                {
                    Some(v) => {
                        v.phase = Phase::Busy;
                        v.clone()
                    }
                    // Claimed or replaced since the list was made.
                    None => continue,
                }
            };
            match self.alive(&vm).await {
                Ok(()) => self.set(Vm {
                    phase: Phase::Idle,
                    ..vm
                }),
                Err(why) => {
                    self.metrics.failure("health_check");
                    self.log.warn(&format!(
                        "idle VM {} failed its health check ({why}); replacing it",
                        vm.id
                    ));
                    self.remove(&vm.id);
                    self.delete(&vm).await;
                }
            }
        }
    }

    /// Claimed servers that are gone (their job's cleanup ran) stop counting as instances.
    pub(super) async fn forget_finished_claims(&self) {
        let ids: Vec<String> = self
            .claimed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        for id in ids {
            if let Ok(None) = self.cloud.get_server(&id).await {
                self.claimed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
            }
        }
    }
}
