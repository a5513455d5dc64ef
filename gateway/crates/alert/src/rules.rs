//! Alert rules as data: the shipped defaults (`gateway/crates/alert/rules.toml`, embedded) or the
//! department's file, parsed and checked as a whole so a typo never silently disables paging.

use std::path::Path;
use std::time::Duration;

use protocol::Quantity;
use serde::{Deserialize, Serialize};

use taza_domain::post::PostKind;

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

/// What makes a rule fire and clear. Fire and clear are separate thresholds (hysteresis).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// Rolling mean over `window` above `fire`; clears below `clear`.
    MeanAbove {
        /// Averaging window.
        #[serde(with = "humantime_serde")]
        window: Duration,
        /// Fire threshold, in the quantity's unit.
        fire: f64,
        /// Clear threshold (≤ fire).
        clear: f64,
    },
    /// A completed local day's mean above `fire`, at most once a day.
    DailyMeanAbove {
        /// Threshold, in the quantity's unit.
        fire: f64,
    },
    /// Latest value below `fire`; clears above `clear`.
    ValueBelow {
        /// Fire threshold.
        fire: f64,
        /// Clear threshold (≥ fire).
        clear: f64,
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
        fire: f64,
        /// Clear threshold, cm/h.
        clear: f64,
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

/// One rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
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
    pub condition: Condition,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for", with = "humantime_serde", default)]
    pub for_duration: Duration,
    /// Where the threshold comes from.
    pub source: String,
    /// Message templates.
    pub message: Messages,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    rules: Vec<Rule>,
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

/// The shipped rules, or the department's file instead.
pub fn load(file: Option<&Path>) -> Result<Vec<Rule>, RulesError> {
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
    parse(&path, &text)
}

/// Parses and checks rules text.
pub fn parse(path: &str, text: &str) -> Result<Vec<Rule>, RulesError> {
    let file: RulesFile = toml::from_str(text).map_err(|e| RulesError::Parse {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    let mut problems = Vec::new();
    let mut ids = std::collections::HashSet::new();
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
        match &r.condition {
            Condition::MeanAbove {
                fire,
                clear,
                window,
            } if clear > fire || window.is_zero() => {
                problems.push(format!(
                    "rule {}: clear must not exceed fire and the window must be positive",
                    r.id
                ));
            }
            Condition::ValueBelow { fire, clear } if clear < fire => {
                problems.push(format!("rule {}: clear must not be below fire", r.id));
            }
            Condition::RiseAbove {
                fire,
                clear,
                window,
            } if clear > fire || window.is_zero() => {
                problems.push(format!(
                    "rule {}: clear must not exceed fire and the window must be positive",
                    r.id
                ));
            }
            Condition::QaFlags { flags } => {
                for f in flags {
                    if !protocol::QaFlags::NAMES.iter().any(|(_, n)| n == f) {
                        problems.push(format!("rule {}: unknown QA flag {f:?}", r.id));
                    }
                }
            }
            _ => {}
        }
        if r.kinds.is_empty() {
            problems.push(format!("rule {}: kinds must name air and/or river", r.id));
        }
    }
    if problems.is_empty() {
        Ok(file.rules)
    } else {
        Err(RulesError::Invalid {
            path: path.to_string(),
            problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_rules_parse_and_cover_the_issue_defaults() {
        let rules = load(None).unwrap();
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
        let RulesError::Invalid { problems, .. } = parse("t.toml", text).unwrap_err() else {
            panic!("expected Invalid")
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
