//! Alert rules as data: the shipped defaults (`gateway/crates/alert/rules.toml`, embedded) or the
//! department's file, parsed and checked as a whole so a typo never silently disables paging.
//!
//! A threshold is either a number in the quantity's unit or a norm by name ([`Threshold`]),
//! resolved once at start-up against the norms `[score]` configures (`taza_score::Norms`,
//! active limit set included), so scores and alerts always judge against the same limits.

use std::path::Path;
use std::time::Duration;

use protocol::Quantity;
use serde::{Deserialize, Serialize};

use taza_domain::post::PostKind;
use taza_score::Norms;

/// The shipped rules.
pub const DEFAULT_RULES: &str = include_str!("../rules.toml");

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Someone should look today.
    Warning,
    /// Someone must act now; escalates when nobody acknowledges.
    Critical,
}

impl Severity {
    /// `warning` / `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// The norms a threshold may name. Air norms are the active limit set's, in µg/m³; water norms
/// are `water.toml`'s, in the quantity's unit.
///
/// - `one_time`: ПДК м.р. of the quantity (`one_time_mg_m3`).
/// - `daily`: ПДК с.с. of the quantity (`daily_mg_m3`).
/// - `high_pollution`: ВЗ. Air: ПДК м.р. × `episodes.high_multiple`; dissolved oxygen:
///   `dissolved_oxygen.high_pollution_max_mg_l`.
/// - `extreme_pollution`: ЭВЗ. Air: ПДК м.р. ×
///   `episodes.kazhydromet.extreme_above_multiple` (the one-threshold rule; the RF rule depends
///   on durations); dissolved oxygen:
///   `dissolved_oxygen.extreme_pollution_max_mg_l`.
pub const NORM_NAMES: [&str; 4] = ["one_time", "daily", "high_pollution", "extreme_pollution"];

/// A norm named by a threshold, optionally scaled: `{ norm = "one_time", factor = 0.875 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormRef {
    /// One of [`NORM_NAMES`].
    pub norm: String,
    /// Whose norm (absent: the rule's quantity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<Quantity>,
    /// Multiple of the norm (absent: 1); a clear threshold is typically a fraction of the fire one.
    #[serde(default = "unit_factor")]
    pub factor: f64,
}

fn unit_factor() -> f64 {
    1.0
}

