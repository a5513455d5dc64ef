//! Commissioning: the checks a technician runs before climbing down the ladder. [`evaluate`] is
//! pure (a snapshot of what the store holds about the post -> a [`Report`]); [`run`] polls the
//! store until every check passes or the wait is over, and audits the result.
//!
//! Checks: a live status with a firmware version; the config the registry wants is the one the
//! post runs; its clock within [`MAX_CLOCK_OFFSET_MS`]; signal strength and supply voltage
//! reported; and every installed sensor has reported since commissioning started, with a value
//! inside its plausible range (gateway/crates/registry/commissioning/plausible.toml) and no invalidating flag.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use protocol::{PostId, QaFlags, Quantity, UnixSeconds};
use serde::{Deserialize, Serialize};

pub mod wording;

use taza_domain::calendar::rfc3339_local as rfc3339;
use taza_domain::post::PostEntry;
pub use taza_store::status::{LatestReading, StatusSnapshot};
use taza_store::{Db, Store, StoreError};
use wording::Finding;
pub use wording::Lang;

/// Largest clock offset a post may have, milliseconds.
pub const MAX_CLOCK_OFFSET_MS: i64 = 2_000;
/// The plausible ranges shipped with the gateway.
const PLAUSIBLE_TOML: &str = include_str!("../../commissioning/plausible.toml");

/// One quantity's plausible range and where it comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlausibleRange {
    /// Lowest plausible value, in the quantity's unit.
    pub min: f64,
    /// Highest plausible value.
    pub max: f64,
    /// Why.
    pub source: String,
}

/// The plausible ranges by quantity.
#[derive(Debug, Clone)]
pub struct PlausibleRanges(HashMap<Quantity, PlausibleRange>);

impl PlausibleRanges {
    /// The shipped table.
    pub fn shipped() -> Result<Self, String> {
        Self::parse(PLAUSIBLE_TOML)
    }

    fn parse(text: &str) -> Result<Self, String> {
        let raw: BTreeMap<String, PlausibleRange> =
            toml::from_str(text).map_err(|e| format!("plausible.toml: {e}"))?;
        let mut out = HashMap::new();
        for (name, range) in raw {
            let q = Quantity::parse(&name)
                .ok_or_else(|| format!("plausible.toml: unknown quantity {name:?}"))?;
            if range.min.partial_cmp(&range.max) != Some(std::cmp::Ordering::Less) {
                return Err(format!("plausible.toml: {name}: min must be below max"));
            }
            out.insert(q, range);
        }
        Ok(Self(out))
    }

    /// The range of `q`, if the table has one.
    pub fn get(&self, q: Quantity) -> Option<&PlausibleRange> {
        self.0.get(&q)
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// What was checked: `status`, `config`, `clock`, `signal`, `supply` or a quantity name.
    pub name: String,
    /// Passed.
    pub passed: bool,
    /// What was seen, or what is wrong and what to look at.
    pub detail: String,
}

/// The commissioning report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The post.
    pub post: PostId,
    /// Its name.
    pub name: String,
    /// Every check passed.
    pub passed: bool,
    /// When commissioning started (RFC 3339, Almaty time).
    pub started_at: String,
    /// When the report was made.
    pub finished_at: String,
    /// The checks, in a fixed order.
    pub checks: Vec<Check>,
    /// The language of the details.
    #[serde(skip)]
    pub lang: Lang,
}

impl Report {
    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }

    /// Plain text for a phone's screen: verdict first, one line per check.
    pub fn to_text(&self) -> String {
        // PASS / FAIL stay untranslated: short, unmistakable, and what scripts look for.
        let mut s = format!(
            "{} {} ({})\n{}\n",
            if self.passed { "PASS" } else { "FAIL" },
            self.post,
            self.name,
            wording::span(self.lang, &self.started_at, &self.finished_at)
        );
        for c in &self.checks {
            let mark = if c.passed { "ok  " } else { "FAIL" };
            s.push_str(&format!("{mark} {:<18} {}\n", c.name, c.detail));
        }
        s
    }
}

/// Everything [`evaluate`] looks at.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The registry entry.
    pub entry: PostEntry,
    /// The config hash the registry wants the post to run.
    pub desired_config_hash: u32,
    /// The post's status, if any arrived.
    pub status: Option<StatusSnapshot>,
    /// Newest reading per quantity since the start.
    pub readings: HashMap<Quantity, LatestReading>,
}

