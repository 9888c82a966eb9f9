//! What an attempt at a message means (pure): each recipient's new state,
//! Postfix's exponential backoff between `EMAIL_OUTBOX_RETRY_MIN` and
//! `_MAX`, the end of a message's life, and its `last_error`.

use crate::store::{OutboxState, RcptState};

/// The outcome for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// 2xx: the server took the message for this recipient.
    Accepted,
    /// 4xx or a network error: try again later.
    Temporary(String),
    /// 5xx: never.
    Permanent(String),
}

/// A recipient as recorded: address, state, the server's last reply.
pub type Rcpt = (String, RcptState, Option<String>);

/// The retry settings of `config.inc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// `EMAIL_OUTBOX_RETRY_MIN` (s).
    pub min: i64,
    /// `EMAIL_OUTBOX_RETRY_MAX` (s).
    pub max: i64,
    /// `EMAIL_OUTBOX_LIFETIME` (s), counted from `created_at`.
    pub lifetime: i64,
}

/// What an attempt leaves behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The recipients whose state changed, to record.
    pub changes: Vec<Rcpt>,
    /// The message's state after it.
    pub after: After,
    /// The message's `last_error`.
    pub last_error: Option<String>,
    /// Something failed in this attempt: a recipient rejected, for good or
    /// for now.
    pub failed: bool,
}

/// Merges an attempt (`tried`: the recipients it went to, with their
/// outcome) into the recipients as they were (`before`), and decides the
/// message's state. `attempts` counts this attempt; `tried` empty means
/// nothing was sent (only recipients that were already done).
pub fn outcome(
    before: &[Rcpt],
    tried: &[(String, Delivery)],
    attempts: i64,
    created_at: i64,
    now: i64,
    retry: Retry,
) -> Outcome {
    let mut after: Vec<Rcpt> = Vec::with_capacity(before.len());
    let mut changes: Vec<Rcpt> = Vec::new();
    let mut rejected = false;
    let mut temporary: Vec<(String, String)> = Vec::new();
    for (addr, state, reply) in before {
        let outcome = tried.iter().find(|(a, _)| a == addr).map(|(_, d)| d);
        let (state, reply) = match outcome {
            Some(Delivery::Accepted) => (RcptState::Sent, None),
            Some(Delivery::Permanent(r)) => {
                rejected = true;
                (RcptState::Failed, Some(r.clone()))
            }
            Some(Delivery::Temporary(r)) => {
                temporary.push((addr.clone(), r.clone()));
                (RcptState::Pending, Some(r.clone()))
            }
            None => {
                after.push((addr.clone(), *state, reply.clone()));
                continue;
            }
        };
        changes.push((addr.clone(), state, reply.clone()));
        after.push((addr.clone(), state, reply));
    }
    let states: Vec<RcptState> = after.iter().map(|(_, s, _)| *s).collect();
    let decided = after_attempt(&states, attempts, created_at, now, retry);
    if decided.expire_pending {
        let why = format!(
            "still failing after {} s (EMAIL_OUTBOX_LIFETIME {}): {}",
            now - created_at,
            retry.lifetime,
            temporary
                .last()
                .map(|(_, r)| r.as_str())
                .or_else(|| after.iter().rev().find_map(|(_, s, r)| {
                    (*s == RcptState::Pending).then_some(r.as_deref()).flatten()
                }))
                .unwrap_or("no reply")
        );
        for (addr, state, reply) in after.iter_mut() {
            if *state == RcptState::Pending {
                *state = RcptState::Failed;
                *reply = Some(why.clone());
                changes.retain(|(a, _, _)| a != addr);
                changes.push((addr.clone(), RcptState::Failed, Some(why.clone())));
            }
        }
        rejected = true;
        temporary.clear();
    }
    Outcome {
        changes,
        last_error: last_error(&after, &temporary),
        after: decided,
        failed: rejected || !temporary.is_empty(),
    }
}

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
    /// `Queued`, `Sent` or `Failed`.
    pub state: OutboxState,
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
    retry: Retry,
) -> After {
    let any_sent = rcpts.contains(&RcptState::Sent);
    let pending = rcpts.contains(&RcptState::Pending);
    let done = |expire| After {
        state: if any_sent {
            OutboxState::Sent
        } else {
            OutboxState::Failed
        },
        next_attempt_at: None,
        expire_pending: expire,
    };
    if !pending {
        return done(false);
    }
    if now - created_at >= retry.lifetime {
        return done(true);
    }
    After {
        state: OutboxState::Queued,
        next_attempt_at: Some(now + backoff(attempts, retry.min, retry.max)),
        expire_pending: false,
    }
}