/// A threshold as a rules file writes it: `fire = 30.0` or `fire = { norm = "one_time" }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Threshold {
    /// A number in the quantity's unit.
    Value(f64),
    /// A norm, resolved at start-up.
    Norm(NormRef),
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Threshold;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number or a norm reference like { norm = \"one_time\" }")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Threshold, E> {
                Ok(Threshold::Value(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Threshold, E> {
                // Thresholds are far below 2^53: the conversion is exact.
                Ok(Threshold::Value(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Threshold, E> {
                Ok(Threshold::Value(v as f64))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Threshold, A::Error> {
                // Through NormRef itself, so a misspelt key is named in the error.
                NormRef::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Threshold::Norm)
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Threshold {
    /// The value in the unit of `rule_quantity`'s (or the reference's own) quantity.
    pub fn resolve(&self, norms: &Norms, rule_quantity: Option<Quantity>) -> Result<f64, String> {
        match self {
            Self::Value(v) => Ok(*v),
            Self::Norm(r) => {
                if !(r.factor.is_finite() && r.factor > 0.0) {
                    return Err(format!("norm {:?}: factor must be positive", r.norm));
                }
                let q = r
                    .quantity
                    .or(rule_quantity)
                    .ok_or_else(|| format!("norm {:?} needs a quantity", r.norm))?;
                Ok(norm_value(norms, &r.norm, q)? * r.factor)
            }
        }
    }
}

/// The value of norm `name` for `q` (see [`NORM_NAMES`]).
fn norm_value(norms: &Norms, name: &str, q: Quantity) -> Result<f64, String> {
    let one_time = || {
        norms
            .limit(q.as_str())
            .and_then(|l| l.one_time_ug_m3.as_ref())
            .map(|s| s.value)
    };
    let oxygen = &norms.water.dissolved_oxygen;
    let value = match name {
        "one_time" => one_time(),
        "daily" => norms
            .limit(q.as_str())
            .and_then(|l| l.daily_ug_m3.as_ref())
            .map(|s| s.value),
        "high_pollution" if q == Quantity::DissolvedOxygen => {
            Some(oxygen.high_pollution_max_mg_l.value)
        }
        "high_pollution" => one_time().map(|l| l * norms.episodes.high_multiple.value),
        "extreme_pollution" if q == Quantity::DissolvedOxygen => {
            Some(oxygen.extreme_pollution_max_mg_l.value)
        }
        "extreme_pollution" => {
            one_time().map(|l| l * norms.episodes.kazhydromet.extreme_above_multiple)
        }
        _ => {
            return Err(format!(
                "unknown norm {name:?} (known: {})",
                NORM_NAMES.join(", ")
            ))
        }
    };
    value.ok_or_else(|| {
        format!(
            "norm {name:?} has no value for {} in limit set {}",
            q.as_str(),
            norms.active().name
        )
    })
}

/// What makes a rule fire and clear. Fire and clear are separate thresholds (hysteresis).
/// `T` is [`Threshold`] as written in a rules file and `f64` once resolved against the norms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition<T = f64> {
    /// Rolling mean over `window` above `fire`; clears below `clear`.
    MeanAbove {
        /// Averaging window.
        #[serde(with = "humantime_serde")]
        window: Duration,
        /// Fire threshold, in the quantity's unit.
        fire: T,
        /// Clear threshold (≤ fire).
        clear: T,
    },
    /// A completed local day's mean above `fire`, at most once a day.
    DailyMeanAbove {
        /// Threshold, in the quantity's unit.
        fire: T,
    },
    /// Latest value below `fire`; clears above `clear`.
    ValueBelow {
        /// Fire threshold.
        fire: T,
        /// Clear threshold (≥ fire).
        clear: T,
    },
    /// Water level at or above the gauge's critical level minus `margin_cm`.
    LevelNearCritical {
        /// How far below critical the rule fires, cm.
        margin_cm: f64,
        /// How much further the level must fall to clear, cm.
        hysteresis_cm: f64,
    },
    /// Rise over `window` faster than `fire` cm/h; clears below `clear` cm/h.
    RiseAbove {
        /// Window the rise is measured over.
        #[serde(with = "humantime_serde")]
        window: Duration,
        /// Fire threshold, cm/h.
        fire: T,
        /// Clear threshold, cm/h.
        clear: T,
    },
    /// No reading from the post for `after`.
    Silent {
        /// Silence that fires.
        #[serde(with = "humantime_serde")]
        after: Duration,
    },
    /// A reading carrying any of these QA flags; clears on a clean reading.
    QaFlags {
        /// Flag names (`protocol::QaFlags::NAMES`).
        flags: Vec<String>,
    },
}

/// Messages per language.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Messages {
    /// Russian.
    pub ru: String,
    /// Kazakh.
    pub kk: String,
    /// English.
    pub en: String,
}

impl Messages {
    /// The template for `lang` (`ru`, `kk`, `en`; Russian otherwise).
    pub fn get(&self, lang: &str) -> &str {
        match lang {
            "kk" => &self.kk,
            "en" => &self.en,
            _ => &self.ru,
        }
    }
}

/// One rule: `Rule` (thresholds resolved, what the engine runs and the API shows) or
/// [`RuleSpec`] (as written).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule<T = f64> {
    /// Stable id (dedupe key with the post).
    pub id: String,
    /// Urgency.
    pub severity: Severity,
    /// Quantity watched (not needed for `silent`; for `qa_flags` absent = any quantity).
    #[serde(default)]
    pub quantity: Option<Quantity>,
    /// Post kinds in scope.
    pub kinds: Vec<PostKind>,
    /// Only these posts (empty = all of the kinds).
    #[serde(default)]
    pub posts: Vec<String>,
    /// Only posts on these rivers (empty = all).
    #[serde(default)]
    pub rivers: Vec<String>,
    /// Fire and clear.
    pub condition: Condition<T>,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for", with = "humantime_serde", default)]
    pub for_duration: Duration,
    /// Where the threshold comes from.
    pub source: String,
    /// Message templates.
    pub message: Messages,
}

/// A rule as a rules file writes it (thresholds may name norms).
pub type RuleSpec = Rule<Threshold>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    rules: Vec<RuleSpec>,
}

/// Why rules could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Unreadable file.
    #[error("cannot read alert rules {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML for rules.
    #[error("alert rules {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Rules that parse but make no sense, all of them.
    #[error("alert rules {path}:\n  - {}", .problems.join("\n  - "))]
    Invalid {
        /// The file.
        path: String,
        /// Every problem.
        problems: Vec<String>,
    },
}

/// The shipped rules, or the department's file instead, with thresholds resolved against
/// `norms`.
pub fn load(file: Option<&Path>, norms: &Norms) -> Result<Vec<Rule>, RulesError> {
    let (path, text) = match file {
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).map_err(|source| RulesError::Read {
                path: p.display().to_string(),
                source,
            })?,
        ),
        None => ("(shipped rules)".to_string(), DEFAULT_RULES.to_string()),
    };
    parse(&path, &text, norms)
}

