//! How many WebSocket connections the process takes: in all, and not yet authenticated per
//! client address. Each admitted connection holds an [`Admitted`] whose drop gives its place back.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

#[derive(Debug)]
pub struct ConnectionLimits {
    open: AtomicUsize,
    max_open: usize,
    unauthenticated: Mutex<HashMap<IpAddr, usize>>,
    max_unauthenticated_per_ip: usize,
}

/// Why an upgrade is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// `MAX_CONNECTIONS` are open.
    OverCapacity,
    /// `MAX_UNAUTHENTICATED_PER_IP` connections from this address have not authenticated yet.
    TooManyUnauthenticated,
}

impl ConnectionLimits {
    pub fn new(max_open: usize, max_unauthenticated_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            open: AtomicUsize::new(0),
            max_open,
            unauthenticated: Mutex::new(HashMap::new()),
            max_unauthenticated_per_ip,
        })
    }

    /// Takes a place for a new connection from `ip`; one that has not authenticated yet also
    /// counts against its address.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, authenticated: bool) -> Result<Admitted, Refused> {
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max_open).then_some(open + 1)
            });
        if taken.is_err() {
            return Err(Refused::OverCapacity);
        }
        let mut admitted = Admitted {
            limits: self.clone(),
            unauthenticated_from: None,
        };
        if authenticated {
            return Ok(admitted);
        }
        let mut waiting = self.waiting();
        let count = waiting.entry(ip).or_insert(0);
        if *count >= self.max_unauthenticated_per_ip {
            return Err(Refused::TooManyUnauthenticated);
        }
        *count += 1;
        admitted.unauthenticated_from = Some(ip);
        Ok(admitted)
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // The map holds plain counts, so it is consistent even if a holder panicked.
        self.unauthenticated
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn release_unauthenticated(&self, ip: IpAddr) {
        let mut waiting = self.waiting();
        if let Some(count) = waiting.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                waiting.remove(&ip);
            }
        }
    }
}

/// A connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Admitted {
    limits: Arc<ConnectionLimits>,
    unauthenticated_from: Option<IpAddr>,
}

impl Admitted {
    /// The connection authenticated: it no longer counts against its address.
    pub fn authenticated(&mut self) {
        if let Some(ip) = self.unauthenticated_from.take() {
            self.limits.release_unauthenticated(ip);
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.authenticated();
        self.limits.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_come_back_when_dropped() {
        let limits = ConnectionLimits::new(2, 1);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut first = limits.admit(a, false).unwrap();
        assert_eq!(
            limits.admit(a, false).unwrap_err(),
            Refused::TooManyUnauthenticated
        );
        first.authenticated();
        let second = limits.admit(a, false).unwrap();
        assert_eq!(limits.admit(b, true).unwrap_err(), Refused::OverCapacity);
        drop(second);
        let _third = limits.admit(b, true).unwrap();
        drop(first);
        assert_eq!(limits.open.load(Ordering::Acquire), 1);
    }
}
