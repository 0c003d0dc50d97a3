//! Where a restore's time goes: fetching objects from storage, or decoding them (verify,
//! decrypt, decompress). A drill reports its recovery time broken down this way.
//!
//! Reads overlap (several chunks are in flight at once), so summing each read's duration
//! would count the same second several times. The clock instead attributes every instant
//! of wall time to exactly one phase: fetch while any fetch is in flight, else decode while
//! any decode is running, else neither (the caller's own work: loading, writing files).
//! The parts therefore never add up to more than the wall time they were measured in.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Fetch,
    Decode,
}

#[derive(Debug)]
struct State {
    in_flight: [u32; 2],
    since: Instant,
    spent: [Duration; 2],
}

/// Accumulates exclusive fetch and decode time; shared by every read of one repository.
#[derive(Debug)]
pub struct PhaseClock {
    state: Mutex<State>,
}

/// Time attributed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhaseTimes {
    pub fetch: Duration,
    pub decode: Duration,
}

impl Default for PhaseClock {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                in_flight: [0, 0],
                since: Instant::now(),
                spent: [Duration::ZERO; 2],
            }),
        }
    }
}

impl State {
    /// Gives the time since the last transition to the phase that held it.
    fn settle(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.since);
        if self.in_flight[0] > 0 {
            self.spent[0] += elapsed;
        } else if self.in_flight[1] > 0 {
            self.spent[1] += elapsed;
        }
        self.since = now;
    }
}

impl PhaseClock {
    /// Marks `phase` as running until the guard is dropped.
    pub fn enter(self: &Arc<Self>, phase: Phase) -> PhaseGuard {
        self.transition(phase, true);
        PhaseGuard {
            clock: Arc::clone(self),
            phase,
        }
    }

    fn transition(&self, phase: Phase, enter: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.settle(Instant::now());
        let slot = &mut state.in_flight[phase as usize];
        *slot = if enter {
            *slot + 1
        } else {
            slot.saturating_sub(1)
        };
    }

    pub fn times(&self) -> PhaseTimes {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.settle(Instant::now());
        PhaseTimes {
            fetch: state.spent[0],
            decode: state.spent[1],
        }
    }
}

/// Ends its phase when dropped (also when the read it times is cancelled).
#[derive(Debug)]
pub struct PhaseGuard {
    clock: Arc<PhaseClock>,
    phase: Phase,
}

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        self.clock.transition(self.phase, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_phases_are_counted_once() {
        let clock = Arc::new(PhaseClock::default());
        let start = Instant::now();
        let a = clock.enter(Phase::Fetch);
        let b = clock.enter(Phase::Fetch);
        let d = clock.enter(Phase::Decode);
        std::thread::sleep(Duration::from_millis(30));
        drop(a);
        drop(b);
        std::thread::sleep(Duration::from_millis(30));
        drop(d);
        std::thread::sleep(Duration::from_millis(20));
        let times = clock.times();
        let wall = start.elapsed();
        assert!(times.fetch >= Duration::from_millis(30), "{times:?}");
        assert!(times.decode >= Duration::from_millis(30), "{times:?}");
        assert!(times.fetch + times.decode <= wall, "{times:?} vs {wall:?}");
        // Idle time (the last 20 ms) belongs to neither.
        assert!(wall - (times.fetch + times.decode) >= Duration::from_millis(20));
    }
}
