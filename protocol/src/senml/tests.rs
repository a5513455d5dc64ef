#![allow(clippy::unwrap_used)]

use super::*;
use crate::Quantity;
use minicbor::Encoder;
use proptest::prelude::*;

const NOW: UnixSeconds = UnixSeconds(1_767_225_900); // 2026-01-01T00:05:00Z

fn post(s: &str) -> PostId {
    PostId::parse(s).unwrap()
}

/// A hand-built CBOR pack: one record per `(label, value)` list, written by minicbor directly.
fn cbor_pack(records: &[&[(i64, CborValue)]]) -> std::vec::Vec<u8> {
    let mut buf = std::vec::Vec::new();
    let mut e = Encoder::new(&mut buf);
    e.array(records.len() as u64).unwrap();
    for r in records {
        e.map(r.len() as u64).unwrap();
        for (label, value) in *r {
            e.i64(*label).unwrap();
            match value {
                CborValue::Text(s) => e.str(s).unwrap(),
                CborValue::Float(f) => e.f64(*f).unwrap(),
                CborValue::Int(i) => e.i64(*i).unwrap(),
            };
        }
    }
    buf
}

#[derive(Clone, Copy)]
enum CborValue {
    Text(&'static str),
    Float(f64),
    Int(i64),
}
use CborValue::{Float, Int, Text};

#[test]
fn design_example_json_decodes_to_three_readings() {
    let json = br#"[{"bn":"urn:dev:post:almaty-001:","bt":1767225600,"n":"pm2_5","u":"ug/m3","v":41.2},{"n":"no2","u":"ug/m3","v":63.0},{"n":"temperature","u":"Cel","v":-7.5}]"#;
    let t = decode(json, &post("almaty-001"), NOW).unwrap();
    assert_eq!(t.post.as_str(), "almaty-001");
    let got: std::vec::Vec<_> = t
        .readings
        .iter()
        .map(|m| (m.quantity, m.value, m.at.0))
        .collect();
    assert_eq!(
        got,
        [
            (Quantity::Pm2_5, 41.2, 1_767_225_600),
            (Quantity::No2, 63.0, 1_767_225_600),
            (Quantity::Temperature, -7.5, 1_767_225_600)
        ]
    );
}

#[test]
fn byte_exact_cbor_with_relative_time_decodes() {
    // [{0: "pm2_5", 2: 12, 6: -60}]: bare name, integer value, time 60 s before now.
    let bytes = [
        0x81, 0xa3, 0x00, 0x65, b'p', b'm', b'2', b'_', b'5', 0x02, 0x0c, 0x06, 0x38, 0x3b,
    ];
    let t = decode(&bytes, &post("a"), NOW).unwrap();
    assert_eq!(t.readings.len(), 1);
    assert_eq!(t.readings[0].quantity, Quantity::Pm2_5);
    assert_eq!(t.readings[0].value, 12.0);
    assert_eq!(t.readings[0].at, NOW.offset(-60));
}

#[test]
fn base_value_base_unit_and_time_offsets_apply_to_later_records() {
    let json = br#"[{"bn":"urn:dev:post:river-1:","bt":1767222000,"bu":"cm","bv":100,"n":"water_level","v":5},{"n":"water_level","v":7,"t":600},{"bn":"urn:dev:post:river-1:ph","bv":0,"v":7.2,"u":"pH"}]"#;
    let t = decode(json, &post("river-1"), NOW).unwrap();
    let got: std::vec::Vec<_> = t
        .readings
        .iter()
        .map(|m| (m.quantity, m.value, m.at.0))
        .collect();
    assert_eq!(
        got,
        [
            (Quantity::WaterLevel, 105.0, 1_767_222_000),
            (Quantity::WaterLevel, 107.0, 1_767_222_600),
            (Quantity::Ph, 7.2, 1_767_222_000)
        ]
    );
}

#[test]
fn qa_flags_travel_in_both_formats() {
    let json = br#"[{"n":"pm10","v":80,"t":-10,"qa":17}]"#;
    let t = decode(json, &post("a"), NOW).unwrap();
    assert_eq!(
        t.readings[0].flags,
        QaFlags::WARM_UP.union(QaFlags::HIGH_HUMIDITY)
    );
    let m = Measurement {
        quantity: Quantity::Pm10,
        value: 80.0,
        at: NOW,
        flags: QaFlags::STUCK,
        window_s: None,
    };
    let mut buf = [0u8; 128];
    let n = encode(&post("a"), &[m], &mut buf).unwrap();
    assert_eq!(
        decode(&buf[..n], &post("a"), NOW).unwrap().readings[0].flags,
        QaFlags::STUCK
    );
}

#[test]
fn every_rejection_has_its_reason() {
    let a = post("almaty-001");
    let bn = (-2, Text("urn:dev:post:almaty-001:"));
    let bt = (-3, Int(1_767_225_600));
    let good = cbor_pack(&[&[
        bn,
        bt,
        (0, Text("pm2_5")),
        (1, Text("ug/m3")),
        (2, Float(41.5)),
    ]]);
    assert!(decode(&good, &a, NOW).is_ok());

    let cases: std::vec::Vec<(&str, std::vec::Vec<u8>, DecodeError)> = std::vec![
        (
            "truncated cbor",
            good[..good.len() - 3].to_vec(),
            DecodeError::BadCbor
        ),
        (
            "trailing garbage",
            [good.as_slice(), &[0x00]].concat(),
            DecodeError::BadCbor
        ),
        (
            "oversized",
            std::vec![0x9f; MAX_PAYLOAD_BYTES + 1],
            DecodeError::TooLarge
        ),
        ("empty", std::vec![], DecodeError::Empty),
        ("whitespace", b"  \n".to_vec(), DecodeError::Empty),
        (
            "neither format",
            b"pm2_5=41".to_vec(),
            DecodeError::UnknownFormat
        ),
        (
            "malformed json",
            br#"[{"n":"pm2_5","v":}]"#.to_vec(),
            DecodeError::BadJson
        ),
        (
            "json object not pack",
            br#"[1,2]"#.to_vec(),
            DecodeError::BadJson
        ),
        (
            "json trailing",
            br#"[{"n":"pm2_5","v":1}] x"#.to_vec(),
            DecodeError::BadJson
        ),
        ("empty pack", b"[]".to_vec(), DecodeError::BadRecordCount),
        (
            "nan",
            cbor_pack(&[&[bn, bt, (0, Text("pm2_5")), (2, Float(f64::NAN))]]),
            DecodeError::NotFinite
        ),
        (
            "infinite",
            cbor_pack(&[&[bn, bt, (0, Text("pm2_5")), (2, Float(f64::INFINITY))]]),
            DecodeError::NotFinite
        ),
        (
            "huge json number",
            br#"[{"n":"pm2_5","v":1e999}]"#.to_vec(),
            DecodeError::BadJson
        ),
        (
            "unknown quantity",
            cbor_pack(&[&[bn, bt, (0, Text("radon")), (2, Float(1.0))]]),
            DecodeError::UnknownQuantity
        ),
        (
            "unit mismatch",
            cbor_pack(&[&[
                bn,
                bt,
                (0, Text("pm2_5")),
                (1, Text("mg/m3")),
                (2, Float(1.0))
            ]]),
            DecodeError::UnitMismatch
        ),
        (
            "wrong known unit",
            cbor_pack(&[&[bn, bt, (0, Text("no2")), (1, Text("Cel")), (2, Float(1.0))]]),
            DecodeError::UnitMismatch
        ),
        (
            "future",
            cbor_pack(&[&[
                bn,
                (-3, Int(NOW.0 + MAX_FUTURE_SKEW_S + 1)),
                (0, Text("no2")),
                (2, Float(1.0))
            ]]),
            DecodeError::TimeInFuture
        ),
        (
            "unset clock",
            cbor_pack(&[&[
                bn,
                (-3, Int(300_000_000)),
                (0, Text("no2")),
                (2, Float(1.0))
            ]]),
            DecodeError::TimeTooOld
        ),
        (
            "other post",
            cbor_pack(&[&[
                (-2, Text("urn:dev:post:almaty-002:")),
                bt,
                (0, Text("no2")),
                (2, Float(1.0))
            ]]),
            DecodeError::PostMismatch
        ),
        (
            "bad base name",
            cbor_pack(&[&[
                (-2, Text("urn:dev:mac:0024befffe804ff1:")),
                bt,
                (0, Text("no2")),
                (2, Float(1.0))
            ]]),
            DecodeError::BadName
        ),
        (
            "no name",
            cbor_pack(&[&[bt, (2, Float(1.0))]]),
            DecodeError::MissingName
        ),
        (
            "no value",
            cbor_pack(&[&[bn, bt, (0, Text("no2"))]]),
            DecodeError::MissingValue
        ),
        (
            "string value",
            cbor_pack(&[&[bn, bt, (0, Text("no2")), (3, Text("high"))]]),
            DecodeError::UnsupportedValue
        ),
        (
            "must understand",
            br#"[{"n":"no2","v":1,"crit_":1}]"#.to_vec(),
            DecodeError::MustUnderstand
        ),
        (
            "zero window",
            br#"[{"n":"no2","v":1,"t":-5,"win":0}]"#.to_vec(),
            DecodeError::BadWindow
        ),
    ];
    for (what, bytes, want) in cases {
        assert_eq!(decode(&bytes, &a, NOW), Err(want), "{what}");
    }
}

#[test]
fn the_65th_record_is_refused() {
    let one = r#"{"n":"pm2_5","v":1}"#;
    let ok = std::format!("[{}]", std::vec![one; MAX_RECORDS].join(","));
    let too_many = std::format!("[{}]", std::vec![one; MAX_RECORDS + 1].join(","));
    assert_eq!(
        decode(ok.as_bytes(), &post("a"), NOW).map(|t| t.readings.len()),
        Ok(MAX_RECORDS)
    );
    assert_eq!(
        decode(too_many.as_bytes(), &post("a"), NOW),
        Err(DecodeError::BadRecordCount)
    );
}

#[test]
fn json_escapes_in_names_are_decoded() {
    let json = br#"[{"bn":"urn:dev:post:a:","n":"pm\u0032_5","v":3,"t":-1}]"#;
    assert_eq!(
        decode(json, &post("a"), NOW).unwrap().readings[0].quantity,
        Quantity::Pm2_5
    );
}

#[test]
fn cbor_is_smaller_than_json_for_an_air_record() {
    let at = UnixSeconds(1_767_225_600);
    let readings = [
        Measurement {
            quantity: Quantity::Pm2_5,
            value: 41.25,
            at,
            flags: QaFlags::NONE,
            window_s: None,
        },
        Measurement {
            quantity: Quantity::No2,
            value: 63.0,
            at,
            flags: QaFlags::NONE,
            window_s: None,
        },
        Measurement {
            quantity: Quantity::Temperature,
            value: -7.5,
            at,
            flags: QaFlags::NONE,
            window_s: None,
        },
    ];
    let mut buf = [0u8; 256];
    let n = encode(&post("almaty-001"), &readings, &mut buf).unwrap();
    let json = encode_json(&post("almaty-001"), &readings);
    assert!(n < json.len(), "cbor {n} json {}", json.len());
    assert_eq!(
        decode(&buf[..n], &post("almaty-001"), NOW)
            .unwrap()
            .readings
            .as_slice(),
        &readings
    );
    assert_eq!(
        decode(json.as_bytes(), &post("almaty-001"), NOW)
            .unwrap()
            .readings
            .as_slice(),
        &readings
    );
}

#[test]
fn encoding_into_a_small_buffer_fails_cleanly() {
    let m = Measurement {
        quantity: Quantity::Pm2_5,
        value: 1.0,
        at: NOW,
        flags: QaFlags::NONE,
        window_s: None,
    };
    let mut buf = [0u8; 10];
    assert_eq!(
        encode(&post("a"), &[m], &mut buf),
        Err(EncodeError::BufferTooSmall)
    );
    assert_eq!(
        encode(&post("a"), &[], &mut buf),
        Err(EncodeError::BadRecordCount)
    );
}

fn any_quantity() -> impl Strategy<Value = Quantity> {
    prop::sample::select(Quantity::ALL.to_vec())
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity_for_every_quantity(
        readings in prop::collection::vec(
            (any_quantity(), -1.0e6f64..1.0e6, -86_400i64..0, any::<u16>(), prop::option::of(1u32..100_000)),
            1..MAX_RECORDS,
        )
    ) {
        let readings: std::vec::Vec<Measurement> = readings
            .into_iter()
            .map(|(quantity, value, dt, flags, window_s)| Measurement { quantity, value, at: NOW.offset(dt), flags: QaFlags(flags), window_s })
            .collect();
        let mut buf = [0u8; MAX_PAYLOAD_BYTES];
        let n = encode(&post("p-1"), &readings, &mut buf).unwrap();
        let back = decode(&buf[..n], &post("p-1"), NOW).unwrap();
        prop_assert_eq!(back.readings.as_slice(), readings.as_slice());
        let json = encode_json(&post("p-1"), &readings);
        let back = decode(json.as_bytes(), &post("p-1"), NOW).unwrap();
        prop_assert_eq!(back.readings.as_slice(), readings.as_slice());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes, &post("a"), NOW);
        let _ = crate::status::decode(&bytes);
    }

    #[test]
    fn corrupting_one_byte_of_a_valid_pack_never_panics(pos in 0usize..64, byte in any::<u8>()) {
        let m = Measurement { quantity: Quantity::No2, value: 12.5, at: NOW, flags: QaFlags::NONE, window_s: None };
        let mut buf = [0u8; 128];
        let n = encode(&post("a"), &[m, m], &mut buf).unwrap();
        buf[pos % n] = byte;
        let _ = decode(&buf[..n], &post("a"), NOW);
    }
}
