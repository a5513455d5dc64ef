//! InfluxDB line protocol for readings: the schema of the long-term store.
//!
//! One point per reading:
//! `{measurement},kind={kind},post={post},quantity={quantity}[,district=…|,river=…] value={f},flags={n}i {unix s}`
//! with the measurement from [`measurement`] (a quantity family), tags sorted by key (InfluxDB
//! parses sorted tags fastest), and the timestamp in seconds (`precision=s`). `dashboards/README.md`
//! documents the same schema for Grafana users; the dashboards test reads [`measurement`] and
//! [`FIELDS`] rather than a copied list.

use std::fmt::Write as _;

use protocol::Quantity;

/// Field names every point carries: the value in the quantity's unit, and the QA bits.
pub const FIELDS: [&str; 2] = ["value", "flags"];

/// Tag keys a point may carry (`district` on air posts, `river` on river posts, the rest always).
pub const TAGS: [&str; 5] = ["district", "kind", "post", "quantity", "river"];

/// The measurement (quantity family) a quantity is written under.
///
/// The dashboards test calls this over `Quantity::ALL` to learn the measurements that exist.
pub const fn measurement(q: Quantity) -> &'static str {
    match q {
        Quantity::Pm1 | Quantity::Pm2_5 | Quantity::Pm10 | Quantity::No2 => "air",
        Quantity::Temperature | Quantity::Humidity | Quantity::Pressure => "climate",
        Quantity::WaterLevel
        | Quantity::WaterTemperature
        | Quantity::Conductivity
        | Quantity::Turbidity
        | Quantity::DissolvedOxygen
        | Quantity::Ph => "water",
        Quantity::Rssi | Quantity::SupplyVoltage => "device",
        // `Quantity` is non_exhaustive: a quantity added to the protocol is still written, under
        // `other`, until it is given a family here (`every_quantity_has_its_family` fails first).
        _ => "other",
    }
}

/// One queued reading with the registry facts its tags need.
#[derive(Debug, Clone, PartialEq)]
pub struct Point<'a> {
    /// Post id.
    pub post: &'a str,
    /// Quantity.
    pub quantity: Quantity,
    /// `air`, `river` or `unregistered` (posts seen in demo mode).
    pub kind: &'a str,
    /// City district (air posts), if known.
    pub district: Option<&'a str>,
    /// River (river posts), if known.
    pub river: Option<&'a str>,
    /// Unix seconds.
    pub at_s: i64,
    /// Value in the quantity's unit.
    pub value: f64,
    /// QA bits.
    pub flags: u16,
}

/// Appends `p` as one line (with its trailing newline) to `out`. Returns false, writing nothing,
/// for a value line protocol cannot carry (NaN or infinite; decode refuses them, so this is a
/// guard, not a path).
pub fn write_point(out: &mut String, p: &Point<'_>) -> bool {
    if !p.value.is_finite() {
        return false;
    }
    out.push_str(measurement(p.quantity));
    // Sorted by key: district < kind < post < quantity < river.
    push_tag(out, "district", p.district);
    push_tag(out, "kind", Some(p.kind));
    push_tag(out, "post", Some(p.post));
    push_tag(out, "quantity", Some(p.quantity.as_str()));
    push_tag(out, "river", p.river);
    // `{}` on f64 prints the shortest text that reads back to the same value; a bare number is
    // a float field in line protocol, `i` marks the integer.
    let _ = writeln!(out, " value={},flags={}i {}", p.value, p.flags, p.at_s);
    true
}

/// `,key=value` with the value escaped; empty values are left out (line protocol has no empty
/// tag values, and an absent tag reads the same in Flux).
fn push_tag(out: &mut String, key: &str, value: Option<&str>) {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return;
    };
    out.push(',');
    out.push_str(key);
    out.push('=');
    escape_tag_value(out, value);
}

