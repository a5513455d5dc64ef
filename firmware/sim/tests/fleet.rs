//! The simulated fleet against a real broker: Debian's Mosquitto on a free port, a plain
//! rumqttc subscriber, and the sim's own posts. Waits on events (SUBACK, received messages)
//! with deadlines; never sleeps for a fixed time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use protocol::post_config::PostConfig;
use protocol::topic::{self, TopicKind};
use protocol::{PostId, Quantity, UnixSeconds};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use taza_sim::{Fleet, Outage, PostKind, SimOptions};

mod support;
use support::{mosquitto_available, unix_now, Broker};

#[test]
fn fleet_publishes_senml_through_a_real_broker_and_a_cut_off_post_replays_its_backlog_in_order() {
    // The same fleet also runs through the gateway's embedded broker in tests/fleet_to_gateway.rs.
    if !mosquitto_available("fleet_publishes_senml_through_a_real_broker") {
        return;
    }
    let broker = Broker::start();
    let rt = support::runtime();
    rt.block_on(async {
        let prefix = "simtest";
        let mut opts = MqttOptions::new(
            format!("sub-{}", std::process::id()),
            "127.0.0.1",
            broker.port,
        );
        opts.set_max_packet_size(64 * 1024, 64 * 1024);
        let (sub, mut events) = AsyncClient::new(opts, 1000);
        sub.subscribe(
            topic::filter(prefix, TopicKind::Telemetry)
                .unwrap()
                .as_str(),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
        sub.subscribe(
            topic::filter(prefix, TopicKind::Status).unwrap().as_str(),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
        let mut subacks = 0;
        while subacks < 2 {
            if let Event::Incoming(Packet::SubAck(_)) =
                tokio::time::timeout(Duration::from_secs(10), events.poll())
                    .await
                    .unwrap()
                    .unwrap()
            {
                subacks += 1;
            }
        }

        let fleet = Fleet::default_almaty(42).limit(2, 1);
        let posts: Vec<_> = fleet.posts().to_vec();
        let cut = posts[0].id.clone();
        // Six hours ago, on a whole minute: windows are epoch-aligned.
        let start = UnixSeconds((unix_now() - 6 * 3600) / 60 * 60);
        let (outage_from, outage_to) = (start.offset(300), start.offset(900));
        let options = SimOptions {
            rate: 120.0,
            start: Some(start),
            config: PostConfig {
                sample_interval_s: 10,
                window_s: 60,
                warm_up_s: 60,
                ..PostConfig::default()
            },
            faults: false,
            outages: vec![Outage {
                post: cut.clone(),
                from: outage_from,
                to: outage_to,
            }],
            ..SimOptions::default()
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let sim = tokio::spawn(taza_sim::run(
            fleet,
            "127.0.0.1",
            broker.port,
            prefix,
            options,
            async {
                let _ = stop_rx.await;
            },
        ));

        // Collect until the cut-off post has reported well past its outage and everyone has data.
        let mut times: BTreeMap<PostId, Vec<UnixSeconds>> = BTreeMap::new();
        let mut quantities: BTreeMap<PostId, BTreeSet<Quantity>> = BTreeMap::new();
        let mut went_offline = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        let done = |times: &BTreeMap<PostId, Vec<UnixSeconds>>| {
            posts
                .iter()
                .all(|p| times.get(&p.id).is_some_and(|t| t.len() >= 3))
                && times
                    .get(&cut)
                    .and_then(|t| t.last())
                    .is_some_and(|t| *t >= outage_to.offset(240))
        };
        while !done(&times) {
            let Ok(ev) = tokio::time::timeout_at(deadline, events.poll()).await else {
                panic!("no complete data within 90 s; got {times:?}");
            };
            let ev = ev.unwrap();
            let Event::Incoming(Packet::Publish(p)) = ev else {
                continue;
            };
            let (post, kind) = topic::parse(prefix, &p.topic).unwrap();
            match kind {
                TopicKind::Telemetry => {
                    let t = protocol::senml::decode(&p.payload, &post, UnixSeconds(unix_now()))
                        .unwrap();
                    let at = t.readings[0].at;
                    assert!(t.readings.iter().all(|r| r.at == at), "one window per pack");
                    times.entry(post.clone()).or_default().push(at);
                    quantities
                        .entry(post)
                        .or_default()
                        .extend(t.readings.iter().map(|r| r.quantity));
                }
                TopicKind::Status => {
                    let s = protocol::status::decode(&p.payload).unwrap();
                    if post == cut && !s.online {
                        went_offline = true;
                    }
                }
                TopicKind::Config => {}
            }
        }
        let _ = stop_tx.send(());
        let report = tokio::time::timeout(Duration::from_secs(20), sim)
            .await
            .unwrap()
            .unwrap()
            .unwrap();

        for p in &posts {
            let got = &quantities[&p.id];
            let want: &[Quantity] = match p.kind {
                PostKind::Air => &[
                    Quantity::Pm2_5,
                    Quantity::Pm10,
                    Quantity::No2,
                    Quantity::Temperature,
                    Quantity::Humidity,
                ],
                PostKind::River => &[
                    Quantity::WaterLevel,
                    Quantity::Turbidity,
                    Quantity::Ph,
                    Quantity::DissolvedOxygen,
                ],
            };
            for q in want {
                assert!(got.contains(q), "{} lacks {q}: {got:?}", p.id);
            }
        }
        let cut_times = &times[&cut];
        assert!(
            cut_times.windows(2).all(|w| w[0] <= w[1]),
            "replay out of order: {cut_times:?}"
        );
        let mut unique = cut_times.clone();
        unique.dedup();
        assert!(
            unique.windows(2).all(|w| w[1].0 - w[0].0 == 60),
            "gap in the replayed series: {unique:?}"
        );
        assert!(
            unique
                .iter()
                .any(|t| (outage_from.offset(60)..outage_to).contains(t)),
            "windows from the outage arrived"
        );
        assert!(
            went_offline,
            "the broker published the cut-off post's last will"
        );
        let cut_report = report.posts.iter().find(|r| r.id == cut).unwrap();
        assert!(cut_report.reconnects >= 1, "{cut_report:?}");
        assert_eq!(cut_report.dropped, 0);
    });
}

#[test]
fn backfill_packs_cover_every_hour_with_at_most_max_records() {
    let fleet = Fleet::default_almaty(3);
    let model = taza_sim::Model::new(3, fleet.lez, None, false);
    let post = &fleet.posts()[0];
    let until = UnixSeconds(1_767_225_600);
    let packs = taza_sim::backfill::packs(&model, post, until, 2).unwrap();
    let mut hours = Vec::new();
    for p in &packs {
        let t = protocol::senml::decode(p, &post.id, until).unwrap();
        assert!(t.readings.len() <= protocol::senml::MAX_RECORDS);
        hours.extend(
            t.readings
                .iter()
                .filter(|r| r.quantity == Quantity::Pm2_5)
                .map(|r| r.at),
        );
    }
    assert_eq!(hours.len(), 48);
    assert!(hours.windows(2).all(|w| w[1].0 - w[0].0 == 3600));
    assert_eq!(hours.last(), Some(&until));
}
