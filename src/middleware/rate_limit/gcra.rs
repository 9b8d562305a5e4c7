//! The generic cell rate algorithm, in integer microseconds: one function that both stores
//! run (the memory store in Rust, the Redis store as the same steps in Lua).
//!
//! A policy lets `burst` requests arrive at once and one more every `interval` after that.
//! Its state is the theoretical arrival time (TAT): the instant the bucket would be full again
//! if no request came. A missing state is a full bucket, so state expires when the TAT passes.

/// At most this many policies are decided together on one limiter (a fixed array keeps the
/// memory store's entries and the decision free of allocations).
pub const MAX_POLICIES: usize = 4;

/// One policy's parameters, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// The emission interval `T`: the window divided by the quota.
    pub interval_us: u64,
    /// The burst `B` (at least 1): requests that may arrive at once.
    pub burst: u64,
}

impl Rate {
    /// `T·B`: how far ahead of now the TAT may be for a request of cost 0 to pass.
    fn capacity_us(self) -> u64 {
        self.interval_us.saturating_mul(self.burst)
    }
}

/// One policy's answer to one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Requests of cost 1 that would still pass now, after this one.
    pub remaining: u64,
    /// How long until this policy would let the request pass (0 when it does).
    pub retry_us: u64,
    /// How long until the bucket is full again.
    pub reset_us: u64,
}

/// The decision on one request over every policy of a limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether every policy let it pass (and its cost was taken from each).
    pub allowed: bool,
    /// Each policy's outcome; the first `len` are set.
    pub outcomes: [Outcome; MAX_POLICIES],
    /// How many policies were decided.
    pub len: usize,
}

impl Decision {
    /// No decision: no policy decided (a refund's answer).
    pub fn none() -> Self {
        Self {
            allowed: true,
            outcomes: [Outcome::default(); MAX_POLICIES],
            len: 0,
        }
    }

    /// The policies' outcomes.
    pub fn outcomes(&self) -> &[Outcome] {
        &self.outcomes[..self.len]
    }

    /// The policy with the lowest remaining (the first of equals): the one the `RateLimit`
    /// header reports.
    pub fn tightest(&self) -> (usize, Outcome) {
        let mut best = 0;
        for (i, o) in self.outcomes().iter().enumerate() {
            if o.remaining < self.outcomes[best].remaining {
                best = i;
            }
        }
        (best, self.outcomes[best])
    }

    /// How long until the request would pass: the longest wait over the denying policies.
    pub fn retry_us(&self) -> u64 {
        self.outcomes()
            .iter()
            .map(|o| o.retry_us)
            .max()
            .unwrap_or(0)
    }
}

/// Gives back a charge of `cost` taken earlier: each stored TAT moves back by `T·cost`, never
/// before `now` (a bucket cannot hold more than full). Other requests charged in between keep
/// their part: the TAT is a sum of charges, and only this one's is taken out.
pub fn refund(tats: &mut [u64], now: u64, rates: &[Rate], cost: u64) {
    for (tat, rate) in tats.iter_mut().zip(rates) {
        *tat = tat
            .saturating_sub(rate.interval_us.saturating_mul(cost))
            .max(now);
    }
}

