//! The post firmware as real cross-compiled code: `firmware/qemu-mps2` is built for
//! `thumbv7em-none-eabihf` and booted in Debian's `qemu-system-arm` (`-machine mps2-an386`,
//! Cortex-M4). This test is its PMS5003: QEMU's second UART is a TCP chardev it listens on, and
//! it answers every passive-mode read command with a real 32-byte frame (correct checksum),
//! with line noise, a truncated frame or a frame with a bad checksum in front to exercise the
//! parser's resync. The firmware averages 5 s windows of 1 s samples with the core's sampler and
//! prints each SenML CBOR pack as `REC <hex>` on the console UART (QEMU's stdout). The test
//! decodes them with `protocol`'s decoder and checks every window mean against the frames it
//! served, and that QEMU exited 0 through semihosting. It also prints the image's flash and RAM
//! use, read from the ELF's section headers.
//!
//! Without `qemu-system-arm` or the `thumbv7em-none-eabihf` target the test prints a loud
//! SKIPPED banner, or fails when `TAZA_REQUIRE_QEMU=1` (CI: `apt-get install qemu-system-arm`,
//! `rustup target add thumbv7em-none-eabihf`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::{PostId, QaFlags, Quantity, UnixSeconds};

const QEMU: &str = "/usr/bin/qemu-system-arm";
const TARGET: &str = "thumbv7em-none-eabihf";
/// The firmware's post id and windows printed before `DONE` (firmware/qemu-mps2/src/main.rs).
const POST_ID: &str = "qemu-001";
const WINDOWS: usize = 3;
const WINDOW_S: i64 = 5;
/// The firmware needs ~16 s; this only stops a hung guest from hanging CI.
const QEMU_DEADLINE: Duration = Duration::from_secs(120);
/// memory.x: 4 MiB ZBT SSRAM1 as flash, 4 MiB SSRAM2&3 as RAM.
const FLASH_CAPACITY: u64 = 4 << 20;
const RAM_CAPACITY: u64 = 4 << 20;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn say(text: &str) {
    // Straight to stderr, past the test harness's capture: CI logs show it for passing tests too.
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Whether the rust standard library for `thumbv7em-none-eabihf` is installed.
fn target_installed() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            Path::new(String::from_utf8_lossy(&o.stdout).trim())
                .join("lib/rustlib")
                .join(TARGET)
                .is_dir()
        })
        .unwrap_or(false)
}

/// Whether QEMU and the target are there; when not, panics if CI requires them
/// (`TAZA_REQUIRE_QEMU=1`), else prints a loud SKIPPED banner and returns false.
fn qemu_available(test: &str) -> bool {
    let mut missing = Vec::new();
    if !Path::new(QEMU).exists() {
        missing.push(format!("{QEMU} (apt-get install qemu-system-arm)"));
    }
    if !target_installed() {
        missing.push(format!("rust target {TARGET} (rustup target add {TARGET})"));
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("TAZA_REQUIRE_QEMU").as_deref() != Ok("1"),
        "{test}: TAZA_REQUIRE_QEMU=1 but missing: {missing:?}"
    );
    say(&format!(
        "\n######## SKIPPED {test}: missing {missing:?} (CI installs them) ########\n"
    ));
    false
}

/// Builds the firmware into `<this test's target dir>/qemu-mps2` and returns the ELF.
fn build_firmware() -> PathBuf {
    let crate_dir = repo().join("firmware/qemu-mps2");
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target tmp dir has a parent")
        .join("qemu-mps2");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&crate_dir)
        .args(["build", "--release", "--locked", "--target", TARGET])
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .expect("run cargo");
    assert!(status.success(), "building firmware/qemu-mps2 failed");
    target_dir.join(TARGET).join("release/taza-firmware-qemu")
}

/// Flash and RAM an ELF32 image uses, from its section headers: flash = allocated sections
/// with contents (vector table, text, rodata, the load image of data), RAM = allocated writable
/// sections (data, bss, uninit). The stack takes the rest of RAM and is not counted.
struct Footprint {
    flash_bytes: u64,
    ram_bytes: u64,
    sections: Vec<(String, u64, bool, bool)>,
}

