//! The schema of the long-term store: what a reading becomes in InfluxDB.
//!
//! One point per reading, built with the `influxdb2` crate's [`DataPoint`] and written in its
//! line protocol:
//! `{measurement},[district=…,]kind={kind},post={post},quantity={quantity}[,river=…]`
//! `flags={n}i,value={f} {unix s}` (one line, the two halves joined by a space)
//! with the measurement from [`measurement`] (a quantity family), tags and fields sorted by key
//! (the crate keeps both in sorted maps; InfluxDB parses sorted tags fastest), `value` a float
//! in the quantity's unit, `flags` the QA bits as an integer, and the timestamp in seconds
//! (`precision=s`). `district` is on air posts, `river` on river posts. `dashboards/README.md`
//! documents the same schema for Grafana users; the dashboards test reads [`measurement`],
//! [`FIELDS`] and [`TAGS`] rather than a copied list.
//!
//! Our own encoder is gone; what the crate does not do is done in [`tag_value`] before a value
//! reaches it: it does not escape a backslash in a tag value (a district or river ending in `\`
//! would escape the next tag's comma and break the line) nor a line break (which would end the
//! line). Sent as the crate writes it, `district=Almaly\,kind=air,post=p` reached
//! VictoriaMetrics as district `Almaly,kind=air` and no `kind` at all; with the backslash
//! doubled it arrives as `Almaly\` with its `kind`
//! (`a_tag_value_ending_in_a_backslash_survives` in `gateway/tests/it/sink.rs`).

use influxdb2::models::{DataPoint, WriteDataPoint};
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

/// The point `p` as the `influxdb2` crate's [`DataPoint`], or None for a value line protocol
/// cannot carry (NaN or infinite; decode refuses them, so this is a guard, not a path).
///
/// Tags are set through [`tag_value`], which makes up for the crate's escaping; empty values
/// are left out (line protocol has no empty tag values, and an absent tag reads the same in
/// Flux). The crate keeps tags and fields in sorted maps, so a line reads
/// `{measurement},district=…,kind=…,post=…,quantity=…,river=… flags={n}i,value={f} {unix s}`.
pub fn data_point(p: &Point<'_>) -> Option<DataPoint> {
    if !p.value.is_finite() {
        return None;
    }
    let mut b = DataPoint::builder(measurement(p.quantity));
    for (key, value) in [
        ("district", p.district),
        ("kind", Some(p.kind)),
        ("post", Some(p.post)),
        ("quantity", Some(p.quantity.as_str())),
        ("river", p.river),
    ] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            b = b.tag(key, tag_value(v));
        }
    }
    b.field("value", p.value)
        .field("flags", i64::from(p.flags))
        .timestamp(p.at_s)
        .build()
        .ok()
}

/// A tag value as handed to the crate, which escapes `,`, `=` and space with a backslash but
/// leaves a backslash itself and line breaks alone. Left so, `Almaly\` would end in `\,` (the
/// next tag's comma escaped, the line broken) and a line break would end the line. So a
/// backslash is doubled here (line protocol reads `\\` as one backslash, InfluxDB and
/// VictoriaMetrics alike) and a line break becomes a space (it cannot be escaped in a tag at
/// all; names typed into the registry only), which the crate then escapes.
pub fn tag_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The line protocol the crate writes for `p` (with its trailing newline); empty for a point
/// [`data_point`] refuses.
pub fn line(p: &Point<'_>) -> String {
    let mut out = Vec::new();
    if let Some(dp) = data_point(p) {
        // Writing to a Vec cannot fail.
        let _ = dp.write_data_point_to(&mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
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
    fn every_tag_and_field_written_is_listed() {
        let mut p = air("p", Some("d"));
        p.river = Some("r");
        let l = line(&p);
        let mut parts = l.split(' ');
        let keys: Vec<&str> = parts
            .next()
            .unwrap()
            .split(',')
            .skip(1)
            .map(|kv| kv.split('=').next().unwrap())
            .collect();
        assert_eq!(keys, TAGS);
        let mut fields: Vec<&str> = parts
            .next()
            .unwrap()
            .split(',')
            .map(|kv| kv.split('=').next().unwrap())
            .collect();
        fields.sort_unstable();
        let mut want = FIELDS;
        want.sort_unstable();
        assert_eq!(fields, want);
    }

    #[test]
    fn plain_air_point() {
        assert_eq!(
            line(&air("alm-001", Some("Almalinsky"))),
            "air,district=Almalinsky,kind=air,post=alm-001,quantity=pm2_5 flags=0i,value=12.5 1767225600\n"
        );
    }

    #[test]
    fn tag_values_escape_spaces_commas_equals_signs_and_backslashes() {
        let table = [
            ("Almaly district", "Almaly\\ district"),
            ("a,b", "a\\,b"),
            ("k=v", "k\\=v"),
            ("a, b=c", "a\\,\\ b\\=c"),
            ("two\nlines", "two\\ lines"),
            ("cr\r\nlf", "cr\\ \\ lf"),
            // The crate alone would write `Almaly\,kind=air`: the comma escaped, the line broken.
            ("Almaly\\", "Almaly\\\\"),
            ("a\\b", "a\\\\b"),
            ("a\\ b", "a\\\\\\ b"),
            ("\\,=\\", "\\\\\\,\\=\\\\"),
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
            "water,kind=river,post=esentai-1,quantity=water_level,river=Есентай flags=5i,value=-3 60\n"
        );
        let bare = air("demo", Some(""));
        assert_eq!(
            line(&bare),
            "air,kind=air,post=demo,quantity=pm2_5 flags=0i,value=12.5 1767225600\n"
        );
    }

    #[test]
    fn floats_keep_their_value_and_non_finite_values_are_refused() {
        for v in [0.1, 1e-7, 123_456_789.125, -0.0, 1e21] {
            let mut p = air("p", None);
            p.value = v;
            let l = line(&p);
            let text = l
                .split_once(",value=")
                .and_then(|(_, r)| r.split_once(' '))
                .map(|(v, _)| v)
                .unwrap();
            assert_eq!(text.parse::<f64>().unwrap(), v, "{l}");
        }
        let mut p = air("p", None);
        p.value = f64::NAN;
        assert!(data_point(&p).is_none());
        assert_eq!(line(&p), "");
        p.value = f64::INFINITY;
        assert!(data_point(&p).is_none());
    }
}
