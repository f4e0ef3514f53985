//! Token budgets and stream slots of LLM operations (see `llm`): a request *reserves* tokens
//! before it is forwarded — all its budgets at once, or none — and *settles* when its
//! response ends, returning what it did not use (or charging what it used beyond). Counted
//! in this process or in Redis, in the same calendar windows as quotas.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use super::Window;
use super::shared::Shared;
use crate::config::TokenBudget;
use crate::reject::Rejection;

/// Tokens counted in the window that starts at `window_start`.
#[derive(Default)]
pub struct Spent {
    window_start: i64,
    used: u64,
}

/// One key's budgets in this process: the counters survive a reload that keeps a budget's
/// period (raising a daily budget at noon does not hand out a fresh day).
#[derive(Default)]
pub struct LocalBudgets {
    budgets: Vec<(TokenBudget, Arc<Mutex<Spent>>)>,
}

impl LocalBudgets {
    pub fn new(budgets: &[Option<TokenBudget>; 2], previous: Option<&LocalBudgets>) -> Self {
        let budgets = budgets
            .iter()
            .flatten()
            .map(|budget| {
                let spent = previous
                    .into_iter()
                    .flat_map(|p| &p.budgets)
                    .find(|(old, _)| old.per == budget.per)
                    .map_or_else(Arc::default, |(_, spent)| spent.clone());
                (*budget, spent)
            })
            .collect();
        LocalBudgets { budgets }
    }

    pub fn is_empty(&self) -> bool {
        self.budgets.is_empty()
    }

    /// Reserves up to `want` tokens, and at least `at_least`, in every budget: what fits in
    /// the tightest, or a refusal naming when the budget that is short frees up.
    pub fn reserve(
        &self,
        now: SystemTime,
        want: u64,
        at_least: u64,
    ) -> Result<Reservation, Rejection> {
        // At most two counters, always locked in the same order; held for integer updates
        // only, never across an await.
        let mut guards: Vec<_> = self
            .budgets
            .iter()
            .map(|(budget, spent)| {
                let window = Window::containing(now, budget.per);
                let mut spent = spent.lock().unwrap_or_else(PoisonError::into_inner);
                if spent.window_start != window.start {
                    *spent = Spent {
                        window_start: window.start,
                        used: 0,
                    };
                }
                (budget, window, spent)
            })
            .collect();
        let mut room = want;
        for (budget, window, spent) in &guards {
            let left = budget.tokens.saturating_sub(spent.used);
            if left < at_least {
                return Err(exceeded(budget, *window, now));
            }
            room = room.min(left);
        }
        let mut entries = Vec::with_capacity(guards.len());
        for ((_, window, spent), (_, counter)) in guards.iter_mut().zip(&self.budgets) {
            spent.used += room;
            entries.push((counter.clone(), window.start));
        }
        Ok(Reservation {
            granted: room,
            used: 0,
            ledger: Some(Ledger::Local(entries)),
        })
    }

    /// What is left of each budget now.
    #[cfg(test)]
    pub fn left(&self, now: SystemTime) -> Vec<u64> {
        self.budgets
            .iter()
            .map(|(budget, spent)| {
                let window = Window::containing(now, budget.per);
                let spent = spent.lock().unwrap_or_else(PoisonError::into_inner);
                if spent.window_start == window.start {
                    budget.tokens.saturating_sub(spent.used)
                } else {
                    budget.tokens
                }
            })
            .collect()
    }
}

/// The 429 of a budget that cannot hold a reservation: retry when its window ends.
pub fn exceeded(budget: &TokenBudget, window: Window, now: SystemTime) -> Rejection {
    Rejection::TokenBudgetExceeded {
        tokens: budget.tokens,
        per: budget.per,
        retry_after: window.seconds_left(now),
    }
}

/// Tokens set aside for one request until its response ends. Dropping it settles it: to
/// what [`Reservation::settle`] says was used, else to nothing (a request that never
/// reached the model gives its whole reservation back).
pub struct Reservation {
    /// How many were set aside: what the request may use before moat cuts its stream.
    pub granted: u64,
    used: u64,
    ledger: Option<Ledger>,
}

enum Ledger {
    /// Each counter with the window the tokens were counted in.
    Local(Vec<(Arc<Mutex<Spent>>, i64)>),
    /// The Redis counters the tokens were counted in.
    Redis(Arc<Shared>, Vec<String>),
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("granted", &self.granted)
            .finish_non_exhaustive()
    }
}

impl Reservation {
    pub(super) fn redis(shared: Arc<Shared>, granted: u64, counters: Vec<String>) -> Self {
        Reservation {
            granted,
            used: 0,
            ledger: Some(Ledger::Redis(shared, counters)),
        }
    }