fn footprint(elf: &[u8]) -> Footprint {
    const SHF_WRITE: u32 = 0x1;
    const SHF_ALLOC: u32 = 0x2;
    const SHT_NOBITS: u32 = 8;
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 1, "not ELF32");
    assert_eq!(elf[5], 1, "not little-endian");
    let shoff = u32_at(0x20) as usize;
    let shentsize = usize::from(u16_at(0x2E));
    let shnum = usize::from(u16_at(0x30));
    let shstrndx = usize::from(u16_at(0x32));
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u32_at(header(shstrndx) + 0x10) as usize;
    let name = |off: usize| {
        let s = &elf[strtab + off..];
        String::from_utf8_lossy(&s[..s.iter().position(|b| *b == 0).unwrap()]).into_owned()
    };
    let mut fp = Footprint {
        flash_bytes: 0,
        ram_bytes: 0,
        sections: Vec::new(),
    };
    for i in 0..shnum {
        let h = header(i);
        let (kind, flags, size) = (u32_at(h + 4), u32_at(h + 8), u64::from(u32_at(h + 0x14)));
        if flags & SHF_ALLOC == 0 || size == 0 {
            continue;
        }
        let in_flash = kind != SHT_NOBITS;
        let in_ram = flags & SHF_WRITE != 0;
        fp.flash_bytes += if in_flash { size } else { 0 };
        fp.ram_bytes += if in_ram { size } else { 0 };
        fp.sections
            .push((name(u32_at(h) as usize), size, in_flash, in_ram));
    }
    fp
}

/// Mass concentrations (µg/m³) of one frame: the atmospheric channel the firmware publishes.
#[derive(Debug, Clone, Copy)]
struct FramePm {
    pm1: u16,
    pm2_5: u16,
    pm10: u16,
}

/// The `k`-th frame's values: PM1 rises (so each window's mean pins down which frames it
/// holds), PM2.5 wanders (never stuck), PM10 falls.
fn frame_pm(k: u16) -> FramePm {
    FramePm {
        pm1: 5 + 3 * k,
        pm2_5: 20 + (7 * k) % 13,
        pm10: 240 - 5 * k,
    }
}

/// A PMS5003 data frame (datasheet "Appendix I"): `0x42 0x4D`, length 28, 13 big-endian
/// words, checksum = sum of the 30 bytes before it. CF=1 is set 2 µg/m³ above atmospheric so a
/// firmware publishing the wrong channel fails the means.
fn pms_frame(pm: FramePm) -> [u8; 32] {
    let words: [u16; 13] = [
        pm.pm1 + 2,
        pm.pm2_5 + 2,
        pm.pm10 + 2,
        pm.pm1,
        pm.pm2_5,
        pm.pm10,
        1200,
        350,
        80,
        9,
        3,
        1,
        0x9700,
    ];
    let mut f = [0u8; 32];
    f[..4].copy_from_slice(&[0x42, 0x4D, 0x00, 0x1C]);
    for (i, w) in words.iter().enumerate() {
        f[4 + 2 * i..6 + 2 * i].copy_from_slice(&w.to_be_bytes());
    }
    let sum: u16 = f[..30].iter().map(|b| u16::from(*b)).sum();
    f[30..].copy_from_slice(&sum.to_be_bytes());
    f
}

/// What goes on the wire in front of frame `k`: nothing, line noise with a stray start byte,
/// the first half of the previous frame (cut off), or a whole frame with a broken checksum
/// carrying absurd values (accepting it would wreck the means).
fn noise_before(k: u16) -> Vec<u8> {
    match k % 4 {
        0 => Vec::new(),
        1 => vec![0x00, 0xFF, 0x42, 0x13, 0x4D],
        2 => pms_frame(frame_pm(k - 1))[..17].to_vec(),
        _ => {
            let mut bad = pms_frame(FramePm {
                pm1: 900,
                pm2_5: 900,
                pm10: 900,
            });
            bad[31] ^= 0x01;
            bad.to_vec()
        }
    }
}

