//! Benchmark: the city scorecard for a full year of 43 air posts (one per 50 000 people at the
//! 2022 population, targets.md) with synthetic hourly and 20-minute buckets for pm2_5, pm10 and
//! no2, built in memory. Prints the median time per scorecard over several runs and the peak
//! RSS growth while one scorecard is computed (Linux: /proc/self/clear_refs resets the peak).
//! Run: `cargo bench -p gateway --bench scorecard`.

use std::hint::black_box;
use std::time::Instant;

use protocol::{PostId, Quantity, UnixSeconds};
use taza_domain::calendar::LocalDay;
use taza_score::{
    city_scorecard, HourlyMean, Norms, PostDescriptor, PostKind, PostSeries, QuantitySeries,
    TwentyMinuteMean,
};

const POSTS: usize = 43;
const YEAR: i32 = 2025;
const RUNS: usize = 9;

/// xorshift64*: deterministic synthetic noise without a rand dependency.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn series(q: Quantity, start: UnixSeconds, hours: i64, rng: &mut Rng) -> QuantitySeries {
    let base = match q {
        Quantity::Pm2_5 => 35.0,
        Quantity::Pm10 => 55.0,
        _ => 45.0,
    };
    let mut hourly = Vec::with_capacity(hours as usize);
    let mut twenty = Vec::with_capacity(hours as usize * 3);
    for h in 0..hours {
        let t = start.offset(h * 3600);
        // Winter heating season and evening peaks, with a few missing hours (about 3 %).
        let season = 1.0 + 0.8 * ((h as f64 / 8760.0) * std::f64::consts::TAU).cos();
        let diurnal = 1.0 + 0.4 * ((h % 24) as f64 / 24.0 * std::f64::consts::TAU).sin();
        let covered_s = if rng.unit() < 0.03 { 1200 } else { 3600 };
        let mut sum = 0.0;
        let mut max = f64::MIN;
        for k in 0..3 {
            let v = base
                * season
                * diurnal
                * (0.6 + 0.8 * rng.unit())
                * if rng.unit() < 0.002 { 6.0 } else { 1.0 };
            sum += v;
            max = max.max(v);
            twenty.push(TwentyMinuteMean {
                start: t.offset(k * 1200),
                mean: v,
                covered_s: covered_s / 3,
            });
        }
        hourly.push(HourlyMean {
            start: t,
            mean: sum / 3.0,
            covered_s,
            count: 60,
            max,
        });
    }
    QuantitySeries {
        days: Vec::new(),
        quantity: q,
        hourly,
        twenty_minute: twenty,
    }
}

fn rss_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let norms = Norms::embedded()?;
    let first = chrono::NaiveDate::from_ymd_opt(YEAR, 1, 1).ok_or("date")?;
    let start = LocalDay::of(first).start;
    let hours = 365 * 24;
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let posts: Vec<PostSeries> = (0..POSTS)
        .map(|i| -> Result<PostSeries, Box<dyn std::error::Error>> {
            Ok(PostSeries {
                post: PostDescriptor {
                    id: PostId::parse(&format!("alm-{i:02}"))?,
                    kind: PostKind::Air,
                    lat_deg: 43.2 + i as f64 * 0.003,
                    lon_deg: 76.85 + i as f64 * 0.004,
                    district: None,
                    river: None,
                    critical_level: None,
                },
                series: [Quantity::Pm2_5, Quantity::Pm10, Quantity::No2]
                    .into_iter()
                    .map(|q| series(q, start, hours, &mut rng))
                    .collect(),
            })
        })
        .collect::<Result<_, _>>()?;
    let hourly: usize = posts
        .iter()
        .flat_map(|p| &p.series)
        .map(|s| s.hourly.len())
        .sum();
    let twenty: usize = posts
        .iter()
        .flat_map(|p| &p.series)
        .map(|s| s.twenty_minute.len())
        .sum();
    let now = start.offset(hours * 3600 + 86_400 * 10);

    // Peak RSS growth of one scorecard: reset the high-water mark, then read it after.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = rss_kib("VmRSS:");
    let card = black_box(city_scorecard(&norms, YEAR, black_box(&posts), now));
    let peak = rss_kib("VmHWM:");

    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        black_box(city_scorecard(&norms, YEAR, black_box(&posts), now));
        times.push(t.elapsed());
    }
    times.sort();
    let median = times.get(RUNS / 2).copied().unwrap_or_default();
    let json_len = serde_json::to_string(&card)?.len();

    println!("scorecard: {POSTS} posts x 3 pollutants, year {YEAR}: {hourly} hourly + {twenty} 20-minute buckets");
    println!(
        "time per scorecard: median {:.1} ms (min {:.1}, max {:.1}) over {RUNS} runs",
        median.as_secs_f64() * 1e3,
        times.first().map_or(0.0, |t| t.as_secs_f64() * 1e3),
        times.last().map_or(0.0, |t| t.as_secs_f64() * 1e3),
    );
    match (reset, before, peak) {
        (true, Some(b), Some(p)) => println!(
            "peak RSS growth during one scorecard: {} KiB (RSS before {b} KiB)",
            p.saturating_sub(b)
        ),
        _ => println!("peak RSS growth: unavailable (needs Linux /proc/self/clear_refs)"),
    }
    println!(
        "result: {} episodes, city ИЗА {:.2}, JSON {} KiB",
        card.episodes.len(),
        card.iza.value,
        json_len / 1024
    );
    Ok(())
}
