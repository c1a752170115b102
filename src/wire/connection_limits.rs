//! How many WebSocket connections the process takes: in all, not yet authenticated in all, and
//! not yet authenticated per client address. Each admitted connection holds an [`Admitted`] whose
//! drop gives its place back.
//!
//! Connections without a token can take at most `MAX_UNAUTHENTICATED` places, so a flood of them
//! never locks out a master whose app brings a valid token with the upgrade.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

#[derive(Debug)]
pub struct ConnectionLimits {
    open: AtomicUsize,
    max_open: usize,
    unauthenticated: AtomicUsize,
    max_unauthenticated: usize,
    by_address: Mutex<HashMap<IpAddr, usize>>,
    max_unauthenticated_per_ip: usize,
}

/// Why an upgrade is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// `MAX_CONNECTIONS` are open.
    OverCapacity,
    /// `MAX_UNAUTHENTICATED` connections have not authenticated yet.
    TooManyUnauthenticatedInAll,
    /// `MAX_UNAUTHENTICATED_PER_IP` connections from this address have not authenticated yet.
    TooManyUnauthenticated,
}

/// The address a client is counted under: an IPv6 client by its /64, since one host usually
/// holds a whole /64; an IPv4-mapped address as the IPv4 one.
fn counted_as(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// Takes one place of `max` from `counter`, unless all are taken.
fn take(counter: &AtomicUsize, max: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
            (taken < max).then_some(taken + 1)
        })
        .is_ok()
}

impl ConnectionLimits {
    pub fn new(
        max_open: usize,
        max_unauthenticated: usize,
        max_unauthenticated_per_ip: usize,
    ) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            open: AtomicUsize::new(0),
            max_open,
            unauthenticated: AtomicUsize::new(0),
            max_unauthenticated,
            by_address: Mutex::new(HashMap::new()),
            max_unauthenticated_per_ip,
        })
    }

    /// Takes a place for a new connection from `ip`; one that has not authenticated yet also
    /// counts against the unauthenticated in all and against its address.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, authenticated: bool) -> Result<Admitted, Refused> {
        if !take(&self.open, self.max_open) {
            return Err(Refused::OverCapacity);
        }
        let mut admitted = Admitted {
            limits: self.clone(),
            unauthenticated_from: None,
        };
        if authenticated {
            return Ok(admitted);
        }
        if !take(&self.unauthenticated, self.max_unauthenticated) {
            return Err(Refused::TooManyUnauthenticatedInAll);
        }
        let address = counted_as(ip);
        let mut waiting = self.waiting();
        let count = waiting.entry(address).or_insert(0);
        if *count >= self.max_unauthenticated_per_ip {
            drop(waiting);
            self.unauthenticated.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::TooManyUnauthenticated);
        }
        *count += 1;
        admitted.unauthenticated_from = Some(address);
        Ok(admitted)
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // The map holds plain counts, so it is consistent even if a holder panicked.
        self.by_address
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn release_unauthenticated(&self, address: IpAddr) {
        self.unauthenticated.fetch_sub(1, Ordering::AcqRel);
        let mut waiting = self.waiting();
        if let Some(count) = waiting.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                waiting.remove(&address);
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
    /// The connection authenticated: it no longer counts as unauthenticated.
    pub fn authenticated(&mut self) {
        if let Some(address) = self.unauthenticated_from.take() {
            self.limits.release_unauthenticated(address);
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
        let limits = ConnectionLimits::new(2, 2, 1);
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
        assert_eq!(limits.unauthenticated.load(Ordering::Acquire), 0);
    }

    #[test]
    fn unauthenticated_connections_leave_the_other_places_to_tokens() {
        let limits = ConnectionLimits::new(4, 2, 100);
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let _one = limits.admit(ip(1), false).unwrap();
        let _two = limits.admit(ip(2), false).unwrap();
        assert_eq!(
            limits.admit(ip(3), false).unwrap_err(),
            Refused::TooManyUnauthenticatedInAll
        );
        let _master = limits.admit(ip(3), true).unwrap();
        let _another = limits.admit(ip(4), true).unwrap();
        assert_eq!(
            limits.admit(ip(5), true).unwrap_err(),
            Refused::OverCapacity
        );
    }

    #[test]
    fn an_ipv6_host_is_counted_by_its_64() {
        let limits = ConnectionLimits::new(10, 10, 1);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _first = limits.admit(a, false).unwrap();
        assert_eq!(
            limits.admit(b, false).unwrap_err(),
            Refused::TooManyUnauthenticated
        );
        let _other_network = limits.admit(c, false).unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(counted_as(mapped), IpAddr::from([10, 0, 0, 1]));
    }
}
