//! Low-emission zones: zone polygons from GeoJSON, which posts lie inside, and the zone's effect
//! as a difference-in-differences of daily means with a seeded bootstrap interval. Pure
//! functions; the only parsing is of the GeoJSON text handed in.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use protocol::{PostId, Quantity};
use serde::Serialize;

use super::input::{PostKind, PostSeries};
use super::means::{daily_means, ser_date};
use super::norms::DataCaptureRules;

/// Bootstrap replicates.
pub const BOOTSTRAP_REPLICATES: usize = 2000;

/// A ring of (longitude, latitude) degrees, GeoJSON order.
pub type Ring = Vec<[f64; 2]>;

/// A polygon: outer ring then holes.
pub type Polygon = Vec<Ring>;

/// A low-emission zone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Zone {
    /// Zone id.
    pub id: String,
    /// Name.
    pub name: String,
    /// First local day the zone is in force.
    #[serde(serialize_with = "ser_date")]
    pub start: NaiveDate,
    /// Polygons (a MultiPolygon; one entry for a Polygon).
    pub polygon: Vec<Polygon>,
}

/// Why a zone's GeoJSON was refused.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// Not JSON.
    #[error("zone GeoJSON is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not a Feature, Polygon or MultiPolygon.
    #[error("zone GeoJSON: {0}")]
    Shape(&'static str),
}

impl Zone {
    /// Parses a GeoJSON Feature (with a Polygon or MultiPolygon geometry), Polygon or
    /// MultiPolygon. Rings need at least 4 positions (closed) per RFC 7946 §3.1.6.
    pub fn from_geojson(
        id: &str,
        name: &str,
        start: NaiveDate,
        geojson: &str,
    ) -> Result<Self, ZoneError> {
        let v: serde_json::Value = serde_json::from_str(geojson)?;
        let geometry = match v.get("type").and_then(|t| t.as_str()) {
            Some("Feature") => v
                .get("geometry")
                .ok_or(ZoneError::Shape("Feature without geometry"))?,
            _ => &v,
        };
        let coords = geometry
            .get("coordinates")
            .ok_or(ZoneError::Shape("geometry without coordinates"))?;
        let polygon = match geometry.get("type").and_then(|t| t.as_str()) {
            Some("Polygon") => vec![parse_polygon(coords)?],
            Some("MultiPolygon") => coords
                .as_array()
                .ok_or(ZoneError::Shape(
                    "MultiPolygon coordinates must be an array",
                ))?
                .iter()
                .map(parse_polygon)
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(ZoneError::Shape(
                    "geometry must be a Polygon or MultiPolygon",
                ))
            }
        };
        Ok(Self {
            id: id.to_string(),
            name: name.to_string(),
            start,
            polygon,
        })
    }

    /// Whether (lon, lat) lies inside: inside some polygon's outer ring and in none of its holes.
    pub fn contains(&self, lon_deg: f64, lat_deg: f64) -> bool {
        self.polygon.iter().any(|p| {
            let mut rings = p.iter();
            rings
                .next()
                .is_some_and(|outer| ring_contains(outer, lon_deg, lat_deg))
                && !rings.any(|hole| ring_contains(hole, lon_deg, lat_deg))
        })
    }
}

fn parse_polygon(v: &serde_json::Value) -> Result<Polygon, ZoneError> {
    let rings = v.as_array().ok_or(ZoneError::Shape(
        "Polygon coordinates must be an array of rings",
    ))?;
    if rings.is_empty() {
        return Err(ZoneError::Shape("Polygon without rings"));
    }
    rings
        .iter()
        .map(|r| {
            let pts = r
                .as_array()
                .ok_or(ZoneError::Shape("ring must be an array of positions"))?;
            if pts.len() < 4 {
                return Err(ZoneError::Shape("ring needs at least 4 positions"));
            }
            pts.iter()
                .map(|p| {
                    let lon = p.get(0).and_then(|x| x.as_f64());
                    let lat = p.get(1).and_then(|x| x.as_f64());
                    match (lon, lat) {
                        (Some(lon), Some(lat)) => Ok([lon, lat]),
                        _ => Err(ZoneError::Shape("position must be [lon, lat]")),
                    }
                })
                .collect()
        })
        .collect()
}

