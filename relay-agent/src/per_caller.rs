//! Per-caller limits of the agent on dials (streams per caller are a
//! [`relay_net::quota::Quota`]): how many dials one caller may have in
//! flight at once, so one caller's slow targets cannot starve another's
//! (#13: one SOCKS client dialling a black-holed range used to hold every
//! permit of the agent's one dial semaphore for the whole dial timeout).
//!
//! The caller is the identity the relay names in `Forwarded`, or the client
//! itself on a direct path ([`crate::stream`]). The table is a map keyed
//! by identity whose entry lives only while that caller holds (or waits
//! for) something: counts are given back by `Drop`, and an entry is removed
//! when its count falls to zero, so a dial that ends in any way (an
//! error, a reset, a cancelled future) cannot leak one, and the map never
//! holds more entries than there are callers with something in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use proto::Identity;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Locks a table; a panic elsewhere while it was held leaves consistent
/// counts (every update is a single step), so poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Dials in flight per caller, at most `max` each. Unlike streams, a dial
/// over the cap *waits* (until the dial's deadline) for one of the same
/// caller's dials to end: a port-forward that opens hundreds of quick
/// connections at once must not see refusals just because the agent's one
/// thread has not yet noticed the first connects complete. Only the caller
/// over its cap waits; others dial at once.
#[derive(Debug)]
pub struct DialQueues {
    max: usize,
    queues: Arc<Mutex<HashMap<Identity, Queue>>>,
}

#[derive(Debug)]
struct Queue {
    permits: Arc<Semaphore>,
    /// Dials of this caller holding or waiting for a permit.
    users: usize,
}

/// A caller's place in its queue, waiting or dialling; left on drop.
#[derive(Debug)]
struct Place {
    queues: Arc<Mutex<HashMap<Identity, Queue>>>,
    caller: Identity,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut queues = lock(&self.queues);
        if let Some(q) = queues.get_mut(&self.caller) {
            q.users = q.users.saturating_sub(1);
            if q.users == 0 {
                queues.remove(&self.caller);
            }
        }
    }
}

/// One dial of one caller in flight, until dropped.
#[derive(Debug)]
pub struct CallerDial {
    _permit: OwnedSemaphorePermit,
    _place: Place,
}

impl DialQueues {
    /// At most `max` (at least 1) dials in flight per caller.
    pub fn new(max: usize) -> DialQueues {
        DialQueues {
            max: max.max(1),
            queues: Arc::default(),
        }
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Waits until `caller` has fewer than `max` dials in flight, or
    /// `deadline` passes (`None`).
    ///
    /// # Cancel safety
    /// Dropping the future leaves the queue: nothing is held.
    pub async fn take(&self, caller: &Identity, deadline: Instant) -> Option<CallerDial> {
        let (place, permits) = {
            let mut queues = lock(&self.queues);
            let q = queues.entry(caller.clone()).or_insert_with(|| Queue {
                permits: Arc::new(Semaphore::new(self.max)),
                users: 0,
            });
            q.users += 1;
            let place = Place {
                queues: self.queues.clone(),
                caller: caller.clone(),
            };
            (place, q.permits.clone())
        };
        // The semaphore is never closed: an error cannot happen.
        match tokio::time::timeout_at(deadline, permits.acquire_owned()).await {
            Ok(Ok(permit)) => Some(CallerDial {
                _permit: permit,
                _place: place,
            }),
            _ => None,
        }
    }

    /// Callers with a dial in flight or waiting (the table's size).
    pub fn callers(&self) -> usize {
        lock(&self.queues).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn who(name: &str) -> Identity {
        Identity {
            role: proto::Role::Client,
            name: name.parse().unwrap(),
        }
    }

    #[tokio::test]
    async fn dials_over_the_cap_wait_for_the_same_callers_dials_only() {
        let dials = Arc::new(DialQueues::new(1));
        let (a, b) = (who("a"), who("b"));
        let later = || Instant::now() + Duration::from_secs(10);
        let held = dials.take(&a, later()).await.unwrap();
        // b is not held up by a.
        let other = dials.take(&b, later()).await.unwrap();
        // A second dial of a waits until the first ends...
        let waiting = tokio::spawn({
            let (dials, a) = (dials.clone(), a.clone());
            async move { dials.take(&a, later()).await.map(drop).is_some() }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(held);
        assert!(waiting.await.unwrap());
        // ... or until its deadline.
        let again = dials.take(&a, later()).await.unwrap();
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(dials.take(&a, soon).await.is_none());
        // A cancelled wait leaves nothing behind.
        let cancelled = tokio::time::timeout(Duration::from_millis(20), dials.take(&a, later()));
        assert!(cancelled.await.is_err());
        drop((again, other));
        assert_eq!(dials.callers(), 0, "no entry left at zero");
    }
}
