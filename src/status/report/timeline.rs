//! The report's chart: bars of [`STEP`] seconds over the last ten minutes, from the
//! sampler's per-second totals.

use serde::Serialize;

use crate::status::{History, Tick};

/// The chart: this many bars of [`STEP`] seconds, oldest first.
const BARS: usize = 60;
const STEP: usize = 10;

#[derive(Serialize)]
pub(in crate::status) struct Timeline {
    step_seconds: usize,
    /// Unix seconds of the newest bar's end.
    end: u64,
    pub(in crate::status) requests: Vec<u64>,
    refused: Vec<u64>,
    shadowed: Vec<u64>,
}

/// Bars of [`STEP`] seconds ending now (`live`: the counters as they are), from the
/// per-second totals; before the oldest tick kept, the bars are empty.
pub(in crate::status) fn timeline(history: &History, live: Tick) -> Timeline {
    let ticks = &history.ticks;
    // The totals `back` seconds ago: the newest tick taken by then (found by its time, as a
    // sampler that woke late or twice in a second leaves ticks not one second apart), or the
    // oldest kept, the start.
    let at = |back: usize| -> Tick {
        if back == 0 {
            return live;
        }
        let then = live.at.saturating_sub(back as u64);
        let taken = ticks.partition_point(|tick| tick.at <= then);
        ticks.get(taken.saturating_sub(1)).copied().unwrap_or(live)
    };
    let mut timeline = Timeline {
        step_seconds: STEP,
        end: live.at,
        requests: Vec::with_capacity(BARS),
        refused: Vec::with_capacity(BARS),
        shadowed: Vec::with_capacity(BARS),
    };
    for bar in (0..BARS).rev() {
        let (start, end) = (at((bar + 1) * STEP), at(bar * STEP));
        timeline
            .requests
            .push(end.requests.saturating_sub(start.requests));
        timeline
            .refused
            .push(end.refused.saturating_sub(start.refused));
        timeline
            .shadowed
            .push(end.shadowed.saturating_sub(start.shadowed));
    }
    timeline
}