/// Even-odd ray casting; a city-sized polygon is small enough to treat degrees as planar.
fn ring_contains(ring: &[[f64; 2]], x: f64, y: f64) -> bool {
    let mut inside = false;
    let n = ring.len();
    for i in 0..n {
        let (Some(a), Some(b)) = (ring.get(i), ring.get((i + n - 1) % n)) else {
            continue;
        };
        if (a[1] > y) != (b[1] > y) && x < (b[0] - a[0]) * (y - a[1]) / (b[1] - a[1]) + a[0] {
            inside = !inside;
        }
    }
    inside
}

/// A zone's estimated effect.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoneEffect {
    /// Zone id.
    pub zone: String,
    /// Pollutant.
    pub quantity: Quantity,
    /// Air posts inside the zone.
    pub posts_inside: Vec<PostId>,
    /// Air posts outside with data for the quantity.
    pub posts_outside: usize,
    /// Days before the start with both an inside and an outside mean.
    pub days_before: usize,
    /// Days from the start on with both.
    pub days_after: usize,
    /// mean(inside − outside | after) − mean(inside − outside | before), in the quantity's
    /// unit; negative = the zone lowered concentrations relative to outside.
    pub effect: Option<f64>,
    /// 2.5th percentile of the bootstrap distribution.
    pub ci_low: Option<f64>,
    /// 97.5th percentile.
    pub ci_high: Option<f64>,
    /// Whether the interval excludes zero.
    pub significant: bool,
    /// Bootstrap replicates.
    pub replicates: usize,
    /// The seed used.
    pub seed: u64,
    /// How it was computed.
    pub method: &'static str,
}

/// [`zone_effect_with`] under the default data-capture rules.
pub fn zone_effect(zone: &Zone, posts: &[PostSeries], quantity: Quantity, seed: u64) -> ZoneEffect {
    zone_effect_with(zone, posts, quantity, seed, &DataCaptureRules::default())
}

