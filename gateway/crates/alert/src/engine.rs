//! Alert evaluation, pure: committed readings, clock ticks and completed days in; `Fire` and
//! `Clear` transitions out. One state per (rule, post), so an alert fires once and clears once
//! (dedupe); separate fire and clear thresholds keep a value hovering at a limit from flapping;
//! a `for` duration must pass before firing; and readings older than `max_age` when they are
//! committed (backfill, store-and-forward replay) are ignored here entirely: they update scores,
//! they never page anyone.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use protocol::{PostId, QaFlags, Quantity, UnixSeconds};

use super::rules::{Condition, Rule, Severity};
use taza_domain::calendar::LocalDay;
use taza_domain::pipeline::Reading;
use taza_domain::post::PostEntry;

/// Share of a rolling window that readings must cover before a mean may fire.
const MIN_WINDOW_COVERAGE: f64 = 0.75;
/// Longest window any rule may look back over (the rolling buffers keep this much).
pub const MAX_WINDOW_S: i64 = 6 * 3600;

/// A state change to record and notify.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// The rule's condition held (for its `for` duration): open an alert.
    Fire(FireEvent),
    /// The clear condition holds: resolve the open alert of (rule, post).
    Clear {
        /// Rule id.
        rule: String,
        /// Post.
        post: PostId,
        /// When the clear condition was observed.
        at: UnixSeconds,
    },
}

/// Details of a firing.
#[derive(Debug, Clone, PartialEq)]
pub struct FireEvent {
    /// Rule id.
    pub rule: String,
    /// Post.
    pub post: PostId,
    /// Urgency.
    pub severity: Severity,
    /// Quantity concerned, if any.
    pub quantity: Option<Quantity>,
    /// The value that fired (mean, level, rate, ... in the rule's unit).
    pub value: f64,
    /// The threshold it crossed.
    pub threshold: f64,
    /// When.
    pub at: UnixSeconds,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum KeyState {
    Idle,
    /// Condition true since `since`, waiting for the `for` duration.
    Pending {
        since: UnixSeconds,
        value: f64,
        threshold: f64,
    },
    /// An alert is open. `latched`: it was closed by a person while the condition still held;
    /// stay quiet until the clear condition is seen.
    Firing {
        latched: bool,
    },
}

/// What a condition says about the latest data.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    Fire {
        value: f64,
        threshold: f64,
    },
    Clear,
    /// Between the thresholds, or not enough data: keep the current state.
    Hold,
}

/// Recent readings of one (post, quantity): (unix seconds, value, flags), oldest first.
type Window = VecDeque<(i64, f64, QaFlags)>;

/// The evaluator. Keeps a rolling buffer per (post, quantity) and a state per (rule, post).
#[derive(Debug)]
pub struct Engine {
    rules: Vec<Rule>,
    posts: HashMap<PostId, PostEntry>,
    default_cadence: Duration,
    max_age_s: i64,
    started: UnixSeconds,
    states: HashMap<(usize, PostId), KeyState>,
    windows: HashMap<(PostId, Quantity), Window>,
    last_seen: HashMap<PostId, i64>,
}

impl Engine {
    /// An engine for `rules` over `posts`, ignoring readings older than `max_age` at commit.
    pub fn new(
        rules: Vec<Rule>,
        posts: &[PostEntry],
        default_cadence: Duration,
        max_age: Duration,
        now: UnixSeconds,
    ) -> Self {
        Self {
            rules,
            posts: posts.iter().map(|p| (p.id.clone(), p.clone())).collect(),
            default_cadence,
            max_age_s: max_age.as_secs() as i64,
            started: now,
            states: HashMap::new(),
            windows: HashMap::new(),
            last_seen: HashMap::new(),
        }
    }

    /// The rules in force.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Replaces the registry snapshot (posts added or changed since start).
    pub fn set_posts(&mut self, posts: &[PostEntry]) {
        self.posts = posts.iter().map(|p| (p.id.clone(), p.clone())).collect();
    }

    fn rule_index(&self, rule: &str) -> Option<usize> {
        self.rules.iter().position(|r| r.id == rule)
    }

    /// An alert of (rule, post) is open in the store (after a restart): do not fire it again.
    pub fn restore_open(&mut self, rule: &str, post: &PostId) {
        if let Some(i) = self.rule_index(rule) {
            self.states
                .insert((i, post.clone()), KeyState::Firing { latched: false });
        }
    }