/// Judges `snap` at `now`, commissioning having started at `started`. `waited_enough`: the wait
/// is over, so missing readings are failures, not "still waiting".
pub fn evaluate(
    snap: &Snapshot,
    ranges: &PlausibleRanges,
    cadence: Duration,
    started: UnixSeconds,
    now: UnixSeconds,
    lang: Lang,
) -> Report {
    let mut checks = Vec::new();
    let mut check = |name: &str, passed: bool, finding: Finding| {
        checks.push(Check {
            name: name.to_string(),
            passed,
            detail: finding.say(lang),
        })
    };
    match &snap.status {
        Some(s) if s.online && !s.firmware.is_empty() => check(
            "status",
            true,
            Finding::Online {
                firmware: s.firmware.clone(),
                at: rfc3339(s.received_at),
            },
        ),
        Some(s) if s.online => check("status", false, Finding::NoFirmware),
        Some(_) => check("status", false, Finding::Offline),
        None => check("status", false, Finding::NoStatus),
    }
    let status = snap.status.as_ref().filter(|s| s.online);
    match status.and_then(|s| s.config_hash) {
        Some(h) if h == snap.desired_config_hash => check(
            "config",
            true,
            Finding::ConfigCurrent {
                hash: format!("{h:08x}"),
            },
        ),
        Some(h) => check(
            "config",
            false,
            Finding::ConfigOutdated {
                reported: format!("{h:08x}"),
                desired: format!("{:08x}", snap.desired_config_hash),
            },
        ),
        None => check("config", false, Finding::NoConfigHash),
    }
    match status.and_then(|s| s.clock_offset_ms) {
        Some(ms) if ms.abs() < MAX_CLOCK_OFFSET_MS => check(
            "clock",
            true,
            Finding::ClockOk {
                offset_s: ms as f64 / 1000.0,
            },
        ),
        Some(ms) => check(
            "clock",
            false,
            Finding::ClockOff {
                offset_s: ms as f64 / 1000.0,
            },
        ),
        None => check("clock", false, Finding::NoClock),
    }
    match status.and_then(|s| s.rssi_dbm) {
        Some(dbm) => check("signal", true, Finding::Signal { dbm }),
        None => check("signal", false, Finding::NoSignal),
    }
    match status.and_then(|s| s.supply_mv) {
        Some(mv) => {
            let volts = f64::from(mv) / 1000.0;
            match ranges.get(Quantity::SupplyVoltage) {
                Some(r) if volts < r.min || volts > r.max => check(
                    "supply",
                    false,
                    Finding::SupplyOutOfRange {
                        volts,
                        min: r.min,
                        max: r.max,
                        source: r.source.clone(),
                    },
                ),
                _ => check("supply", true, Finding::Supply { volts }),
            }
        }
        None => check("supply", false, Finding::NoSupply),
    }
    let waited_s = now.0.saturating_sub(started.0);
    for q in snap.entry.quantities() {
        let unit = q.unit().as_str();
        let name = q.as_str();
        match snap.readings.get(&q) {
            None => check(
                name,
                false,
                Finding::NoReading {
                    waited_s,
                    cadence_s: cadence.as_secs(),
                },
            ),
            Some(r) => {
                let value = num(r.value);
                match ranges.get(q) {
                    Some(range) if r.value < range.min || r.value > range.max => check(
                        name,
                        false,
                        Finding::Implausible {
                            value,
                            unit,
                            min: range.min,
                            max: range.max,
                            source: range.source.clone(),
                        },
                    ),
                    _ if QaFlags(r.flags.0 & QaFlags::INVALIDATING.0) == QaFlags::WARM_UP => {
                        check(name, false, Finding::WarmingUp { value, unit })
                    }
                    _ if !r.flags.is_valid_for_means() => check(
                        name,
                        false,
                        Finding::Flagged {
                            value,
                            unit,
                            flags: r.flags.names().collect::<Vec<_>>().join(", "),
                        },
                    ),
                    _ => check(
                        name,
                        true,
                        Finding::Reading {
                            value,
                            unit,
                            at: rfc3339(r.at),
                            count: r.count,
                        },
                    ),
                }
            }
        }
    }
    let passed = checks.iter().all(|c| c.passed);
    Report {
        post: snap.entry.id.clone(),
        name: snap.entry.name.clone(),
        passed,
        started_at: rfc3339(started),
        finished_at: rfc3339(now),
        checks,
        lang,
    }
}

/// A value as a person reads it: at most two decimals, no trailing zeros.
fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// Reads the snapshot of `entry`'s post from the store.
pub fn snapshot(
    db: &Db<'_>,
    entry: &PostEntry,
    desired_config_hash: u32,
    started: UnixSeconds,
) -> Result<Snapshot, StoreError> {
    Ok(Snapshot {
        entry: entry.clone(),
        desired_config_hash,
        status: taza_store::status::post_status(db, &entry.id)?,
        readings: taza_store::status::latest_readings_since(db, &entry.id, started)?,
    })
}

/// How long [`run`] waits by default: two reporting windows and a reconnect's worth.
pub fn default_wait(cadence: Duration) -> Duration {
    cadence * 2 + Duration::from_secs(30)
}