/// Decides a request of `cost` arriving at `now` against every policy, given each policy's
/// stored TAT (`None`: no state, a full bucket). The cost is taken from every policy only if
/// all of them allow it; `tats` is then updated (nothing is written on a denial).
///
/// The steps, per policy: clamp the TAT to at most `now + T·B` (a clock stepped back cannot
/// lock a caller out for longer than one burst); the new TAT is `max(TAT, now) + T·cost`; the
/// request passes when the new TAT is at most `now + T·B`.
pub fn decide(tats: &mut [Option<u64>], now: u64, rates: &[Rate], cost: u64) -> Decision {
    debug_assert_eq!(tats.len(), rates.len());
    debug_assert!(rates.len() <= MAX_POLICIES);
    let mut new_tats = [0u64; MAX_POLICIES];
    let mut allowed = true;
    for (i, (tat, rate)) in tats.iter().zip(rates).enumerate() {
        let limit = now.saturating_add(rate.capacity_us());
        let tat = tat.unwrap_or(now).min(limit);
        new_tats[i] = tat
            .max(now)
            .saturating_add(rate.interval_us.saturating_mul(cost));
        if new_tats[i] > limit {
            allowed = false;
        }
    }
    let mut outcomes = [Outcome::default(); MAX_POLICIES];
    for (i, (tat, rate)) in tats.iter_mut().zip(rates).enumerate() {
        let limit = now.saturating_add(rate.capacity_us());
        let before = tat.unwrap_or(now).min(limit).max(now);
        let current = if allowed && cost > 0 {
            *tat = Some(new_tats[i]);
            new_tats[i]
        } else {
            before
        };
        let remaining = (limit - current.min(limit)) / rate.interval_us.max(1);
        outcomes[i] = Outcome {
            remaining: remaining.min(rate.burst),
            retry_us: if allowed {
                0
            } else {
                new_tats[i].saturating_sub(limit)
            },
            reset_us: current - now,
        };
    }
    Decision {
        allowed,
        outcomes,
        len: rates.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The same policy as a leaky bucket (the other textbook form of GCRA): a level in
    /// microseconds of work that drains at one per microsecond; a request adds `T·cost` and
    /// passes if the level then stays within `T·B`. Written as plainly as possible.
    #[derive(Debug, Clone)]
    struct Bucket {
        level: i128,
        last: i128,
    }

    fn reference(buckets: &mut [Bucket], now: u64, rates: &[Rate], cost: u64) -> Decision {
        let now = i128::from(now);
        for b in buckets.iter_mut() {
            // Time went forward since the last request: the bucket drained by as much.
            let drained = (now - b.last).max(0);
            b.level = (b.level - drained).max(0);
            b.last = b.last.max(now);
        }
        let fits = |b: &Bucket, r: &Rate| {
            b.level + i128::from(r.interval_us) * i128::from(cost)
                <= i128::from(r.interval_us) * i128::from(r.burst)
        };
        let allowed = buckets.iter().zip(rates).all(|(b, r)| fits(b, r));
        let mut outcomes = [Outcome::default(); MAX_POLICIES];
        for (i, (b, r)) in buckets.iter_mut().zip(rates).enumerate() {
            let t = i128::from(r.interval_us);
            let capacity = t * i128::from(r.burst);
            let over = b.level + t * i128::from(cost) - capacity;
            if allowed {
                b.level += t * i128::from(cost);
            }
            outcomes[i] = Outcome {
                remaining: ((capacity - b.level).max(0) / t) as u64,
                retry_us: if allowed { 0 } else { over.max(0) as u64 },
                reset_us: b.level as u64,
            };
        }
        Decision {
            allowed,
            outcomes,
            len: rates.len(),
        }
    }

    fn rate() -> impl Strategy<Value = Rate> {
        (1u64..5_000_000, 1u64..50).prop_map(|(interval_us, burst)| Rate { interval_us, burst })
    }

    #[test]
    fn a_refund_gives_back_only_its_own_charge() {
        let rates = [Rate {
            interval_us: 1_000_000,
            burst: 3,
        }];
        let mut tats = [None];
        // Three charges at once fill the bucket; giving one back lets exactly one more pass.
        for _ in 0..3 {
            assert!(decide(&mut tats, 10, &rates, 1).allowed);
        }
        assert!(!decide(&mut tats, 10, &rates, 1).allowed);
        let mut stored = [tats[0].unwrap()];
        refund(&mut stored, 10, &rates, 1);
        let mut tats = [Some(stored[0])];
        assert!(decide(&mut tats, 10, &rates, 1).allowed);
        assert!(!decide(&mut tats, 10, &rates, 1).allowed);
        // A refund never fills a bucket past full.
        let mut stored = [tats[0].unwrap()];
        refund(&mut stored, 10, &rates, 100);
        assert_eq!(stored, [10]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn decisions_match_a_leaky_bucket(
            rates in proptest::collection::vec(rate(), 1..=MAX_POLICIES),
            arrivals in proptest::collection::vec((0u64..3_000_000, 0u64..4), 1..200),
        ) {
            let mut tats = vec![None; rates.len()];
            let mut buckets = vec![Bucket { level: 0, last: 0 }; rates.len()];
            let mut now = 1_700_000_000_000_000u64;
            for b in &mut buckets {
                b.last = i128::from(now);
            }
            for (gap, cost) in arrivals {
                now += gap;
                let got = decide(&mut tats, now, &rates, cost);
                let want = reference(&mut buckets, now, &rates, cost);
                prop_assert_eq!(got, want, "at {} cost {}", now, cost);
            }
        }
    }

    #[test]
    fn a_burst_then_one_per_interval() {
        let rates = [Rate {
            interval_us: 6_000_000,
            burst: 10,
        }];
        let mut tats = [None];
        let now = 1_000_000_000;
        let allowed = (0..15)
            .filter(|_| decide(&mut tats, now, &rates, 1).allowed)
            .count();
        assert_eq!(allowed, 10);
        let denied = decide(&mut tats, now, &rates, 1);
        assert_eq!(denied.outcomes()[0].retry_us, 6_000_000);
        assert_eq!(denied.outcomes()[0].remaining, 0);
        assert!(decide(&mut tats, now + 6_000_000, &rates, 1).allowed);
    }

    #[test]
    fn nothing_is_taken_unless_every_policy_allows() {
        let rates = [
            Rate {
                interval_us: 1_000,
                burst: 5,
            },
            Rate {
                interval_us: 1_000_000,
                burst: 1,
            },
        ];
        let mut tats = [None, None];
        assert!(decide(&mut tats, 0, &rates, 1).allowed);
        let before = tats;
        let denied = decide(&mut tats, 0, &rates, 1);
        assert!(!denied.allowed);
        assert_eq!(tats, before);
        assert_eq!(denied.tightest().0, 1);
        assert_eq!(denied.retry_us(), 1_000_000);
    }
}