/// Tag values escape comma, equals sign and space with a backslash. A line break cannot be
/// escaped in a tag at all, so it becomes a space (names typed into the registry only).
fn escape_tag_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            ',' | '=' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push_str("\\ "),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn air(post: &'static str, district: Option<&'static str>) -> Point<'static> {
        Point {
            post,
            quantity: Quantity::Pm2_5,
            kind: "air",
            district,
            river: None,
            at_s: 1_767_225_600,
            value: 12.5,
            flags: 0,
        }
    }

    fn line(p: &Point<'_>) -> String {
        let mut s = String::new();
        assert!(write_point(&mut s, p));
        s
    }

    #[test]
    fn every_quantity_has_its_family() {
        let cases = [
            (Quantity::Pm1, "air"),
            (Quantity::Pm2_5, "air"),
            (Quantity::Pm10, "air"),
            (Quantity::No2, "air"),
            (Quantity::Temperature, "climate"),
            (Quantity::Humidity, "climate"),
            (Quantity::Pressure, "climate"),
            (Quantity::WaterLevel, "water"),
            (Quantity::WaterTemperature, "water"),
            (Quantity::Conductivity, "water"),
            (Quantity::Turbidity, "water"),
            (Quantity::DissolvedOxygen, "water"),
            (Quantity::Ph, "water"),
            (Quantity::Rssi, "device"),
            (Quantity::SupplyVoltage, "device"),
        ];
        assert_eq!(cases.len(), Quantity::ALL.len());
        for (q, m) in cases {
            assert_eq!(measurement(q), m, "{q}");
        }
    }

    #[test]
    fn every_tag_written_is_listed_in_tags() {
        let mut p = air("p", Some("d"));
        p.river = Some("r");
        let l = line(&p);
        let head = l.split(' ').next().unwrap();
        let keys: Vec<&str> = head
            .split(',')
            .skip(1)
            .map(|kv| kv.split('=').next().unwrap())
            .collect();
        assert_eq!(keys, TAGS);
    }

    #[test]
    fn plain_air_point() {
        assert_eq!(
            line(&air("alm-001", Some("Almalinsky"))),
            "air,district=Almalinsky,kind=air,post=alm-001,quantity=pm2_5 value=12.5,flags=0i 1767225600\n"
        );
    }

    #[test]
    fn tag_values_escape_spaces_commas_and_equals_signs() {
        let table = [
            ("Almaly district", "Almaly\\ district"),
            ("a,b", "a\\,b"),
            ("k=v", "k\\=v"),
            ("a, b=c", "a\\,\\ b\\=c"),
            ("two\nlines", "two\\ lines"),
            // Cyrillic passes through as UTF-8, which line protocol carries unchanged.
            ("Алмалинский", "Алмалинский"),
            ("Медеуский район", "Медеуский\\ район"),
            ("Бостандық", "Бостандық"),
        ];
        for (raw, escaped) in table {
            let l = line(&air("p", Some(raw)));
            assert!(
                l.starts_with(&format!("air,district={escaped},kind=air,")),
                "{raw:?} -> {l:?}"
            );
        }
    }

    #[test]
    fn river_points_carry_the_river_and_empty_tags_are_left_out() {
        let p = Point {
            post: "esentai-1",
            quantity: Quantity::WaterLevel,
            kind: "river",
            district: None,
            river: Some("Есентай"),
            at_s: 60,
            value: -3.0,
            flags: 5,
        };
        assert_eq!(
            line(&p),
            "water,kind=river,post=esentai-1,quantity=water_level,river=Есентай value=-3,flags=5i 60\n"
        );
        let bare = air("demo", Some(""));
        assert_eq!(
            line(&bare),
            "air,kind=air,post=demo,quantity=pm2_5 value=12.5,flags=0i 1767225600\n"
        );
    }

    #[test]
    fn floats_keep_their_value_and_non_finite_values_are_refused() {
        for v in [0.1, 1e-7, 123_456_789.125, -0.0, 1e21] {
            let mut p = air("p", None);
            p.value = v;
            let l = line(&p);
            let text = l
                .split_once(" value=")
                .and_then(|(_, r)| r.split_once(','))
                .map(|(v, _)| v)
                .unwrap();
            assert_eq!(text.parse::<f64>().unwrap(), v, "{l}");
        }
        let mut s = String::new();
        let mut p = air("p", None);
        p.value = f64::NAN;
        assert!(!write_point(&mut s, &p));
        p.value = f64::INFINITY;
        assert!(!write_point(&mut s, &p));
        assert!(s.is_empty());
    }
}