    /// The request used `used` tokens: the difference to what was reserved goes back (or
    /// is charged), in the windows the reservation was counted in. A window that has ended
    /// since is left alone.
    pub fn settle(mut self, used: u64) {
        self.used = used;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let (used, granted) = (self.used, self.granted);
        if used == granted {
            return;
        }
        match self.ledger.take() {
            None => {}
            Some(Ledger::Local(entries)) => {
                for (spent, window_start) in entries {
                    let mut spent = spent.lock().unwrap_or_else(PoisonError::into_inner);
                    if spent.window_start == window_start {
                        spent.used = (spent.used + used).saturating_sub(granted);
                    }
                }
            }
            Some(Ledger::Redis(shared, counters)) => {
                let delta = i128::from(used) - i128::from(granted);
                let delta = i64::try_from(delta).unwrap_or(0);
                // Settling is the end of a response: nothing waits for it. Without a
                // runtime (a process shutting down) the reservation simply stands.
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move { shared.settle(&counters, delta).await });
                }
            }
        }
    }
}

/// A key's streams in flight in this process.
#[derive(Default)]
pub struct Streams {
    open: Arc<AtomicU32>,
}

impl Streams {
    /// Carried over a reload: the streams the old snapshot opened are still open.
    pub fn carry(previous: Option<&Streams>) -> Self {
        Streams {
            open: previous.map_or_else(Arc::default, |p| p.open.clone()),
        }
    }

    /// One more stream, if fewer than `limit` are open.
    pub fn open(&self, limit: u32) -> Result<StreamSlot, Rejection> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < limit).then_some(open + 1)
            })
            .map(|_| StreamSlot(self.open.clone()))
            .map_err(|_| Rejection::TooManyStreams { limit })
    }
}

/// An open stream; dropping it (the response ended, or its client went away) frees the slot.
#[derive(Debug)]
pub struct StreamSlot(Arc<AtomicU32>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Period;
    use std::time::{Duration, UNIX_EPOCH};

    fn budgets(day: u64, minute: Option<u64>) -> [Option<TokenBudget>; 2] {
        [
            Some(TokenBudget {
                tokens: day,
                per: Period::Day,
            }),
            minute.map(|tokens| TokenBudget {
                tokens,
                per: Period::Minute,
            }),
        ]
    }

    // 2026-12-03T12:00:10Z
    fn noon() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_796_299_210)
    }

    #[test]
    fn a_reservation_fits_every_budget_or_is_refused_with_the_short_ones_reset() {
        let local = LocalBudgets::new(&budgets(1000, Some(300)), None);
        let first = local.reserve(noon(), 200, 200).unwrap();
        assert_eq!(first.granted, 200);
        assert_eq!(local.left(noon()), vec![800, 100]);
        let Err(Rejection::TokenBudgetExceeded {
            tokens,
            per,
            retry_after,
        }) = local.reserve(noon(), 200, 200)
        else {
            panic!("200 more fit a minute budget with 100 left");
        };
        assert_eq!((tokens, per, retry_after), (300, Period::Minute, 50));
        // Nothing was charged by the refusal.
        assert_eq!(local.left(noon()), vec![800, 100]);
        // "As much as fits": the tightest budget's rest.
        let rest = local.reserve(noon(), u64::MAX, 1).unwrap();
        assert_eq!(rest.granted, 100);
        assert_eq!(local.left(noon()), vec![700, 0]);
    }

    #[test]
    fn settling_returns_the_unused_part_and_charges_an_overshoot() {
        let local = LocalBudgets::new(&budgets(1000, None), None);
        local.reserve(noon(), 500, 500).unwrap().settle(120);
        assert_eq!(local.left(noon()), vec![880]);
        local.reserve(noon(), 100, 100).unwrap().settle(150);
        assert_eq!(local.left(noon()), vec![730]);
        // Settled after its window ended: the new day is not touched.
        let late = local.reserve(noon(), 100, 100).unwrap();
        let tomorrow = noon() + Duration::from_secs(86_400);
        local.reserve(tomorrow, 10, 10).unwrap().settle(10);
        late.settle(0);
        assert_eq!(local.left(tomorrow), vec![990]);
        // Dropped unsettled (the model never answered): all of it goes back.
        drop(local.reserve(tomorrow, 300, 300).unwrap());
        assert_eq!(local.left(tomorrow), vec![990]);
    }

    #[test]
    fn a_reload_keeps_what_a_budget_has_spent_while_its_period_is_unchanged() {
        let before = LocalBudgets::new(&budgets(1000, None), None);
        before.reserve(noon(), 400, 400).unwrap().settle(400);
        let raised = LocalBudgets::new(&budgets(2000, None), Some(&before));
        assert_eq!(raised.left(noon()), vec![1600]);
        let hourly = [
            Some(TokenBudget {
                tokens: 2000,
                per: Period::Hour,
            }),
            None,
        ];
        assert_eq!(
            LocalBudgets::new(&hourly, Some(&raised)).left(noon()),
            vec![2000]
        );
    }

    #[test]
    fn stream_slots_are_freed_when_dropped_and_carried_over_a_reload() {
        let streams = Streams::default();
        let one = streams.open(2).unwrap();
        let _two = streams.open(2).unwrap();
        assert_eq!(
            streams.open(2).err(),
            Some(Rejection::TooManyStreams { limit: 2 })
        );
        let reloaded = Streams::carry(Some(&streams));
        assert!(reloaded.open(2).is_err());
        drop(one);
        assert!(reloaded.open(2).is_ok());
    }
}
