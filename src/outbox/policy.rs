//! The retry policy (pure): Postfix's exponential backoff between
//! `EMAIL_OUTBOX_RETRY_MIN` and `_MAX`, and the end of a message's life.

use crate::store::RcptState;

/// Seconds to wait after the `attempts`-th failed attempt (1-based):
/// min, 2·min, 4·min, ... capped at max.
pub fn backoff(attempts: i64, min: i64, max: i64) -> i64 {
    let min = min.max(1);
    let mut delay = min;
    for _ in 1..attempts.max(1) {
        delay = delay.saturating_mul(2);
        if delay >= max {
            return max.max(min);
        }
    }
    delay.min(max.max(min))
}

/// What a message becomes after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    /// `queued`, `sent` or `failed`.
    pub state: &'static str,
    pub next_attempt_at: Option<i64>,
    /// The still-pending recipients must be failed (lifetime over).
    pub expire_pending: bool,
}

/// Decides the message's state from its recipients after an attempt at
/// `now` that was its `attempts`-th: no recipient pending → `sent` when
/// anyone got it, else `failed`; some pending → `queued` with backoff,
/// unless the message is older than `lifetime` (then the pending ones fail).
pub fn after_attempt(
    rcpts: &[RcptState],
    attempts: i64,
    created_at: i64,
    now: i64,
    min: i64,
    max: i64,
    lifetime: i64,
) -> After {
    let any_sent = rcpts.contains(&RcptState::Sent);
    let pending = rcpts.contains(&RcptState::Pending);
    let done = |expire| After {
        state: if any_sent { "sent" } else { "failed" },
        next_attempt_at: None,
        expire_pending: expire,
    };
    if !pending {
        return done(false);
    }
    if now - created_at >= lifetime {
        return done(true);
    }
    After {
        state: "queued",
        next_attempt_at: Some(now + backoff(attempts, min, max)),
        expire_pending: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RcptState::*;

    #[test]
    fn backoff_table() {
        let cases: &[(i64, i64)] = &[
            (1, 300),
            (2, 600),
            (3, 1200),
            (4, 2400),
            (5, 4000),
            (6, 4000),
            (60, 4000),
            (0, 300),
        ];
        for (attempts, want) in cases {
            assert_eq!(backoff(*attempts, 300, 4000), *want, "attempt {attempts}");
        }
        assert_eq!(backoff(3, 10, 5), 10, "max below min: min wins");
    }

    #[test]
    fn after_attempt_table() {
        let (min, max, life) = (300, 4000, 432_000);
        let t0 = 1_000_000;
        let cases: &[(&str, &[RcptState], i64, &str, Option<i64>, bool)] = &[
            ("all_sent", &[Sent, Sent], t0 + 10, "sent", None, false),
            (
                "one_rejected_one_sent",
                &[Sent, Failed],
                t0 + 10,
                "sent",
                None,
                false,
            ),
            (
                "all_rejected",
                &[Failed, Failed],
                t0 + 10,
                "failed",
                None,
                false,
            ),
            (
                "one_pending",
                &[Sent, Pending],
                t0 + 10,
                "queued",
                Some(t0 + 10 + 300),
                false,
            ),
            (
                "all_pending",
                &[Pending],
                t0 + 10,
                "queued",
                Some(t0 + 310),
                false,
            ),
            (
                "pending_past_lifetime_nothing_sent",
                &[Pending],
                t0 + life,
                "failed",
                None,
                true,
            ),
            (
                "pending_past_lifetime_some_sent",
                &[Sent, Pending],
                t0 + life,
                "sent",
                None,
                true,
            ),
            (
                "pending_just_before_lifetime",
                &[Pending],
                t0 + life - 1,
                "queued",
                Some(t0 + life - 1 + 300),
                false,
            ),
        ];
        for (name, rcpts, now, state, next, expire) in cases {
            let a = after_attempt(rcpts, 1, t0, *now, min, max, life);
            assert_eq!(
                (a.state, a.next_attempt_at, a.expire_pending),
                (*state, *next, *expire),
                "{name}"
            );
        }
    }
}
