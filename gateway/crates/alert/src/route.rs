//! On-call routing: who hears about an alert. Contacts sit at escalation levels (1 = first on
//! call) with optional shifts in Asia/Almaty time; a critical alert nobody acknowledges within
//! `escalate_after` goes to the next level, and so on. If nobody at a level is on shift, the
//! whole level is told: an alert is never dropped for want of a rota.

use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveTime, Utc, Weekday};
use protocol::UnixSeconds;
use serde::{Deserialize, Serialize};

use taza_domain::calendar::CITY_TZ;

/// On-call settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnCallConfig {
    /// How long a critical alert may stay unacknowledged before the next level is told.
    #[serde(with = "humantime_serde")]
    pub escalate_after: Duration,
    /// Everyone who may be paged.
    pub contacts: Vec<Contact>,
}

impl Default for OnCallConfig {
    fn default() -> Self {
        Self {
            escalate_after: Duration::from_secs(15 * 60),
            contacts: Vec::new(),
        }
    }
}

/// A person (or a team channel) that can be paged.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// Name, for the audit trail.
    pub name: String,
    /// Escalation level, 1 = first on call.
    #[serde(default = "first_level")]
    pub level: u8,
    /// Language of their messages: ru, kk or en.
    #[serde(default = "russian")]
    pub lang: String,
    /// E-mail address.
    #[serde(default)]
    pub email: Option<String>,
    /// Telegram chat id.
    #[serde(default)]
    pub telegram_chat: Option<String>,
    /// Name of a configured webhook channel.
    #[serde(default)]
    pub webhook: Option<String>,
    /// When they are on call (absent = always).
    #[serde(default)]
    pub shift: Option<Shift>,
}

fn first_level() -> u8 {
    1
}

fn russian() -> String {
    "ru".into()
}

/// A weekly shift in Asia/Almaty time; `from` > `to` spans midnight.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shift {
    /// Days the shift starts on (`mon` ... `sun`); empty = every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// Start, `HH:MM`.
    pub from: String,
    /// End, `HH:MM`.
    pub to: String,
}

impl Shift {
    /// Whether `at` falls in the shift.
    pub fn covers(&self, at: UnixSeconds) -> bool {
        let (Ok(from), Ok(to)) = (
            NaiveTime::parse_from_str(&self.from, "%H:%M"),
            NaiveTime::parse_from_str(&self.to, "%H:%M"),
        ) else {
            // An unparsable shift was refused by validation; treat it as always on call.
            return true;
        };
        let Some(utc) = DateTime::<Utc>::from_timestamp(at.0, 0) else {
            // Outside chrono's range (±262 000 years): no shift can be judged, so, as for an
            // unparsable shift, count the contact on call rather than page nobody.
            return true;
        };
        let local = utc.with_timezone(&CITY_TZ);
        let time = local.time();
        let day_ok = |wd: Weekday| {
            self.days.is_empty() || self.days.iter().any(|d| d.eq_ignore_ascii_case(short(wd)))
        };
        if from <= to {
            day_ok(local.weekday()) && time >= from && time < to
        } else if time >= from {
            day_ok(local.weekday())
        } else {
            // After midnight: the shift started the day before.
            time < to && day_ok(local.weekday().pred())
        }
    }
}

fn short(wd: Weekday) -> &'static str {
    match wd {
        Weekday::Mon => "mon",
        Weekday::Tue => "tue",
        Weekday::Wed => "wed",
        Weekday::Thu => "thu",
        Weekday::Fri => "fri",
        Weekday::Sat => "sat",
        Weekday::Sun => "sun",
    }
}

impl OnCallConfig {
    /// Problems with the rota, all of them.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.contacts {
            if !matches!(c.lang.as_str(), "ru" | "kk" | "en") {
                out.push(format!("contact {}: lang must be ru, kk or en", c.name));
            }
            if c.level == 0 {
                out.push(format!("contact {}: levels start at 1", c.name));
            }
            if c.email.is_none() && c.telegram_chat.is_none() && c.webhook.is_none() {
                out.push(format!(
                    "contact {}: has no email, telegram_chat or webhook",
                    c.name
                ));
            }
            if let Some(s) = &c.shift {
                let bad_time = [&s.from, &s.to]
                    .iter()
                    .any(|t| NaiveTime::parse_from_str(t, "%H:%M").is_err());
                let bad_day = s.days.iter().any(|d| {
                    !["mon", "tue", "wed", "thu", "fri", "sat", "sun"].contains(&d.as_str())
                });
                if bad_time || bad_day {
                    out.push(format!(
                        "contact {}: shift needs HH:MM times and days mon..sun",
                        c.name
                    ));
                }
            }
        }
        out
    }

    /// The highest level configured (0 without contacts).
    pub fn top_level(&self) -> u8 {
        self.contacts.iter().map(|c| c.level).max().unwrap_or(0)
    }

    /// Who at `level` is told at `at`: those on shift, or the whole level if nobody is.
    pub fn recipients(&self, level: u8, at: UnixSeconds) -> Vec<&Contact> {
        let level_contacts: Vec<&Contact> =
            self.contacts.iter().filter(|c| c.level == level).collect();
        let on_shift: Vec<&Contact> = level_contacts
            .iter()
            .copied()
            .filter(|c| c.shift.as_ref().is_none_or(|s| s.covers(at)))
            .collect();
        if on_shift.is_empty() {
            level_contacts
        } else {
            on_shift
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(name: &str, level: u8, shift: Option<Shift>) -> Contact {
        Contact {
            name: name.into(),
            level,
            lang: "ru".into(),
            email: Some(format!("{name}@akimat.kz")),
            telegram_chat: None,
            webhook: None,
            shift,
        }
    }

    fn local(s: &str) -> UnixSeconds {
        taza_domain::calendar::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn day_and_night_shifts_in_almaty_time_pick_who_is_on_call() {
        let day = Shift {
            days: vec![],
            from: "08:00".into(),
            to: "20:00".into(),
        };
        let night = Shift {
            days: vec!["fri".into()],
            from: "20:00".into(),
            to: "08:00".into(),
        };
        let cfg = OnCallConfig {
            escalate_after: Duration::from_secs(900),
            contacts: vec![
                contact("aigerim", 1, Some(day)),
                contact("daniyar", 1, Some(night)),
                contact("chief", 2, None),
            ],
        };
        let names = |at| {
            cfg.recipients(1, local(at))
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        };
        // 2026-01-02 is a Friday. 09:00 local (UTC+5) -> Aigerim.
        assert_eq!(names("2026-01-02T09:00:00+05:00"), ["aigerim"]);
        // Friday 23:00 and Saturday 03:00 -> Daniyar's Friday-night shift.
        assert_eq!(names("2026-01-02T23:00:00+05:00"), ["daniyar"]);
        assert_eq!(names("2026-01-03T03:00:00+05:00"), ["daniyar"]);
        // Saturday 23:00: nobody's shift, so the whole level 1 is told.
        assert_eq!(names("2026-01-03T23:00:00+05:00"), ["aigerim", "daniyar"]);
        assert_eq!(cfg.top_level(), 2);
    }

    #[test]
    fn a_time_outside_the_calendar_counts_a_shift_as_on_call_not_as_1970() {
        let day = Shift {
            days: vec![],
            from: "08:00".into(),
            to: "20:00".into(),
        };
        // 1970-01-01T00:00Z is 05:00 in Almaty, outside the shift: the old fallback said no.
        assert!(!day.covers(UnixSeconds(0)));
        assert!(day.covers(UnixSeconds(i64::MAX)));
    }
}