const CMD_WAKE: [u8; 7] = [0x42, 0x4D, 0xE4, 0x00, 0x01, 0x01, 0x74];
const CMD_PASSIVE_MODE: [u8; 7] = [0x42, 0x4D, 0xE1, 0x00, 0x00, 0x01, 0x70];
const CMD_READ_PASSIVE: [u8; 7] = [0x42, 0x4D, 0xE2, 0x00, 0x00, 0x01, 0x71];

/// What the simulated sensor saw and sent.
#[derive(Default)]
struct SensorLog {
    commands: Vec<[u8; 7]>,
    served: Vec<FramePm>,
}

/// How the simulated sensor behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SensorMode {
    /// Noise, then a good frame, per passive read.
    Healthy,
    /// Only frames whose checksum is wrong (a failing sensor or a broken line).
    BadChecksums,
}

/// The simulated PMS5003 in passive mode: reads 7-byte host commands (checked: start bytes and
/// LRC), answers each passive read with noise and the next frame.
fn run_sensor(mut uart: TcpStream, mode: SensorMode, log: Arc<Mutex<SensorLog>>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        let n = match uart.read(&mut buf) {
            Ok(0) | Err(_) => return, // QEMU exited
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while pending.len() >= 7 {
            if pending[..2] != [0x42, 0x4D] {
                pending.remove(0);
                continue;
            }
            let cmd: [u8; 7] = pending[..7].try_into().unwrap();
            pending.drain(..7);
            let lrc: u16 = cmd[..5].iter().map(|b| u16::from(*b)).sum();
            assert_eq!(
                cmd[5..],
                lrc.to_be_bytes(),
                "command {cmd:02x?} has a bad LRC"
            );
            let mut log = log.lock().unwrap();
            log.commands.push(cmd);
            if cmd == CMD_READ_PASSIVE {
                let k = u16::try_from(log.served.len()).unwrap();
                let pm = frame_pm(k);
                let mut reply = noise_before(k);
                let mut frame = pms_frame(pm);
                if mode == SensorMode::BadChecksums {
                    frame[31] ^= 0x01;
                }
                reply.extend_from_slice(&frame);
                log.served.push(pm);
                drop(log);
                if uart.write_all(&reply).is_err() {
                    return;
                }
            }
        }
    }
}

