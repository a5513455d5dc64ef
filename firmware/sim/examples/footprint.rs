//! Footprint report: bytes per encoded air record (SenML CBOR vs JSON) and the RAM the firmware
//! core's buffers take. Run: `cargo run -p taza-sim --example footprint [QUEUE_PACKS]`.

use core::mem::size_of;

use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::channel::Channel;
use embassy_sync::watch::Watch;
use protocol::post_config::PostConfig;
use protocol::{Measurement, PostId, QaFlags, Quantity, UnixSeconds};
use taza_firmware_core::pms::PmsFrameParser;
use taza_firmware_core::sampling::Averager;
use taza_firmware_core::sensor::SampleBatch;
use taza_firmware_core::store::{RamNorFlash, RecordQueue, MAX_RECORD_BYTES};

fn main() {
    let queue_packs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1440);
    let post = PostId::parse("almaty-air-01").expect("valid id");
    let at = UnixSeconds(1_767_225_600);
    let m = |quantity, value| Measurement {
        quantity,
        value,
        at,
        flags: QaFlags::NONE,
        window_s: None,
    };
    let air = [
        m(Quantity::Pm1, 29.0),
        m(Quantity::Pm2_5, 41.25),
        m(Quantity::Pm10, 63.5),
        m(Quantity::No2, 63.0),
        m(Quantity::Temperature, -7.5),
        m(Quantity::Humidity, 78.5),
    ];
    let mut buf = [0u8; 1024];
    let cbor_one = protocol::senml::encode(&post, &air[1..2], &mut buf).expect("fits");
    let cbor = protocol::senml::encode(&post, &air, &mut buf).expect("fits");
    let json_one = protocol::senml::encode_json(&post, &air[1..2]).len();
    let json = protocol::senml::encode_json(&post, &air).len();
    println!("Encoded air window (6 quantities, one time, f32 values):");
    println!("  SenML CBOR: {cbor:>4} bytes   (one pm2_5 record alone: {cbor_one} bytes)");
    println!("  SenML JSON: {json:>4} bytes   (one pm2_5 record alone: {json_one} bytes)");
    println!("  CBOR/JSON:  {:.0} %", 100.0 * cbor as f64 / json as f64);
    println!();
    println!(
        "RAM of the core's structures (size_of, this host; thumbv7em pointers are half as wide):"
    );
    let rows: [(&str, usize); 8] = [
        ("PmsFrameParser", size_of::<PmsFrameParser>()),
        ("SampleBatch", size_of::<SampleBatch>()),
        (
            "Channel<SampleBatch, 16>",
            size_of::<Channel<NoopRawMutex, SampleBatch, 16>>(),
        ),
        ("Averager (10 quantities)", size_of::<Averager>()),
        ("PostConfig", size_of::<PostConfig>()),
        (
            "Watch<PostConfig, 4>",
            size_of::<Watch<NoopRawMutex, PostConfig, 4>>(),
        ),
        (
            "RecordQueue (queue handle + 512 B scratch)",
            size_of::<RecordQueue<RamNorFlash<0>>>(),
        ),
        (
            "uplink buffers (pack 512 + config 512 + status 256)",
            MAX_RECORD_BYTES + 512 + 256,
        ),
    ];
    let mut total = 0;
    for (name, bytes) in rows {
        total += bytes;
        println!("  {name:<52} {bytes:>6} B");
    }
    println!(
        "  {:<52} {total:>6} B",
        "total RAM (queue contents live in flash)"
    );
    println!();
    let per_pack = cbor + 8; // sequential-storage item header and word alignment
    println!(
        "Flash for a queue of {queue_packs} windows: ~{} KiB ({} B per window incl. ~8 B item header);",
        (queue_packs * per_pack).div_ceil(1024),
        per_pack
    );
    println!(
        "  at one window per minute that is {:.1} h of outage without loss.",
        queue_packs as f64 / 60.0
    );
}
