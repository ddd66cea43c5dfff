//! The GPU devices of `hubfleet.local.gpus`, given out to local servers one start at a time.
//! Who holds what lives in memory, and in each server's state: a restarted hub takes the
//! devices of the servers it re-adopts back ([`GpuPool::adopt`]).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::ServerRef;

pub(crate) struct GpuPool {
    devices: Vec<u32>,
    /// Device → the server holding it.
    held: Mutex<BTreeMap<u32, ServerRef>>,
}

impl GpuPool {
    pub(crate) fn new(devices: Vec<u32>) -> Self {
        GpuPool {
            devices,
            held: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn configured(&self) -> bool {
        !self.devices.is_empty()
    }

    fn held(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, ServerRef>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The devices `server` could get, in order: free ones, and those it holds already (a
    /// server that is being started holds nothing that is still in use).
    fn available(held: &BTreeMap<u32, ServerRef>, devices: &[u32], server: &ServerRef) -> Vec<u32> {
        devices
            .iter()
            .copied()
            .filter(|gpu| held.get(gpu).is_none_or(|holder| holder == server))
            .collect()
    }

    /// Could `count` devices be given to `server` now? The message says why not.
    pub(crate) fn check(&self, server: &ServerRef, count: u32) -> Result<(), String> {
        if count == 0 {
            return Ok(());
        }
        let free = Self::available(&self.held(), &self.devices, server);
        self.enough(count, free.len())
    }

    /// Give `count` devices to `server` (replacing any it held).
    pub(crate) fn reserve(&self, server: &ServerRef, count: u32) -> Result<Vec<u32>, String> {
        let mut held = self.held();
        held.retain(|_, holder| holder != server);
        if count == 0 {
            return Ok(Vec::new());
        }
        let free = Self::available(&held, &self.devices, server);
        self.enough(count, free.len())?;
        let given = free[..count as usize].to_vec();
        for gpu in &given {
            held.insert(*gpu, server.clone());
        }
        Ok(given)
    }

    fn enough(&self, count: u32, free: usize) -> Result<(), String> {
        let asked = if count == 1 {
            "1 GPU".to_string()
        } else {
            format!("{count} GPUs")
        };
        if self.devices.is_empty() {
            return Err(format!(
                "this server asks for {asked}, but this hub has none (hubfleet.local.gpus is empty); pick a profile without a GPU"
            ));
        }
        if free < count as usize {
            return Err(format!(
                "this server asks for {asked}, but only {free} of the hub's {} GPU(s) {} free; try again when another GPU server stops, or pick a profile without a GPU",
                self.devices.len(),
                if free == 1 { "is" } else { "are" },
            ));
        }
        Ok(())
    }

    /// Free `devices`, if `server` holds them (any holder when `server` is unknown: a state
    /// saved before servers were named in it).
    pub(crate) fn release(&self, server: Option<&ServerRef>, devices: &[u32]) {
        let mut held = self.held();
        for gpu in devices {
            if server.is_none_or(|server| held.get(gpu) == Some(server)) {
                held.remove(gpu);
            }
        }
    }

    /// A running server found again after a restart holds `devices` (those still configured).
    pub(crate) fn adopt(&self, server: &ServerRef, devices: &[u32]) {
        let mut held = self.held();
        for gpu in devices.iter().filter(|gpu| self.devices.contains(gpu)) {
            held.insert(*gpu, server.clone());
        }
    }

    pub(crate) fn held_by(&self, server: &ServerRef) -> Vec<u32> {
        self.held()
            .iter()
            .filter(|(_, holder)| *holder == server)
            .map(|(gpu, _)| *gpu)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(user: &str) -> ServerRef {
        ServerRef::new(user, "")
    }

    #[test]
    fn devices_are_given_out_refused_when_taken_and_freed() {
        let pool = GpuPool::new(vec![0, 1]);
        assert_eq!(pool.reserve(&server("a"), 1).unwrap(), [0]);
        assert_eq!(pool.reserve(&server("b"), 1).unwrap(), [1]);
        let e = pool.check(&server("c"), 1).unwrap_err();
        assert!(
            e.contains("asks for 1 GPU, but only 0 of the hub's 2 GPU(s) are free"),
            "{e}"
        );
        assert!(pool.reserve(&server("c"), 1).is_err());
        assert!(pool.check(&server("c"), 0).is_ok());
        pool.release(Some(&server("c")), &[0]);
        assert_eq!(pool.held_by(&server("a")), [0], "only the holder frees");
        pool.release(Some(&server("a")), &[0]);
        assert_eq!(pool.reserve(&server("c"), 1).unwrap(), [0]);
        let e = pool.check(&server("d"), 3).unwrap_err();
        assert!(e.contains("asks for 3 GPUs"), "{e}");
    }

    #[test]
    fn a_new_start_replaces_what_the_server_held() {
        let pool = GpuPool::new(vec![0]);
        assert_eq!(pool.reserve(&server("a"), 1).unwrap(), [0]);
        assert!(pool.check(&server("a"), 1).is_ok());
        assert_eq!(pool.reserve(&server("a"), 1).unwrap(), [0]);
        assert_eq!(pool.reserve(&server("a"), 0).unwrap(), Vec::<u32>::new());
        assert!(pool.held_by(&server("a")).is_empty());
    }

    #[test]
    fn none_configured() {
        let pool = GpuPool::new(Vec::new());
        let e = pool.check(&server("a"), 1).unwrap_err();
        assert!(
            e.contains("this hub has none (hubfleet.local.gpus is empty)"),
            "{e}"
        );
    }

    #[test]
    fn adopted_devices_are_taken() {
        let pool = GpuPool::new(vec![0, 1]);
        pool.adopt(&server("a"), &[1, 7]);
        assert_eq!(pool.held_by(&server("a")), [1], "7 is no longer configured");
        assert_eq!(pool.reserve(&server("b"), 1).unwrap(), [0]);
        assert!(pool.check(&server("c"), 1).is_err());
        pool.release(None, &[1]);
        assert_eq!(pool.reserve(&server("c"), 1).unwrap(), [1]);
    }
}
