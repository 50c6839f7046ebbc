//! The wait between reconnection attempts: exponential with jitter, so that many agents cut
//! off by the same broker restart do not all dial back in the same instant.

use std::time::Duration;

use rand::Rng as _;

/// The first delay after a failure.
pub const INITIAL_DELAY: Duration = Duration::from_millis(200);

/// Delays of 200 ms, 400 ms, 800 ms, … up to a maximum, each drawn at random from its
/// upper half (`[d/2, d]`). [`reset`](Self::reset) after a connection was welcomed.
#[derive(Debug, Clone)]
pub struct Backoff {
    current: Duration,
    max: Duration,
}

impl Backoff {
    /// A backoff whose delays never exceed `max`.
    pub fn new(max: Duration) -> Self {
        Self {
            current: INITIAL_DELAY.min(max),
            max,
        }
    }

    /// The next delay, with `jitter` in `[0, 1]` choosing where in `[d/2, d]` it falls;
    /// doubles `d` for the time after.
    pub fn next_delay_with(&mut self, jitter: f64) -> Duration {
        let ceiling = self.current;
        let half = ceiling / 2;
        let delay = half + (ceiling - half).mul_f64(jitter.clamp(0.0, 1.0));
        self.current = ceiling.saturating_mul(2).min(self.max);
        delay
    }

    /// The next delay, jittered at random.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(rand::thread_rng().gen_range(0.0..=1.0))
    }

    /// Starts again from the first delay.
    pub fn reset(&mut self) {
        self.current = INITIAL_DELAY.min(self.max);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_up_to_the_maximum() {
        let mut backoff = Backoff::new(Duration::from_secs(2));
        let ceilings: Vec<Duration> = (0..7).map(|_| backoff.next_delay_with(1.0)).collect();
        assert_eq!(
            ceilings,
            [200, 400, 800, 1600, 2000, 2000, 2000].map(|ms| ms * MS)
        );
    }

    #[test]
    fn jitter_spans_the_upper_half() {
        let mut low = Backoff::new(Duration::from_secs(30));
        let mut high = low.clone();
        for ceiling in [200, 400, 800] {
            assert_eq!(low.next_delay_with(0.0), ceiling / 2 * MS);
            assert_eq!(high.next_delay_with(1.0), ceiling * MS);
        }
        let mut backoff = Backoff::new(Duration::from_secs(30));
        for ceiling in [200, 400, 800, 1600, 3200] {
            let delay = backoff.next_delay();
            assert!(
                (ceiling / 2 * MS..=ceiling * MS).contains(&delay),
                "{delay:?}"
            );
        }
    }

    #[test]
    fn reset_starts_again_and_a_small_maximum_caps_the_first_delay() {
        let mut backoff = Backoff::new(Duration::from_secs(30));
        for _ in 0..5 {
            backoff.next_delay();
        }
        backoff.reset();
        assert_eq!(backoff.next_delay_with(1.0), 200 * MS);

        let mut small = Backoff::new(100 * MS);
        assert_eq!(small.next_delay_with(1.0), 100 * MS);
        assert_eq!(small.next_delay_with(1.0), 100 * MS);
    }
}