    /// Brings the firing states in line with the alerts open in the store: an alert a person
    /// resolved while its condition still holds stays quiet until the condition clears.
    pub fn sync_open(&mut self, open: &[(String, PostId)]) {
        for ((i, post), state) in self.states.iter_mut() {
            // Every state key indexes `self.rules`, which never changes after `new`.
            let (KeyState::Firing { latched }, Some(rule)) = (state, self.rules.get(*i)) else {
                continue;
            };
            if !*latched && !open.iter().any(|(r, p)| *r == rule.id && p == post) {
                *latched = true;
            }
        }
        for (rule, post) in open {
            if let Some(i) = self.rule_index(rule) {
                self.states
                    .entry((i, post.clone()))
                    .or_insert(KeyState::Firing { latched: false });
            }
        }
    }

    fn in_scope(rule: &Rule, post: &PostEntry) -> bool {
        rule.kinds.contains(&post.kind)
            && (rule.posts.is_empty() || rule.posts.iter().any(|p| p == post.id.as_str()))
            && (rule.rivers.is_empty()
                || post.river.as_ref().is_some_and(|r| rule.rivers.contains(r)))
    }

    fn cadence_s(&self, post: &PostEntry) -> i64 {
        post.cadence
            .unwrap_or(self.default_cadence)
            .as_secs()
            .max(1) as i64
    }

    /// Readings of `post` just committed, judged at `now`.
    pub fn on_readings(
        &mut self,
        post: &PostId,
        readings: &[Reading],
        now: UnixSeconds,
    ) -> Vec<Transition> {
        if !self.posts.contains_key(post) {
            return Vec::new();
        }
        // Silence is about arrival, not reading times: a post replaying an old backlog, or
        // sending a series that starts minutes ago, has just spoken.
        if !readings.is_empty() {
            self.last_seen.insert(post.clone(), now.0);
        }
        let fresh: Vec<&Reading> = readings
            .iter()
            .filter(|r| r.at.0 >= now.0 - self.max_age_s)
            .collect();
        if fresh.is_empty() {
            return self.judge_silence(post, now);
        }
        let mut touched: Vec<Quantity> = Vec::new();
        for r in &fresh {
            let buf = self.windows.entry((post.clone(), r.quantity)).or_default();
            // Keep the buffer in time order even when a late reading arrives.
            let pos = buf.partition_point(|(t, _, _)| *t <= r.at.0);
            if buf
                .get(pos.wrapping_sub(1))
                .is_some_and(|(t, _, _)| *t == r.at.0)
            {
                continue;
            }
            buf.insert(pos, (r.at.0, r.value, r.flags));
            while buf
                .front()
                .is_some_and(|(t, _, _)| *t < now.0 - MAX_WINDOW_S)
            {
                buf.pop_front();
            }
            if !touched.contains(&r.quantity) {
                touched.push(r.quantity);
            }
        }
        let mut out = Vec::new();
        for i in 0..self.rules.len() {
            let Some(rule) = self.rules.get(i) else {
                continue;
            };
            let applies = match (&rule.condition, rule.quantity) {
                (Condition::Silent { .. }, _) => true,
                (Condition::QaFlags { .. }, None) => true,
                (Condition::DailyMeanAbove { .. }, _) => false,
                (_, Some(q)) => touched.contains(&q),
                (_, None) => false,
            };
            if !applies {
                continue;
            }
            let verdict = self.judge(i, post, now);
            self.step(i, post, verdict, now, &mut out);
        }
        out
    }

    /// Re-judges only the silence rules of `post` (after it sent nothing fresh).
    fn judge_silence(&mut self, post: &PostId, now: UnixSeconds) -> Vec<Transition> {
        let mut out = Vec::new();
        for i in 0..self.rules.len() {
            if self
                .rules
                .get(i)
                .is_some_and(|r| matches!(r.condition, Condition::Silent { .. }))
            {
                let verdict = self.judge(i, post, now);
                self.step(i, post, verdict, now, &mut out);
            }
        }
        out
    }

    /// The passage of time: `for` durations completing, posts going silent.
    pub fn on_tick(&mut self, now: UnixSeconds) -> Vec<Transition> {
        let mut out = Vec::new();
        let posts: Vec<PostId> = self.posts.keys().cloned().collect();
        for i in 0..self.rules.len() {
            for post in &posts {
                let Some(rule) = self.rules.get(i) else {
                    continue;
                };
                let state = self
                    .states
                    .get(&(i, post.clone()))
                    .copied()
                    .unwrap_or(KeyState::Idle);
                let verdict = match rule.condition {
                    Condition::Silent { .. } => self.judge(i, post, now),
                    // Other conditions change only with data; a tick only completes `for`.
                    _ if matches!(state, KeyState::Pending { .. }) => self.judge(i, post, now),
                    _ => continue,
                };
                self.step(i, post, verdict, now, &mut out);
            }
        }
        out
    }