fn hex_decode(hex: &str) -> Vec<u8> {
    assert!(hex.len() % 2 == 0, "odd-length hex: {hex}");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Splits the served frames into consecutive windows whose means are `window_pm1`: PM1 rises
/// frame by frame, so the mean of the next n frames rises with n and at most one n fits.
fn partition(served: &[FramePm], window_pm1: &[f64]) -> Vec<std::ops::Range<usize>> {
    let mut start = 0;
    window_pm1
        .iter()
        .map(|target| {
            let n = (1..=served.len() - start)
                .find(|n| {
                    let mean = served[start..start + n]
                        .iter()
                        .map(|f| f64::from(f.pm1))
                        .sum::<f64>()
                        / *n as f64;
                    (mean - target).abs() < 1e-3
                })
                .unwrap_or_else(|| {
                    panic!(
                        "no run of frames from #{start} averages PM1 {target}; served {served:?}"
                    )
                });
            let range = start..start + n;
            start += n;
            range
        })
        .collect()
}

/// What one QEMU run left behind.
struct QemuRun {
    status: std::process::ExitStatus,
    stderr: String,
    console: Vec<String>,
    sensor: SensorLog,
}

/// Boots `elf` in QEMU with the simulated sensor on the second UART; returns when QEMU exits.
fn run_qemu(elf_path: &Path, mode: SensorMode) -> QemuRun {
    // QEMU connects to the simulated sensor's port at start-up (a chardev socket client).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(SensorLog::default()));
    let sensor_log = log.clone();
    std::thread::spawn(move || {
        if let Ok((uart, _)) = listener.accept() {
            run_sensor(uart, mode, sensor_log);
        }
    });

    let mut qemu = Command::new(QEMU)
        .args(["-machine", "mps2-an386", "-nographic", "-monitor", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .args(["-serial", "stdio"])
        .arg("-chardev")
        .arg(format!("socket,id=pms,host=127.0.0.1,port={port}"))
        .args(["-serial", "chardev:pms"])
        .arg("-kernel")
        .arg(elf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu-system-arm");
    let (line_tx, line_rx) = mpsc::channel::<String>();
    let stdout = qemu.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if line_tx.send(line).is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = qemu.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > QEMU_DEADLINE {
            let _ = qemu.kill();
            let _ = qemu.wait();
            let out: Vec<String> = line_rx.try_iter().collect();
            panic!(
                "QEMU still running after {QEMU_DEADLINE:?}; console:\n{}",
                out.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    let _ = qemu.stderr.take().unwrap().read_to_string(&mut stderr);
    // The reader thread ends at EOF once QEMU is gone; collect everything it read.
    let console: Vec<String> = line_rx.iter().map(|l| l.trim_end().to_owned()).collect();
    say(&format!(
        "QEMU console, sensor {mode:?} ({:.1} s):\n{}",
        started.elapsed().as_secs_f64(),
        console.join("\n")
    ));
    let sensor = std::mem::take(&mut *log.lock().unwrap());
    QemuRun {
        status,
        stderr,
        console,
        sensor,
    }
}

/// Builds the image once per test binary (the two tests may run in parallel) and prints its
/// footprint.
fn firmware() -> &'static Path {
    static ELF: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ELF.get_or_init(|| {
        let elf_path = build_firmware();
        let elf = std::fs::read(&elf_path).unwrap();
        let fp = footprint(&elf);
        say(&format!(
            "firmware/qemu-mps2 image {}:\n  flash (text + rodata + data): {} bytes\n  RAM (data + bss): {} bytes",
            elf_path.display(),
            fp.flash_bytes,
            fp.ram_bytes
        ));
        for (name, size, in_flash, in_ram) in &fp.sections {
            let place = match (in_flash, in_ram) {
                (true, true) => "flash+RAM",
                (true, false) => "flash",
                (false, true) => "RAM",
                (false, false) => "-",
            };
            say(&format!("  {name:<20} {size:>8} bytes  {place}"));
        }
        assert!(fp.flash_bytes > 0 && fp.flash_bytes <= FLASH_CAPACITY);
        assert!(fp.ram_bytes > 0 && fp.ram_bytes <= RAM_CAPACITY);
        elf_path
    })
}

#[test]
fn firmware_in_qemu_reads_the_pms_uart_and_publishes_window_means() {
    let test = "firmware_in_qemu_reads_the_pms_uart_and_publishes_window_means";
    if !qemu_available(test) {
        return;
    }
    let QemuRun {
        status,
        stderr,
        console,
        sensor: log,
    } = run_qemu(firmware(), SensorMode::Healthy);
    assert!(
        status.success(),
        "QEMU exited with {status}; stderr: {stderr}; console:\n{}",
        console.join("\n")
    );
    assert_eq!(console.last().map(String::as_str), Some("DONE"));

    let boot = console
        .iter()
        .find_map(|l| l.strip_prefix("BOOT unix="))
        .expect("the firmware prints its boot time")
        .parse::<i64>()
        .unwrap();
    let post = PostId::parse(POST_ID).unwrap();
    // The decoder judges future skew against "now": the guest clock starts at `boot`.
    let now = UnixSeconds(boot + 3600);
    let packs: Vec<Vec<u8>> = console
        .iter()
        .filter_map(|l| l.strip_prefix("REC "))
        .map(hex_decode)
        .collect();
    assert_eq!(packs.len(), WINDOWS, "one REC line per window");

    let mut window_ends = Vec::new();
    let mut means: Vec<[f64; 3]> = Vec::new();
    for pack in &packs {
        let telemetry = protocol::senml::decode(pack, &post, now).unwrap();
        assert_eq!(telemetry.post, post);
        let quantities: Vec<Quantity> = telemetry.readings.iter().map(|m| m.quantity).collect();
        assert_eq!(
            quantities,
            [Quantity::Pm1, Quantity::Pm2_5, Quantity::Pm10],
            "the PMS5003's three quantities"
        );
        // The decoder refuses a unit that does not match the quantity; check the wire too.
        let unit = b"ug/m3";
        let units_on_wire = pack.windows(unit.len()).filter(|w| w == unit).count();
        assert_eq!(units_on_wire, 3, "every record carries u = ug/m3");
        for m in &telemetry.readings {
            assert_eq!(m.quantity.unit().as_str(), "ug/m3");
            assert_eq!(
                m.flags,
                QaFlags::NONE,
                "{:?}: clean frames, no flags",
                m.quantity
            );
            assert_eq!(m.window_s, None);
        }
        let at: Vec<i64> = telemetry.readings.iter().map(|m| m.at.0).collect();
        assert!(at.iter().all(|t| *t == at[0]), "one time per window");
        window_ends.push(at[0]);
        let v: Vec<f64> = telemetry.readings.iter().map(|m| m.value).collect();
        means.push([v[0], v[1], v[2]]);
    }
    for (i, end) in window_ends.iter().enumerate() {
        assert_eq!(
            (end - boot) % WINDOW_S,
            0,
            "window {i} ends on a {WINDOW_S} s boundary"
        );
        assert!(*end > boot, "window {i} ends after boot");
        if i > 0 {
            assert!(*end > window_ends[i - 1], "windows come in time order");
        }
    }

    // The core's PMS driver wakes the sensor and sets passive mode, then asks for each frame.
    assert_eq!(log.commands[..2], [CMD_WAKE, CMD_PASSIVE_MODE]);
    assert!(log.commands[2..].iter().all(|c| *c == CMD_READ_PASSIVE));
    assert_eq!(log.commands.len() - 2, log.served.len());

    let pm1: Vec<f64> = means.iter().map(|m| m[0]).collect();
    let windows = partition(&log.served, &pm1);
    for (i, (frames, got)) in windows.iter().zip(&means).enumerate() {
        let served = &log.served[frames.clone()];
        let mean = |f: fn(&FramePm) -> u16| {
            served.iter().map(|p| f64::from(f(p))).sum::<f64>() / served.len() as f64
        };
        let want = [mean(|p| p.pm1), mean(|p| p.pm2_5), mean(|p| p.pm10)];
        say(&format!(
            "window {i}: frames {frames:?}, PM1/PM2.5/PM10 means {want:?} µg/m³, published {got:?}"
        ));
        for (q, (w, g)) in ["pm1", "pm2_5", "pm10"].iter().zip(want.iter().zip(got)) {
            assert!(
                (w - g).abs() < 1e-3,
                "window {i} {q}: frames average {w}, record says {g}"
            );
        }
    }
}

#[test]
fn firmware_in_qemu_exits_non_zero_when_every_frame_fails_its_checksum() {
    let test = "firmware_in_qemu_exits_non_zero_when_every_frame_fails_its_checksum";
    if !qemu_available(test) {
        return;
    }
    let run = run_qemu(firmware(), SensorMode::BadChecksums);
    let console = run.console.join("\n");
    assert_eq!(
        run.status.code(),
        Some(1),
        "semihosting EXIT_FAILURE; console:\n{console}"
    );
    assert!(
        !console.contains("REC "),
        "no record from bad frames:\n{console}"
    );
    assert!(!console.contains("DONE"));
    assert!(
        run.console
            .iter()
            .any(|l| l.starts_with("FAILED run: ") && l.contains("failed sensor polls")),
        "the firmware says why it failed:\n{console}"
    );
    // It kept asking (and re-initialised the sensor after three failures) before giving up.
    assert!(
        run.sensor.served.len() >= 3,
        "frames served: {}",
        run.sensor.served.len()
    );
    assert!(
        run.sensor
            .commands
            .iter()
            .filter(|c| **c == CMD_WAKE)
            .count()
            >= 2
    );
}