/// `last_error` of a message: every recipient rejected for good (so far,
/// not only in this attempt) with the server's reply, then this attempt's
/// temporary failures (the reply once when several recipients got the same,
/// as when the server could not be reached). None when nothing went wrong.
fn last_error(rcpts: &[Rcpt], temporary: &[(String, String)]) -> Option<String> {
    let rejected: Vec<String> = rcpts
        .iter()
        .filter(|(_, s, _)| *s == RcptState::Failed)
        .map(|(a, _, r)| format!("{a}: {}", r.as_deref().unwrap_or("rejected")))
        .collect();
    let mut parts = Vec::new();
    if !rejected.is_empty() {
        parts.push(format!("rejected: {}", rejected.join("; ")));
    }
    if let Some((_, first)) = temporary.first() {
        if temporary.len() > 1 && temporary.iter().all(|(_, r)| r == first) {
            parts.push(format!(
                "temporary: {first} ({} recipients)",
                temporary.len()
            ));
        } else {
            let each: Vec<String> = temporary.iter().map(|(a, r)| format!("{a}: {r}")).collect();
            parts.push(format!("temporary: {}", each.join("; ")));
        }
    }
    (!parts.is_empty()).then(|| parts.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use RcptState::*;
    type O = OutboxState;

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
        let cases: &[(&str, &[RcptState], i64, OutboxState, Option<i64>, bool)] = &[
            ("all_sent", &[Sent, Sent], t0 + 10, O::Sent, None, false),
            (
                "one_rejected_one_sent",
                &[Sent, Failed],
                t0 + 10,
                O::Sent,
                None,
                false,
            ),
            (
                "all_rejected",
                &[Failed, Failed],
                t0 + 10,
                O::Failed,
                None,
                false,
            ),
            (
                "one_pending",
                &[Sent, Pending],
                t0 + 10,
                O::Queued,
                Some(t0 + 10 + 300),
                false,
            ),
            (
                "all_pending",
                &[Pending],
                t0 + 10,
                O::Queued,
                Some(t0 + 310),
                false,
            ),
            (
                "pending_past_lifetime_nothing_sent",
                &[Pending],
                t0 + life,
                O::Failed,
                None,
                true,
            ),
            (
                "pending_past_lifetime_some_sent",
                &[Sent, Pending],
                t0 + life,
                O::Sent,
                None,
                true,
            ),
            (
                "pending_just_before_lifetime",
                &[Pending],
                t0 + life - 1,
                O::Queued,
                Some(t0 + life - 1 + 300),
                false,
            ),
        ];
        for (name, rcpts, now, state, next, expire) in cases {
            let retry = Retry {
                min,
                max,
                lifetime: life,
            };
            let a = after_attempt(rcpts, 1, t0, *now, retry);
            assert_eq!(
                (a.state, a.next_attempt_at, a.expire_pending),
                (*state, *next, *expire),
                "{name}"
            );
        }
    }

    fn r(addr: &str, state: RcptState, reply: Option<&str>) -> (String, RcptState, Option<String>) {
        (addr.into(), state, reply.map(str::to_string))
    }

    fn t(addr: &str, reply: &str) -> (String, String) {
        (addr.into(), reply.into())
    }

    #[test]
    fn last_error_table() {
        use RcptState::*;
        let cases: Vec<(&str, Vec<_>, Vec<_>, Option<&str>)> = vec![
            ("all_sent", vec![r("a@x", Sent, None)], vec![], None),
            (
                "earlier_rejection_stays_named",
                vec![
                    r("a@x", Sent, None),
                    r("c@x", Failed, Some("550 no such user")),
                ],
                vec![],
                Some("rejected: c@x: 550 no such user"),
            ),
            (
                "one_temporary_names_its_address",
                vec![r("a@x", Sent, None), r("b@x", Pending, Some("451 busy"))],
                vec![t("b@x", "451 busy")],
                Some("temporary: b@x: 451 busy"),
            ),
            (
                "same_temporary_reply_for_all_once",
                vec![r("a@x", Pending, None), r("b@x", Pending, None)],
                vec![t("a@x", "cannot connect"), t("b@x", "cannot connect")],
                Some("temporary: cannot connect (2 recipients)"),
            ),
            (
                "different_temporary_replies_each",
                vec![r("a@x", Pending, None), r("b@x", Pending, None)],
                vec![t("a@x", "451 a"), t("b@x", "452 b")],
                Some("temporary: a@x: 451 a; b@x: 452 b"),
            ),
            (
                "rejected_and_temporary",
                vec![r("b@x", Pending, None), r("c@x", Failed, Some("550 no"))],
                vec![t("b@x", "451 busy")],
                Some("rejected: c@x: 550 no | temporary: b@x: 451 busy"),
            ),
        ];
        for (name, rcpts, temporary, want) in cases {
            assert_eq!(last_error(&rcpts, &temporary).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn outcome_table() {
        let retry = Retry {
            min: 300,
            max: 4000,
            lifetime: 432_000,
        };
        let t0 = 1_000_000;
        let p = |a: &str| r(a, Pending, None);
        let accepted = |a: &str| (a.to_string(), Delivery::Accepted);
        let temp = |a: &str, why: &str| (a.to_string(), Delivery::Temporary(why.into()));
        let perm = |a: &str, why: &str| (a.to_string(), Delivery::Permanent(why.into()));
        type Case = (
            &'static str,
            Vec<Rcpt>,
            Vec<(String, Delivery)>,
            i64,
            OutboxState,
            Option<&'static str>,
            bool,
        );
        let cases: Vec<Case> = vec![
            (
                "all_accepted",
                vec![p("a@x"), p("b@x")],
                vec![accepted("a@x"), accepted("b@x")],
                t0,
                O::Sent,
                None,
                false,
            ),
            (
                "one_rejected_the_other_sent",
                vec![p("a@x"), p("b@x")],
                vec![accepted("a@x"), perm("b@x", "550 no such user")],
                t0,
                O::Sent,
                Some("rejected: b@x: 550 no such user"),
                true,
            ),
            (
                "retry_goes_only_to_the_pending_one",
                vec![r("a@x", Sent, None), r("b@x", Pending, Some("451 busy"))],
                vec![temp("b@x", "451 still busy")],
                t0,
                O::Queued,
                Some("temporary: b@x: 451 still busy"),
                true,
            ),
            (
                "past_the_lifetime_the_pending_fail",
                vec![p("a@x")],
                vec![temp("a@x", "451 busy")],
                t0 + retry.lifetime,
                O::Failed,
                Some("rejected: a@x: still failing after 432000 s (EMAIL_OUTBOX_LIFETIME 432000): 451 busy"),
                true,
            ),
            (
                "nothing_tried_nothing_pending",
                vec![r("a@x", Sent, None)],
                vec![],
                t0,
                O::Sent,
                None,
                false,
            ),
        ];
        for (name, before, tried, now, state, error, failed) in cases {
            let o = outcome(&before, &tried, 1, t0, now, retry);
            assert_eq!(o.after.state, state, "{name}");
            assert_eq!(o.last_error.as_deref(), error, "{name}");
            assert_eq!(o.failed, failed, "{name}");
        }
    }
}