    /// Means of a completed local day per (post, quantity): rules on daily means fire (or clear)
    /// once a day from these.
    pub fn on_daily_means(
        &mut self,
        means: &[(PostId, Quantity, f64)],
        now: UnixSeconds,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        for i in 0..self.rules.len() {
            let Some(rule) = self.rules.get(i) else {
                continue;
            };
            let Condition::DailyMeanAbove { fire } = rule.condition else {
                continue;
            };
            let rule = rule.clone();
            for (post, q, mean) in means {
                let in_scope = Some(*q) == rule.quantity
                    && self
                        .posts
                        .get(post)
                        .is_some_and(|p| Self::in_scope(&rule, p));
                if !in_scope {
                    continue;
                }
                let verdict = if *mean > fire {
                    Verdict::Fire {
                        value: *mean,
                        threshold: fire,
                    }
                } else {
                    Verdict::Clear
                };
                self.step(i, post, verdict, now, &mut out);
            }
        }
        out
    }

    /// Advances the state of (rule `i`, `post`) by one verdict.
    fn step(
        &mut self,
        i: usize,
        post: &PostId,
        verdict: Verdict,
        now: UnixSeconds,
        out: &mut Vec<Transition>,
    ) {
        let Some(rule) = self.rules.get(i) else {
            return;
        };
        let key = (i, post.clone());
        let state = self.states.get(&key).copied().unwrap_or(KeyState::Idle);
        let for_s = rule.for_duration.as_secs() as i64;
        let next = match (state, verdict) {
            (KeyState::Idle, Verdict::Fire { value, threshold }) if for_s == 0 => {
                out.push(fire(rule, post, value, threshold, now));
                KeyState::Firing { latched: false }
            }
            (KeyState::Idle, Verdict::Fire { value, threshold }) => KeyState::Pending {
                since: now,
                value,
                threshold,
            },
            (KeyState::Pending { since, .. }, Verdict::Fire { value, threshold }) => {
                if now.0 - since.0 >= for_s {
                    out.push(fire(rule, post, value, threshold, now));
                    KeyState::Firing { latched: false }
                } else {
                    KeyState::Pending {
                        since,
                        value,
                        threshold,
                    }
                }
            }
            (
                KeyState::Pending {
                    since,
                    value,
                    threshold,
                },
                Verdict::Hold,
            ) => {
                if now.0 - since.0 >= for_s {
                    out.push(fire(rule, post, value, threshold, now));
                    KeyState::Firing { latched: false }
                } else {
                    state
                }
            }
            (KeyState::Pending { .. }, Verdict::Clear) => KeyState::Idle,
            (KeyState::Firing { latched }, Verdict::Clear) => {
                if !latched {
                    out.push(Transition::Clear {
                        rule: rule.id.clone(),
                        post: post.clone(),
                        at: now,
                    });
                }
                KeyState::Idle
            }
            (s, _) => s,
        };
        self.states.insert(key, next);
    }