/// Parses rules text, resolves its thresholds against `norms` and checks the result. Every
/// problem is reported at once, each naming its rule.
pub fn parse(path: &str, text: &str, norms: &Norms) -> Result<Vec<Rule>, RulesError> {
    let file: RulesFile = toml::from_str(text).map_err(|e| RulesError::Parse {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    let mut problems = Vec::new();
    let mut ids = std::collections::HashSet::new();
    let mut rules = Vec::with_capacity(file.rules.len());
    for r in &file.rules {
        if !ids.insert(r.id.as_str()) {
            problems.push(format!("rule {} is listed twice", r.id));
        }
        let needs_quantity = !matches!(
            r.condition,
            Condition::Silent { .. } | Condition::QaFlags { .. }
        );
        if needs_quantity && r.quantity.is_none() {
            problems.push(format!("rule {}: this condition needs a quantity", r.id));
        }
        if r.kinds.is_empty() {
            problems.push(format!("rule {}: kinds must name air and/or river", r.id));
        }
        match resolve_condition(&r.condition, norms, r.quantity) {
            Ok(condition) => {
                problems.extend(
                    condition_problems(&condition)
                        .into_iter()
                        .map(|p| format!("rule {}: {p}", r.id)),
                );
                rules.push(Rule {
                    id: r.id.clone(),
                    severity: r.severity,
                    quantity: r.quantity,
                    kinds: r.kinds.clone(),
                    posts: r.posts.clone(),
                    rivers: r.rivers.clone(),
                    condition,
                    for_duration: r.for_duration,
                    source: r.source.clone(),
                    message: r.message.clone(),
                });
            }
            Err(unresolved) => problems.extend(
                unresolved
                    .into_iter()
                    .map(|p| format!("rule {}: {p}", r.id)),
            ),
        }
    }
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(RulesError::Invalid {
            path: path.to_string(),
            problems,
        })
    }
}

/// The condition with its thresholds resolved, or every threshold that cannot be.
fn resolve_condition(
    c: &Condition<Threshold>,
    norms: &Norms,
    q: Option<Quantity>,
) -> Result<Condition, Vec<String>> {
    let mut problems = Vec::new();
    let mut value = |name: &str, t: &Threshold| {
        t.resolve(norms, q).unwrap_or_else(|e| {
            problems.push(format!("{name}: {e}"));
            f64::NAN
        })
    };
    let resolved = match c {
        Condition::MeanAbove {
            window,
            fire,
            clear,
        } => Condition::MeanAbove {
            window: *window,
            fire: value("fire", fire),
            clear: value("clear", clear),
        },
        Condition::DailyMeanAbove { fire } => Condition::DailyMeanAbove {
            fire: value("fire", fire),
        },
        Condition::ValueBelow { fire, clear } => Condition::ValueBelow {
            fire: value("fire", fire),
            clear: value("clear", clear),
        },
        Condition::LevelNearCritical {
            margin_cm,
            hysteresis_cm,
        } => Condition::LevelNearCritical {
            margin_cm: *margin_cm,
            hysteresis_cm: *hysteresis_cm,
        },
        Condition::RiseAbove {
            window,
            fire,
            clear,
        } => Condition::RiseAbove {
            window: *window,
            fire: value("fire", fire),
            clear: value("clear", clear),
        },
        Condition::Silent { after } => Condition::Silent { after: *after },
        Condition::QaFlags { flags } => Condition::QaFlags {
            flags: flags.clone(),
        },
    };
    if problems.is_empty() {
        Ok(resolved)
    } else {
        Err(problems)
    }
}

/// What is wrong with a resolved condition (hysteresis the wrong way round, empty windows,
/// unknown QA flags).
fn condition_problems(c: &Condition) -> Vec<String> {
    let mut problems = Vec::new();
    match c {
        Condition::MeanAbove {
            fire,
            clear,
            window,
        }
        | Condition::RiseAbove {
            fire,
            clear,
            window,
        } if clear > fire || window.is_zero() => {
            problems.push(format!(
                "clear ({clear}) must not exceed fire ({fire}) and the window must be positive"
            ));
        }
        Condition::ValueBelow { fire, clear } if clear < fire => {
            problems.push(format!("clear ({clear}) must not be below fire ({fire})"));
        }
        Condition::QaFlags { flags } => {
            for f in flags {
                if !protocol::QaFlags::NAMES.iter().any(|(_, n)| n == f) {
                    problems.push(format!("unknown QA flag {f:?}"));
                }
            }
        }
        _ => {}
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norms() -> Norms {
        Norms::embedded().unwrap()
    }

    fn norms_with(limit_set: Option<&str>) -> Norms {
        Norms::load_configured(&taza_score::config::ScoreConfig {
            limit_set: limit_set.map(Into::into),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn shipped_rules_parse_and_cover_the_issue_defaults() {
        let rules = load(None, &norms()).unwrap();
        let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
        for want in [
            "pm2_5_one_time_limit",
            "no2_one_time_limit",
            "pm2_5_high_pollution",
            "pm2_5_extreme_pollution",
            "pm2_5_daily_limit",
            "river_level_near_critical",
            "river_level_critical",
            "river_fast_rise",
            "dissolved_oxygen_low",
            "dissolved_oxygen_extreme",
            "post_silent",
            "sensor_fault",
        ] {
            assert!(ids.contains(&want), "missing {want}");
        }
        let pm = rules
            .iter()
            .find(|r| r.id == "pm2_5_one_time_limit")
            .unwrap();
        assert_eq!(
            pm.condition,
            Condition::MeanAbove {
                window: Duration::from_secs(1200),
                fire: 160.0,
                clear: 140.0
            }
        );
    }

    #[test]
    fn inverted_hysteresis_and_unknown_flags_are_refused_together() {
        let text = r#"
            [[rules]]
            id = "a"
            severity = "warning"
            quantity = "pm2_5"
            kinds = ["air"]
            condition = { type = "mean_above", window = "20m", fire = 100.0, clear = 120.0 }
            source = "t"
            message = { ru = "x", kk = "x", en = "x" }
            [[rules]]
            id = "b"
            severity = "warning"
            kinds = ["air"]
            condition = { type = "qa_flags", flags = ["smoke"] }
            source = "t"
            message = { ru = "x", kk = "x", en = "x" }
        "#;
        let RulesError::Invalid { problems, .. } = parse("t.toml", text, &norms()).unwrap_err()
        else {
            panic!("expected Invalid")
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    fn resolved(rules: &[Rule], id: &str) -> Condition {
        rules.iter().find(|r| r.id == id).unwrap().condition.clone()
    }

    #[test]
    fn shipped_thresholds_resolve_to_the_norms_they_name() {
        let rules = load(None, &norms()).unwrap();
        // ПДК м.р. 0.16 / 0.2 mg/m³, ПДК с.с. 0.035 mg/m³; ВЗ 10×, ЭВЗ 20× ПДК м.р.; DO 3 / 2 mg/L.
        let cases = [
            ("no2_one_time_limit", 200.0, Some(180.0)),
            ("pm2_5_high_pollution", 1600.0, Some(1400.0)),
            ("pm2_5_extreme_pollution", 3200.0, Some(3000.0)),
            ("no2_high_pollution", 2000.0, Some(1800.0)),
            ("pm2_5_daily_limit", 35.0, None),
            ("dissolved_oxygen_low", 3.0, Some(3.5)),
            ("dissolved_oxygen_extreme", 2.0, Some(2.5)),
            ("river_fast_rise", 30.0, Some(10.0)),
        ];
        for (id, want_fire, want_clear) in cases {
            let (fire, clear) = match resolved(&rules, id) {
                Condition::MeanAbove { fire, clear, .. }
                | Condition::ValueBelow { fire, clear }
                | Condition::RiseAbove { fire, clear, .. } => (fire, Some(clear)),
                Condition::DailyMeanAbove { fire } => (fire, None),
                other => panic!("{id}: {other:?}"),
            };
            assert!((fire - want_fire).abs() < 1e-9, "{id}: fire {fire}");
            match (clear, want_clear) {
                (Some(c), Some(w)) => assert!((c - w).abs() < 1e-9, "{id}: clear {c}"),
                (None, None) => {}
                other => panic!("{id}: {other:?}"),
            }
        }
    }

    const NO2_DAILY: &str = r#"
        [[rules]]
        id = "no2_daily_limit"
        severity = "warning"
        quantity = "no2"
        kinds = ["air"]
        condition = { type = "daily_mean_above", fire = { norm = "daily" } }
        source = "ПДК с.с. NO2 of the active limit set"
        message = { ru = "{threshold}", kk = "{threshold}", en = "{threshold}" }
    "#;

    #[test]
    fn the_same_rules_under_two_limit_sets_fire_at_each_sets_limit() {
        let fire = |set: Option<&str>| match &parse("t.toml", NO2_DAILY, &norms_with(set)).unwrap()
            [0]
        .condition
        {
            Condition::DailyMeanAbove { fire } => *fire,
            other => panic!("{other:?}"),
        };
        // ПДК с.с. NO2: 0.04 mg/m³ in kz_dsm70, 0.1 mg/m³ in kz_dsm70_no2_daily_0_1.
        assert!((fire(None) - 40.0).abs() < 1e-9);
        assert!((fire(Some("kz_dsm70_no2_daily_0_1")) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn a_clear_threshold_can_be_a_fraction_of_a_norm_or_a_number() {
        let text = r#"
            [[rules]]
            id = "a"
            severity = "warning"
            quantity = "pm2_5"
            kinds = ["air"]
            condition.type = "mean_above"
            condition.window = "20m"
            condition.fire = { norm = "one_time" }
            condition.clear = { norm = "one_time", factor = 0.5 }
            source = "t"
            message = { ru = "x", kk = "x", en = "x" }
            [[rules]]
            id = "b"
            severity = "warning"
            quantity = "pm2_5"
            kinds = ["air"]
            condition = { type = "mean_above", window = "20m", fire = { norm = "daily", quantity = "pm10" }, clear = 50 }
            source = "t"
            message = { ru = "x", kk = "x", en = "x" }
        "#;
        let rules = parse("t.toml", text, &norms()).unwrap();
        assert_eq!(
            resolved(&rules, "a"),
            Condition::MeanAbove {
                window: Duration::from_secs(1200),
                fire: 160.0,
                clear: 80.0
            }
        );
        // PM10 ПДК с.с. 0.06 mg/m³.
        let Condition::MeanAbove { fire, clear, .. } = resolved(&rules, "b") else {
            panic!()
        };
        assert!((fire - 60.0).abs() < 1e-9 && (clear - 50.0).abs() < 1e-9);
    }

    #[test]
    fn an_unknown_norm_or_a_norm_the_quantity_lacks_is_refused_naming_the_rule() {
        let text = r#"
            [[rules]]
            id = "pm_typo"
            severity = "warning"
            quantity = "pm2_5"
            kinds = ["air"]
            condition = { type = "mean_above", window = "20m", fire = { norm = "one_tme" }, clear = 100.0 }
            source = "t"
            message = { ru = "x", kk = "x", en = "x" }
            [[rules]]
            id = "level_daily"
            severity = "warning"
            quantity = "water_level"
            kinds = ["river"]
            condition = { type = "daily_mean_above", fire = { norm = "daily" } }
            source = "t"
            message = { ru = "x", kk = "x", en = "x" }
        "#;
        let e = parse("t.toml", text, &norms()).unwrap_err();
        let RulesError::Invalid { problems, .. } = &e else {
            panic!("expected Invalid, got {e}")
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        let message = e.to_string();
        assert!(
            message.contains("rule pm_typo: fire: unknown norm \"one_tme\""),
            "{message}"
        );
        assert!(message.contains("one_time, daily"), "{message}");
        assert!(
            message.contains("rule level_daily: fire: norm \"daily\" has no value for water_level"),
            "{message}"
        );
    }

    #[test]
    fn a_misspelt_key_in_a_norm_reference_is_a_parse_error_naming_it() {
        let text = r#"
            [[rules]]
            id = "a"
            severity = "warning"
            quantity = "pm2_5"
            kinds = ["air"]
            condition = { type = "daily_mean_above", fire = { norm = "daily", factr = 2.0 } }
            source = "t"
            message = { ru = "x", kk = "x", en = "x" }
        "#;
        let e = parse("t.toml", text, &norms()).unwrap_err();
        assert!(
            matches!(&e, RulesError::Parse { message, .. } if message.contains("factr")),
            "{e}"
        );
    }

    #[test]
    fn a_norm_that_moves_above_a_numeric_clear_is_refused() {
        // DO clear 3.5 mg/L is a number; a department norm of 4 mg/L would put fire above it.
        let mut n = norms();
        n.water.dissolved_oxygen.high_pollution_max_mg_l.value = 4.0;
        let e = load(None, &n).unwrap_err().to_string();
        assert!(
            e.contains("rule dissolved_oxygen_low: clear (3.5) must not be below fire (4)"),
            "{e}"
        );
    }
}
