//! Room for request bodies: every body moat reads whole (to validate it) holds its size
//! against `limits.max_buffered_body_bytes` until the request has been forwarded, so the
//! memory bodies take stays bounded however many clients send at once. A request that finds
//! no room within `limits.body_buffer_wait` is refused with 503 `overloaded`, and the
//! requests already admitted keep the core to themselves: goodput holds at capacity
//! instead of every request finishing late.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::reject::Rejection;

/// Room is counted in KiB: one permit per KiB keeps a 4 GiB body within `u32` permits.
const UNIT: u64 = 1024;

/// The room all bodies share; one per snapshot (a reload starts a new count, so for the
/// moment the old requests finish the two may together hold up to twice the bound).
#[derive(Debug)]
pub struct BodyBudget {
    room: Arc<Semaphore>,
    bytes: u64,
    wait: Duration,
}

/// The room one request's body holds; given back when dropped.
#[derive(Debug, Default)]
pub struct Room(Option<OwnedSemaphorePermit>);

impl BodyBudget {
    pub fn new(bytes: u64, wait: Duration) -> Self {
        let units = usize::try_from(bytes.div_ceil(UNIT)).unwrap_or(Semaphore::MAX_PERMITS);
        BodyBudget {
            room: Arc::new(Semaphore::new(units.min(Semaphore::MAX_PERMITS))),
            bytes,
            wait,
        }
    }

    /// True when this budget is the one `bytes` and `wait` configure.
    pub fn is(&self, bytes: u64, wait: Duration) -> bool {
        (self.bytes, self.wait) == (bytes, wait)
    }

    /// Grows `room` to hold `bytes`, waiting at most `limits.body_buffer_wait` for it.
    pub async fn reserve(&self, bytes: u64, room: &mut Room) -> Result<(), Rejection> {
        let held = room
            .0
            .as_ref()
            .map_or(0, |permit| permit.num_permits() as u64);
        let Ok(more) = u32::try_from(bytes.div_ceil(UNIT).saturating_sub(held)) else {
            return Err(Rejection::BodiesOverloaded);
        };
        if more == 0 {
            return Ok(());
        }
        let acquire = self.room.clone().acquire_many_owned(more);
        let permit = match tokio::time::timeout(self.wait, acquire).await {
            Ok(Ok(permit)) => permit,
            // Elapsed, or (never: it is never closed) a closed semaphore.
            _ => return Err(Rejection::BodiesOverloaded),
        };
        match &mut room.0 {
            Some(held) => held.merge(permit),
            empty => *empty = Some(permit),
        }
        Ok(())
    }

    /// Room for `bytes` if there is that much free now, without waiting: a model's answer
    /// that waited would pile up in its connection's read buffer meanwhile.
    pub fn try_reserve(&self, bytes: u64) -> Option<Room> {
        let units = u32::try_from(bytes.div_ceil(UNIT)).ok()?;
        let permit = self.room.clone().try_acquire_many_owned(units).ok()?;
        Some(Room(Some(permit)))
    }

    /// Bytes of room free now.
    #[cfg(test)]
    fn free_bytes(&self) -> u64 {
        self.room.available_permits() as u64 * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn room_is_held_until_dropped_and_a_request_over_it_waits_then_is_refused() {
        let budget = BodyBudget::new(4 * UNIT, Duration::from_millis(20));
        let mut first = Room::default();
        budget.reserve(1, &mut first).await.unwrap();
        budget.reserve(3 * UNIT, &mut first).await.unwrap();
        assert_eq!(budget.free_bytes(), UNIT, "grown to 3 KiB, not 3 KiB more");
        let mut second = Room::default();
        assert_eq!(
            budget.reserve(2 * UNIT, &mut second).await,
            Err(Rejection::BodiesOverloaded)
        );
        drop(first);
        budget.reserve(2 * UNIT, &mut second).await.unwrap();
        assert_eq!(budget.free_bytes(), 2 * UNIT);
    }

    #[test]
    fn an_answer_takes_room_only_if_it_is_free_now() {
        let budget = BodyBudget::new(4 * UNIT, Duration::from_secs(60));
        let held = budget.try_reserve(3 * UNIT).unwrap();
        assert!(budget.try_reserve(2 * UNIT).is_none(), "not waited for");
        drop(held);
        assert!(budget.try_reserve(4 * UNIT).is_some());
        assert_eq!(budget.free_bytes(), 4 * UNIT, "given back when dropped");
    }
}