    /// What rule `i`'s condition says for `post` now.
    fn judge(&self, i: usize, post_id: &PostId, now: UnixSeconds) -> Verdict {
        let (Some(rule), Some(post)) = (self.rules.get(i), self.posts.get(post_id)) else {
            return Verdict::Hold;
        };
        if !Self::in_scope(rule, post) {
            return Verdict::Hold;
        }
        let window = |q: Quantity| self.windows.get(&(post_id.clone(), q));
        match &rule.condition {
            Condition::MeanAbove {
                window: w,
                fire,
                clear,
            } => {
                let Some(buf) = rule.quantity.and_then(window) else {
                    return Verdict::Hold;
                };
                let from = now.0 - w.as_secs() as i64;
                let vals: Vec<f64> = buf
                    .iter()
                    .filter(|(t, _, f)| *t > from && f.is_valid_for_means())
                    .map(|(_, v, _)| *v)
                    .collect();
                if vals.is_empty() {
                    return Verdict::Hold;
                }
                let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                let covered =
                    vals.len() as f64 * self.cadence_s(post) as f64 / w.as_secs().max(1) as f64;
                if mean > *fire && covered >= MIN_WINDOW_COVERAGE {
                    Verdict::Fire {
                        value: mean,
                        threshold: *fire,
                    }
                } else if mean < *clear {
                    Verdict::Clear
                } else {
                    Verdict::Hold
                }
            }
            Condition::ValueBelow { fire, clear } => {
                match rule.quantity.and_then(window).and_then(|b| b.back()) {
                    Some((_, v, f)) if f.is_valid_for_means() && *v < *fire => Verdict::Fire {
                        value: *v,
                        threshold: *fire,
                    },
                    Some((_, v, _)) if *v > *clear => Verdict::Clear,
                    _ => Verdict::Hold,
                }
            }
            Condition::LevelNearCritical {
                margin_cm,
                hysteresis_cm,
            } => {
                let Some(critical) = &post.critical_level else {
                    return Verdict::Hold;
                };
                let Some((_, level_cm, flags)) =
                    rule.quantity.and_then(window).and_then(|b| b.back())
                else {
                    return Verdict::Hold;
                };
                let threshold = critical.level_cm_on(LocalDay::containing(now).date) - margin_cm;
                if flags.is_valid_for_means() && *level_cm >= threshold {
                    Verdict::Fire {
                        value: *level_cm,
                        threshold,
                    }
                } else if *level_cm < threshold - hysteresis_cm {
                    Verdict::Clear
                } else {
                    Verdict::Hold
                }
            }
            Condition::RiseAbove {
                window: w,
                fire,
                clear,
            } => {
                let Some(buf) = rule.quantity.and_then(window) else {
                    return Verdict::Hold;
                };
                let from = now.0 - w.as_secs() as i64;
                let mut in_window = buf
                    .iter()
                    .filter(|(t, _, f)| *t >= from && f.is_valid_for_means());
                let (Some(first), Some(last)) = (
                    in_window.next(),
                    buf.iter().rev().find(|(_, _, f)| f.is_valid_for_means()),
                ) else {
                    return Verdict::Hold;
                };
                let span_s = last.0 - first.0;
                // A rate over less than half the window would turn one noisy reading into a surge.
                if span_s * 2 < w.as_secs() as i64 {
                    return Verdict::Hold;
                }
                let rate_cm_h = (last.1 - first.1) / (span_s as f64 / 3600.0);
                if rate_cm_h > *fire {
                    Verdict::Fire {
                        value: rate_cm_h,
                        threshold: *fire,
                    }
                } else if rate_cm_h < *clear {
                    Verdict::Clear
                } else {
                    Verdict::Hold
                }
            }
            Condition::Silent { after } => {
                let last = self
                    .last_seen
                    .get(post_id)
                    .copied()
                    .unwrap_or(self.started.0);
                let silent_s = now.0 - last;
                if silent_s >= after.as_secs() as i64 {
                    Verdict::Fire {
                        value: silent_s as f64 / 60.0,
                        threshold: after.as_secs() as f64 / 60.0,
                    }
                } else {
                    Verdict::Clear
                }
            }
            Condition::QaFlags { flags } => {
                let wanted = flags.iter().fold(QaFlags::NONE, |acc, name| {
                    QaFlags::NAMES
                        .iter()
                        .find(|(_, n)| n == name)
                        .map_or(acc, |(f, _)| acc.union(*f))
                });
                let latest = |q: Quantity| window(q).and_then(|b| b.back()).map(|(_, _, f)| *f);
                let flagged: Vec<QaFlags> = match rule.quantity {
                    Some(q) => latest(q).into_iter().collect(),
                    None => protocol::Quantity::ALL
                        .into_iter()
                        .filter_map(latest)
                        .collect(),
                };
                if flagged.is_empty() {
                    Verdict::Hold
                } else if flagged.iter().any(|f| f.0 & wanted.0 != 0) {
                    Verdict::Fire {
                        value: 1.0,
                        threshold: 1.0,
                    }
                } else {
                    Verdict::Clear
                }
            }
            Condition::DailyMeanAbove { .. } => Verdict::Hold,
        }
    }
}

fn fire(rule: &Rule, post: &PostId, value: f64, threshold: f64, at: UnixSeconds) -> Transition {
    Transition::Fire(FireEvent {
        rule: rule.id.clone(),
        post: post.clone(),
        severity: rule.severity,
        quantity: rule.quantity,
        value,
        threshold,
        at,
    })
}

#[cfg(test)]
mod tests;