/// Polls the store until every check passes or `wait` is over; returns the last report.
pub async fn run(
    store: Store,
    entry: PostEntry,
    desired_config_hash: u32,
    cadence: Duration,
    wait: Duration,
    ranges: Arc<PlausibleRanges>,
    lang: Lang,
) -> Result<Report, StoreError> {
    let started = taza_domain::calendar::now();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let e = entry.clone();
        let snap = store
            .read(move |db| snapshot(db, &e, desired_config_hash, started))
            .await?;
        let now = taza_domain::calendar::now();
        let report = evaluate(&snap, &ranges, cadence, started, now, lang);
        if report.passed || tokio::time::Instant::now() >= deadline {
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use taza_domain::post::PostKind;

    fn snap() -> Snapshot {
        let mut entry = PostEntry::new(
            PostId::parse("alm-air-300").unwrap(),
            PostKind::Air,
            "Тест",
            43.2,
            76.9,
        );
        entry.sensors = vec![Quantity::Pm2_5, Quantity::No2];
        let reading = |value| LatestReading {
            at: UnixSeconds(1_800_000_060),
            value,
            flags: QaFlags::default(),
            count: 2,
        };
        Snapshot {
            entry,
            desired_config_hash: 0xdead_beef,
            status: Some(StatusSnapshot {
                online: true,
                firmware: "0.3.0".into(),
                config_hash: Some(0xdead_beef),
                received_at: UnixSeconds(1_800_000_001),
                clock_offset_ms: Some(-350),
                rssi_dbm: Some(-71),
                supply_mv: Some(12_040),
            }),
            readings: HashMap::from([
                (Quantity::Pm2_5, reading(14.0)),
                (Quantity::No2, reading(38.5)),
            ]),
        }
    }

    fn judge(s: &Snapshot) -> Report {
        evaluate(
            s,
            &PlausibleRanges::shipped().unwrap(),
            Duration::from_secs(60),
            UnixSeconds(1_800_000_000),
            UnixSeconds(1_800_000_130),
            Lang::En,
        )
    }

    fn failed(r: &Report) -> Vec<&str> {
        r.failures().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn a_healthy_post_passes_every_check() {
        let r = judge(&snap());
        assert!(r.passed, "{}", r.to_text());
        let names: Vec<&str> = r.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["status", "config", "clock", "signal", "supply", "pm2_5", "no2"]
        );
        assert!(r.to_text().starts_with("PASS alm-air-300"));
    }

    #[test]
    fn each_fault_fails_its_own_check_and_says_why() {
        let mut s = snap();
        s.readings.remove(&Quantity::Pm2_5);
        let r = judge(&s);
        assert_eq!(failed(&r), ["pm2_5"]);
        assert!(r.checks[5]
            .detail
            .contains("no reading in 130 s (cadence 60 s)"));

        let mut s = snap();
        s.readings.get_mut(&Quantity::No2).unwrap().value = 5_000.0;
        let r = judge(&s);
        assert_eq!(failed(&r), ["no2"]);
        assert!(
            r.checks[6]
                .detail
                .contains("outside the plausible -50–2000"),
            "{}",
            r.checks[6].detail
        );

        let mut s = snap();
        s.readings.get_mut(&Quantity::Pm2_5).unwrap().flags = QaFlags::INVALIDATING;
        assert_eq!(failed(&judge(&s)), ["pm2_5"]);

        let mut s = snap();
        s.status.as_mut().unwrap().clock_offset_ms = Some(2_500);
        let r = judge(&s);
        assert_eq!(failed(&r), ["clock"]);
        assert!(r.checks[2].detail.contains("+2.50 s"));

        let mut s = snap();
        let st = s.status.as_mut().unwrap();
        st.rssi_dbm = None;
        st.supply_mv = Some(9_800);
        st.config_hash = Some(1);
        assert_eq!(failed(&judge(&s)), ["config", "signal", "supply"]);

        let mut s = snap();
        s.status.as_mut().unwrap().online = false;
        // Offline: nothing in the status can be trusted as current.
        assert_eq!(
            failed(&judge(&s)),
            ["status", "config", "clock", "signal", "supply"]
        );
        s.status = None;
        assert!(judge(&s).checks[0].detail.contains("no status message"));
    }

    #[test]
    fn the_shipped_ranges_cover_every_environmental_quantity() {
        let ranges = PlausibleRanges::shipped().unwrap();
        for q in Quantity::ALL {
            assert!(ranges.get(q).is_some(), "{}", q.as_str());
        }
        assert!(PlausibleRanges::parse("[pm2_5]\nmin = 5.0\nmax = 1.0\nsource = \"x\"").is_err());
        assert!(PlausibleRanges::parse("[smog]\nmin = 0.0\nmax = 1.0\nsource = \"x\"").is_err());
    }
}
