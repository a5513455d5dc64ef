//! History backfill: hourly means from the model for the days before the live run, published
//! on each post's telemetry topic with their original timestamps, several hours per SenML pack
//! (at most `protocol::senml::MAX_RECORDS` records). It stands for a post uploading the history
//! kept on its SD card, and gives the gateway a year of data to score against the city targets.

use std::time::Duration as StdDuration;

use anyhow::{anyhow, Context};
use protocol::senml::MAX_RECORDS;
use protocol::topic::{self, TopicKind};
use protocol::{Measurement, QaFlags, Quantity, UnixSeconds};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::fleet::{PostDescriptor, PostKind};
use crate::model::Model;

const HOUR_S: i64 = 3600;

/// The hourly records of `post` for the hour ending at `end`.
pub fn hourly(model: &Model, post: &PostDescriptor, end: UnixSeconds) -> Vec<Measurement> {
    let mid = end.offset(-HOUR_S / 2);
    let m = |quantity, value: f64| Measurement {
        quantity,
        value: f64::from(value as f32),
        at: end,
        flags: QaFlags::NONE,
        // An hourly mean: it covers the whole hour for data capture.
        window_s: Some(HOUR_S as u32),
    };
    match post.kind {
        PostKind::Air => {
            let a = model.air(post, mid);
            vec![
                m(Quantity::Pm1, a.pm1_ug_m3),
                m(Quantity::Pm2_5, a.pm2_5_ug_m3),
                m(Quantity::Pm10, a.pm10_ug_m3),
                m(Quantity::No2, a.no2_ug_m3),
                m(Quantity::Temperature, a.temperature_c),
                m(Quantity::Humidity, a.humidity_pct),
            ]
        }
        PostKind::River => {
            let r = model.river(post, mid);
            vec![
                m(Quantity::WaterLevel, r.level_cm),
                m(Quantity::WaterTemperature, r.water_temperature_c),
                m(Quantity::Conductivity, r.conductivity_us_cm),
                m(Quantity::Turbidity, r.turbidity_ntu),
                m(Quantity::DissolvedOxygen, r.dissolved_oxygen_mg_l),
                m(Quantity::Ph, r.ph),
            ]
        }
    }
}

/// Encoded packs of `post`'s hourly history for the `days` before `until` (oldest first).
pub fn packs(
    model: &Model,
    post: &PostDescriptor,
    until: UnixSeconds,
    days: u32,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let first_end =
        UnixSeconds((until.0 - i64::from(days) * 24 * HOUR_S).div_euclid(HOUR_S) * HOUR_S + HOUR_S);
    let hours_per_pack = (MAX_RECORDS / post.quantities.len().max(1)).max(1);
    let mut out = Vec::new();
    let mut records = Vec::with_capacity(MAX_RECORDS);
    let mut end = first_end;
    let mut buf = [0u8; protocol::senml::MAX_PAYLOAD_BYTES];
    while end <= until {
        records.extend(hourly(model, post, end));
        let full = records.len() + post.quantities.len() > hours_per_pack * post.quantities.len();
        if full || end.offset(HOUR_S) > until {
            let n = protocol::senml::encode(&post.id, &records, &mut buf)
                .map_err(|e| anyhow!("encode: {e:?}"))?;
            out.push(buf[..n].to_vec());
            records.clear();
        }
        end = end.offset(HOUR_S);
    }
    Ok(out)
}

/// Publishes every post's history and waits for all PUBACKs.
pub async fn publish(
    posts: &[PostDescriptor],
    model: &Model,
    host: &str,
    port: u16,
    prefix: &str,
    until: UnixSeconds,
    days: u32,
) -> anyhow::Result<usize> {
    let mut total = 0;
    for post in posts {
        let packs = packs(model, post, until, days)?;
        let topic = topic::format(prefix, &post.id, TopicKind::Telemetry)
            .map_err(|e| anyhow!("topic: {e:?}"))?;
        let mut opts = MqttOptions::new(format!("{}-backfill", post.id), host, port);
        opts.set_keep_alive(StdDuration::from_secs(30));
        opts.set_inflight(100);
        let (client, mut eventloop) = AsyncClient::new(opts, 128);
        let n = packs.len();
        let topic_s = topic.to_string();
        let sender = tokio::spawn(async move {
            for p in packs {
                client
                    .publish(topic_s.as_str(), QoS::AtLeastOnce, false, p)
                    .await?;
            }
            Ok::<_, rumqttc::ClientError>(client)
        });
        let mut acked = 0;
        while acked < n {
            match tokio::time::timeout(StdDuration::from_secs(30), eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(anyhow!("backfill of {}: {e}", post.id)),
                Err(_) => return Err(anyhow!("backfill of {}: broker silent for 30 s", post.id)),
            }
        }
        let client = sender.await.context("backfill sender")??;
        let _ = client.disconnect().await;
        // Let the DISCONNECT go out.
        let _ = tokio::time::timeout(StdDuration::from_secs(2), eventloop.poll()).await;
        total += n;
    }
    Ok(total)
}
