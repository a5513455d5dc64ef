//! Text renderings of the city scorecard for the `gateway report --year` CLI: Markdown for
//! people and CSV for spreadsheets. Headings are Russian with English in parentheses.

use std::fmt::Write as _;

use super::scorecard::{CityScorecard, TrajectoryStatus};

fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{v:.decimals$}"))
}

fn status_label(s: TrajectoryStatus) -> &'static str {
    match s {
        TrajectoryStatus::Met => "выполнено (met)",
        TrajectoryStatus::NotMet => "не выполнено (not met)",
        TrajectoryStatus::NotEnoughData => "мало данных (not enough data)",
        TrajectoryStatus::InProgress => "год не закончен (in progress)",
    }
}

/// The scorecard as Markdown.
pub fn scorecard_markdown(card: &CityScorecard) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(
        s,
        "# Качество воздуха Алматы за {} (Almaty air quality, {})\n",
        card.year, card.year
    );
    if card.in_progress {
        let _ = writeln!(
            s,
            "_Год не закончен: значения на текущую дату (year in progress)._\n"
        );
    }
    let _ = writeln!(
        s,
        "Нормативы (limit set): `{}`; постов (air posts): {}\n",
        card.limit_set, card.air_posts
    );
    let _ = writeln!(s, "## Уровень загрязнения (pollution level)\n");
    let l = &card.level;
    let _ = writeln!(
        s,
        "| показатель (index) | значение (value) | градация (grade) |\n|---|---|---|"
    );
    let g = |x: Option<super::norms::Grade>| x.map_or("—", |g| g.label());
    let _ = writeln!(s, "| СИ (SI) | {} | {} |", num(l.si, 1), g(l.si_grade));
    let _ = writeln!(
        s,
        "| НП, % (NP) | {} | {} |",
        num(l.np_percent, 1),
        g(l.np_grade)
    );
    let _ = writeln!(s, "| ИЗА (API) | {} | {} |", num(l.iza, 1), g(l.iza_grade));
    let _ = writeln!(
        s,
        "| **уровень (level)** | | **{}** |\n",
        l.level_label.unwrap_or("—")
    );
    let summed: Vec<String> = card
        .iza
        .summed
        .iter()
        .map(|u| format!("{} {:.2}", u.substance, u.index))
        .collect();
    let _ = writeln!(s, "ИЗА слагаемые (terms): {}\n", summed.join(", "));
    let _ = writeln!(s, "## Город по загрязнителям (city by pollutant)\n");
    let _ = writeln!(s, "| загрязнитель (pollutant) | среднегодовая, мкг/м³ (annual mean, µg/m³) | постов (posts valid / with data) | дней > ПДК с.с. (days > daily limit) | 20-мин > ПДК м.р. (20-min > one-time limit) | СИ max | НП max, % |\n|---|---|---|---|---|---|---|");
    for c in &card.pollutants {
        let _ = writeln!(
            s,
            "| {} | {} | {} / {} | {} | {} | {} | {} |",
            c.quantity,
            num(c.annual_mean_ug_m3, 1),
            c.posts_valid,
            c.posts_with_data,
            c.daily_exceedance_days,
            c.one_time_exceedances,
            c.si_max
                .as_ref()
                .map_or("—".into(), |a| format!("{:.1} ({})", a.value, a.post)),
            c.np_max_percent
                .as_ref()
                .map_or("—".into(), |a| format!("{:.1} ({})", a.value, a.post)),
        );
    }
    let _ = writeln!(s, "\n## Цели плана (plan targets)\n");
    let _ = writeln!(s, "| показатель (metric) | год (year) | план (plan) | вид (kind) | измерено (measured) | статус (status) | источник (source) |\n|---|---|---|---|---|---|---|");
    for r in &card.trajectory {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:?} | {} | {} | {} |",
            r.metric,
            r.year,
            r.plan_value,
            r.kind,
            num(r.measured, 1),
            status_label(r.status),
            r.source
        );
    }
    let _ = writeln!(
        s,
        "\n## ВЗ/ЭВЗ (high / extreme pollution episodes): {}\n",
        card.episodes.len()
    );
    for e in &card.episodes {
        let _ = writeln!(
            s,
            "- {} {} {} .. {}: {:.1} ПДК, {:?}",
            e.post,
            e.substance,
            taza_domain::calendar::rfc3339(e.start),
            taza_domain::calendar::rfc3339(e.end),
            e.max_multiple,
            e.class
        );
    }
    if !card.notes.is_empty() {
        let _ = writeln!(s, "\n## Примечания (notes)\n");
        for n in &card.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

/// The scorecard as CSV: one row per post and pollutant, then one `city` row per pollutant.
pub fn scorecard_csv(card: &CityScorecard) -> String {
    let mut s = String::from(
        "year,post,district,pollutant,annual_mean_ug_m3,annual_capture,annual_valid,valid_days,days_above_daily_limit,largest_daily_multiple,one_time_valid,one_time_above_limit,si,np_percent\n",
    );
    for p in &card.posts {
        for x in &p.pollutants {
            let d = x.daily_exceedances.as_ref();
            let o = x.one_time.as_ref();
            let _ = writeln!(
                s,
                "{},{},{},{},{},{:.4},{},{},{},{},{},{},{},{}",
                card.year,
                p.post,
                csv_field(p.district.as_deref().unwrap_or("")),
                x.quantity,
                num(x.annual.mean, 2),
                x.annual.capture,
                x.annual.valid,
                x.annual.valid_days,
                d.map_or(String::new(), |d| d.exceedance_days.to_string()),
                num(d.and_then(|d| d.largest_multiple), 3),
                o.map_or(String::new(), |o| o.valid_means.to_string()),
                o.map_or(String::new(), |o| o.exceedances.to_string()),
                num(o.and_then(|o| o.si), 3),
                num(o.and_then(|o| o.np_percent), 3),
            );
        }
    }
    for c in &card.pollutants {
        let _ = writeln!(
            s,
            "{},city,,{},{},{},{},,{},,,{},{},{}",
            card.year,
            c.quantity,
            num(c.annual_mean_ug_m3, 2),
            num(c.mean_capture, 4),
            c.posts_valid > 0,
            c.daily_exceedance_days,
            c.one_time_exceedances,
            num(c.si_max.as_ref().map(|a| a.value), 3),
            num(c.np_max_percent.as_ref().map(|a| a.value), 3),
        );
    }
    s
}