/// Difference-in-differences of daily means: for each local day with a valid daily mean at some
/// post inside and some post outside, dₜ = mean(inside posts) − mean(outside posts); effect =
/// mean(dₜ, t ≥ start) − mean(dₜ, t < start). Subtracting the outside series removes weather
/// and season common to the city; subtracting the before period removes the zone's standing
/// difference. The 95 % interval is a percentile bootstrap resampling days with replacement
/// within each period (SplitMix64, `seed`: deterministic). Days are treated as independent;
/// pollution is autocorrelated over a few days, so the interval is somewhat too narrow.
pub fn zone_effect_with(
    zone: &Zone,
    posts: &[PostSeries],
    quantity: Quantity,
    seed: u64,
    rules: &DataCaptureRules,
) -> ZoneEffect {
    // date -> (inside sum, inside n, outside sum, outside n)
    let mut by_day: BTreeMap<NaiveDate, (f64, u32, f64, u32)> = BTreeMap::new();
    let mut posts_inside = Vec::new();
    let mut posts_outside = 0;
    for p in posts.iter().filter(|p| p.post.kind == PostKind::Air) {
        let Some(s) = p.quantity(quantity) else {
            continue;
        };
        let inside = zone.contains(p.post.lon_deg, p.post.lat_deg);
        if inside {
            posts_inside.push(p.post.id.clone());
        } else {
            posts_outside += 1;
        }
        for d in daily_means(&s.hourly, rules) {
            let Some(m) = d.mean.filter(|_| d.valid) else {
                continue;
            };
            let e = by_day.entry(d.date).or_insert((0.0, 0, 0.0, 0));
            if inside {
                e.0 += m;
                e.1 += 1;
            } else {
                e.2 += m;
                e.3 += 1;
            }
        }
    }
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for (date, (si, ni, so, no)) in by_day {
        if ni == 0 || no == 0 {
            continue;
        }
        let d = si / f64::from(ni) - so / f64::from(no);
        if date < zone.start {
            before.push(d);
        } else {
            after.push(d);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let enough = !before.is_empty() && !after.is_empty();
    let effect = enough.then(|| mean(&after) - mean(&before));
    let (mut ci_low, mut ci_high) = (None, None);
    if enough {
        let mut rng = SplitMix64(seed);
        let mut stats: Vec<f64> = (0..BOOTSTRAP_REPLICATES)
            .map(|_| resampled_mean(&after, &mut rng) - resampled_mean(&before, &mut rng))
            .collect();
        stats.sort_by(f64::total_cmp);
        ci_low = percentile(&stats, 0.025);
        ci_high = percentile(&stats, 0.975);
    }
    ZoneEffect {
        zone: zone.id.clone(),
        quantity,
        posts_inside,
        posts_outside,
        days_before: before.len(),
        days_after: after.len(),
        effect,
        ci_low,
        ci_high,
        significant: matches!((ci_low, ci_high), (Some(l), Some(h)) if l > 0.0 || h < 0.0),
        replicates: if enough { BOOTSTRAP_REPLICATES } else { 0 },
        seed,
        method: "difference-in-differences of daily means (inside minus outside, after minus \
                 before); 95 % percentile bootstrap over days, resampled within each period",
    }
}

fn resampled_mean(v: &[f64], rng: &mut SplitMix64) -> f64 {
    let n = v.len() as u64;
    let sum: f64 = (0..n)
        .map(|_| v.get(rng.below(n) as usize).copied().unwrap_or(0.0))
        .sum();
    sum / n as f64
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied()
}

/// SplitMix64 (Steele, Lea, Flood 2014): small, seedable, good enough for resampling indices.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (multiply-shift; the bias is below 2⁻³² for day counts).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in [0, 1).
    #[cfg(test)]
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taza_domain::calendar::LocalDay;
    use taza_domain::series::{HourlyMean, PostDescriptor, QuantitySeries, HOUR_S};

    const SQUARE: &str = r#"{"type":"Feature","properties":{},"geometry":{"type":"Polygon",
        "coordinates":[[[76.90,43.23],[76.96,43.23],[76.96,43.27],[76.90,43.27],[76.90,43.23]],
        [[76.92,43.24],[76.93,43.24],[76.93,43.25],[76.92,43.25],[76.92,43.24]]]}}"#;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn point_in_polygon_respects_holes_and_multipolygons() {
        let z = Zone::from_geojson("c", "Центр", date(2024, 7, 1), SQUARE).unwrap();
        assert!(z.contains(76.94, 43.26));
        assert!(!z.contains(76.925, 43.245)); // in the hole
        assert!(!z.contains(76.97, 43.26));
        let multi = r#"{"type":"MultiPolygon","coordinates":[
            [[[0,0],[1,0],[1,1],[0,1],[0,0]]],[[[5,5],[6,5],[6,6],[5,6],[5,5]]]]}"#;
        let z = Zone::from_geojson("m", "m", date(2024, 1, 1), multi).unwrap();
        assert!(z.contains(0.5, 0.5) && z.contains(5.5, 5.5) && !z.contains(3.0, 3.0));
        assert!(Zone::from_geojson("x", "x", date(2024, 1, 1), r#"{"type":"Point"}"#).is_err());
        assert!(Zone::from_geojson("x", "x", date(2024, 1, 1), "{").is_err());
    }

    /// Posts with 24 full hours per day, each day's value = common(day) + offset + noise.
    fn synthetic(effect: f64, seed: u64) -> (Zone, Vec<PostSeries>) {
        let zone = Zone::from_geojson("c", "Центр", date(2025, 3, 1), SQUARE).unwrap();
        let mut rng = SplitMix64(seed);
        let first = date(2025, 1, 1);
        let days = 120u64;
        // Common weather signal shared by all posts each day.
        let common: Vec<f64> = (0..days).map(|_| 40.0 + 30.0 * rng.unit()).collect();
        let mut posts = Vec::new();
        for (i, (lon, lat, inside)) in [
            (76.94, 43.26, true),
            (76.95, 43.235, true),
            (76.80, 43.20, false),
            (77.00, 43.30, false),
            (76.85, 43.35, false),
        ]
        .into_iter()
        .enumerate()
        {
            let mut hourly = Vec::new();
            for d in 0..days {
                let day = LocalDay::of(first + chrono::Days::new(d));
                let after = day.date >= zone.start;
                // Inside posts stand 10 above outside; after the start they drop by `effect`.
                let base = common[d as usize]
                    + if inside { 10.0 } else { 0.0 }
                    + if inside && after { effect } else { 0.0 };
                let noise = 8.0 * (rng.unit() - 0.5);
                for h in 0..24 {
                    hourly.push(HourlyMean {
                        start: day.start.offset(h * HOUR_S),
                        mean: base + noise,
                        covered_s: HOUR_S,
                        count: 60,
                        max: base + noise,
                    });
                }
            }
            posts.push(PostSeries {
                post: PostDescriptor {
                    id: PostId::parse(&format!("alm-{i:02}")).unwrap(),
                    kind: PostKind::Air,
                    lat_deg: lat,
                    lon_deg: lon,
                    district: None,
                    river: None,
                    critical_level: None,
                },
                series: vec![QuantitySeries {
                    days: Vec::new(),
                    quantity: Quantity::No2,
                    hourly,
                    twenty_minute: vec![],
                }],
            });
        }
        (zone, posts)
    }

    #[test]
    fn zone_effect_recovers_a_known_drop_within_an_interval_excluding_zero() {
        // True effect −12: inside − outside is 10 before, −2 after; DiD = −2 − 10 = −12.
        let (zone, posts) = synthetic(-12.0, 7);
        let e = zone_effect(&zone, &posts, Quantity::No2, 42);
        assert_eq!(e.posts_inside.len(), 2);
        assert_eq!(e.posts_outside, 3);
        // Jan + Feb 2025 = 31 + 28 = 59 days before; 120 − 59 = 61 after.
        assert_eq!((e.days_before, e.days_after), (59, 61));
        let (lo, hi) = (e.ci_low.unwrap(), e.ci_high.unwrap());
        assert!(lo <= -12.0 && -12.0 <= hi, "[{lo}, {hi}]");
        assert!(hi < 0.0 && e.significant);
        // Deterministic: same seed, same interval.
        let again = zone_effect(&zone, &posts, Quantity::No2, 42);
        assert_eq!(again, e);
    }

    #[test]
    fn zone_without_effect_gets_an_interval_including_zero() {
        let (zone, posts) = synthetic(0.0, 0);
        let e = zone_effect(&zone, &posts, Quantity::No2, 42);
        let (lo, hi) = (e.ci_low.unwrap(), e.ci_high.unwrap());
        assert!(lo < 0.0 && 0.0 < hi, "[{lo}, {hi}]");
        assert!(!e.significant);
        // Calibration rather than one lucky draw: over 20 synthetic cities without an effect a
        // 95 % interval should miss 0 about once; allow up to 3 misses (P(>3) ≈ 1.6 %).
        let misses = (100..120u64)
            .filter(|s| {
                let (zone, posts) = synthetic(0.0, *s);
                zone_effect(&zone, &posts, Quantity::No2, 42).significant
            })
            .count();
        assert!(misses <= 3, "{misses} of 20 intervals exclude 0");
        // No data for PM2.5: no effect, no interval.
        let e = zone_effect(&zone, &posts, Quantity::Pm2_5, 42);
        assert_eq!(e.effect, None);
        assert_eq!(e.replicates, 0);
    }
}
