//! The technician's commands as a terminal runs them (the real `gateway` binary of this build),
//! beside a running gateway: `posts add`, `posts provision` (blob on disk, summary and QR on
//! stdout), the simulated post booting from that blob, `posts commission` passing with exit 0,
//! then failing with exit 1 once the post is switched off; `posts list` shows it all.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use taza_sim::single::SinglePostOptions;
use tokio_util::sync::CancellationToken;

use crate::support::{start_gateway, test_config};

async fn cli(data_dir: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("USER", "aigerim")
        .env("LANG", "en_US.UTF-8")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn add_provision_commission_from_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path(), Vec::new(), None);
    config.mqtt.embedded_auth = true;
    let mqtt = config.mqtt.listen;
    let gw = start_gateway(config).await;

    let out = cli(
        dir.path(),
        &[
            "posts",
            "add",
            "--id",
            "riv-cli-01",
            "--kind",
            "river",
            "--name",
            "Есентай / Аль-Фараби",
            "--lat",
            "43.2187",
            "--lon",
            "76.9276",
            "--river",
            "Есентай",
            "--cadence",
            "5s",
            "--sample-interval",
            "1s",
            "--warm-up",
            "0s",
            "--gauge-zero-m",
            "812.4",
            "--instrument",
            "Vegapuls C 11:VG-5521:water_level",
            "--instrument",
            "Aqualabo PONSEL:PS-77:water_temperature,conductivity",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    // Wrong input is refused with every reason, and nothing is written.
    let out = cli(
        dir.path(),
        &[
            "posts",
            "add",
            "--id",
            "riv-cli-02",
            "--kind",
            "river",
            "--name",
            "x",
            "--lat",
            "91",
            "--lon",
            "76.9",
        ],
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("latitude/longitude out of range") && err.contains("needs its river"),
        "{err}"
    );

    let blobs = dir.path().join("blobs");
    let broker = format!("mqtt://{mqtt}");
    let out = cli(
        dir.path(),
        &[
            "posts",
            "provision",
            "riv-cli-01",
            "--out",
            blobs.to_str().unwrap(),
            "--post-broker",
            &broker,
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let printed = stdout(&out);
    assert!(
        printed.contains("paper log:     TAZA1;riv-cli-01;mqtt://127.0.0.1:"),
        "{printed}"
    );
    assert!(printed.contains('█'), "no QR code printed");
    let blob = std::fs::read(blobs.join("riv-cli-01.taza-device.bin")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(blobs.join("riv-cli-01.taza-device.bin"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the blob holds a password: owner only");
    }
    let device = taza_sim::single::load_device_config(&blob).unwrap();
    assert!(
        !printed.contains(device.password.as_str()),
        "password printed"
    );

    let stop = CancellationToken::new();
    let sim_stop = stop.clone();
    let post = tokio::spawn(taza_sim::single::run(
        device,
        SinglePostOptions {
            seed: 3,
            ..SinglePostOptions::default()
        },
        async move { sim_stop.cancelled().await },
    ));
    let out = cli(
        dir.path(),
        &["posts", "commission", "riv-cli-01", "--wait", "60s"],
    )
    .await;
    let report = stdout(&out);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.starts_with("PASS riv-cli-01"), "{report}");
    for check in [
        "status",
        "config",
        "clock",
        "signal",
        "supply",
        "water_level",
        "water_temperature",
        "conductivity",
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(check)),
            "{check}: {report}"
        );
    }
    let out = cli(dir.path(), &["posts", "list"]).await;
    let list = stdout(&out);
    let row = list
        .lines()
        .find(|l| l.starts_with("riv-cli-01"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        row.contains("online") && row.contains("current") && row.contains("issued"),
        "{row}"
    );

    // Switched off: the broker publishes its last will, and commissioning now fails, saying so.
    stop.cancel();
    post.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = cli(
        dir.path(),
        &["posts", "commission", "riv-cli-01", "--wait", "2s"],
    )
    .await;
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.starts_with("FAIL riv-cli-01"), "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains("offline")),
        "{report}"
    );

    let out = cli(dir.path(), &["posts", "audit", "riv-cli-01"]).await;
    let audit = stdout(&out);
    let actions: Vec<&str> = audit
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    assert_eq!(
        actions,
        [
            "add",
            "credentials",
            "provision",
            "commission",
            "commission"
        ],
        "{audit}"
    );
    assert!(audit.lines().all(|l| l.contains("cli:aigerim")), "{audit}");
    gw.running.stop().await;
}
