//! Remote configuration: publishes every post's desired config ([`crate::provision::desired_config`]
//! of its registry entry) retained on `{prefix}/v1/posts/{post}/config`, so a post gets it at
//! every (re)connect. Republished when the registry changes and after every reconnect of this
//! client; a retired post's retained config is cleared. Posts report the hash of the config they
//! run in their status; the API compares it with [`desired_hash`] to show out-of-date posts.
//!
//! Its own MQTT connection (client id `{client_id}-config`, clean session): publishing here never
//! competes with ingest's acknowledgements.

use std::collections::HashMap;
use std::time::Duration;

use protocol::post_config::{self, MAX_CONFIG_BYTES};
use protocol::topic::{self, TopicKind};
use protocol::PostId;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use taza_domain::post::PostEntry;
use taza_domain::registry::Registry;
use taza_ingest::config::MqttConfig;
use taza_ingest::Endpoint;

/// How often the registry is compared with what was published.
const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// The hash of the config the registry wants `entry`'s post to run (None: the entry cannot be
/// expressed as a config; provisioning says why).
pub fn desired_hash(entry: &PostEntry, default_cadence: Duration) -> Option<u32> {
    crate::provision::desired_config(entry, default_cadence)
        .ok()
        .map(|c| c.hash())
}

/// Starts the publisher.
pub fn spawn(
    cfg: MqttConfig,
    endpoint: Endpoint,
    registry: Registry,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let mut options = endpoint.options(format!("{}-config", cfg.client_id), cfg.keep_alive);
    options.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    tokio::spawn(async move {
        // Per post: the hash last published, or None for an entry that is not a valid config
        // (warned about once per change, not every tick).
        let mut published: HashMap<PostId, Option<u32>> = HashMap::new();
        let mut connected = false;
        let mut backoff = Duration::from_millis(100);
        let mut tick = tokio::time::interval(CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected = true;
                        backoff = Duration::from_millis(100);
                        // Retained messages survive in a persistent broker, not necessarily in
                        // the embedded one: publish everything again after every connect.
                        published.clear();
                        sync(&client, &cfg.topic_prefix, &registry, &mut published).await;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if connected {
                            tracing::warn!(error = %e, "config publisher lost the broker");
                        }
                        connected = false;
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(cfg.reconnect_max_backoff);
                    }
                },
                _ = tick.tick(), if connected => {
                    sync(&client, &cfg.topic_prefix, &registry, &mut published).await;
                }
            }
        }
        let _ = client.disconnect().await;
    })
}

/// Publishes what changed since `published`; clears configs of posts no longer in service.
async fn sync(
    client: &AsyncClient,
    prefix: &str,
    registry: &Registry,
    published: &mut HashMap<PostId, Option<u32>>,
) {
    let posts = registry.all();
    for entry in &posts {
        let config = match crate::provision::desired_config(entry, registry.default_cadence()) {
            Ok(c) => c,
            Err(e) => {
                if published.insert(entry.id.clone(), None) != Some(None) {
                    tracing::warn!(error = %e, "post's registry entry is not a valid config");
                }
                continue;
            }
        };
        let hash = config.hash();
        if published.get(&entry.id) == Some(&Some(hash)) {
            continue;
        }
        let mut buf = [0u8; MAX_CONFIG_BYTES];
        let Ok(n) = post_config::encode(&config, &mut buf) else {
            continue;
        };
        let Ok(topic) = topic::format(prefix, &entry.id, TopicKind::Config) else {
            continue;
        };
        let payload = buf.get(..n).unwrap_or(&[]).to_vec();
        match client
            .publish(topic.as_str(), QoS::AtLeastOnce, true, payload)
            .await
        {
            Ok(()) => {
                tracing::info!(post = %entry.id, config = format_args!("{hash:08x}"), "desired config published");
                published.insert(entry.id.clone(), Some(hash));
            }
            Err(e) => tracing::warn!(error = %e, "cannot queue a config publish"),
        }
    }
    let gone: Vec<PostId> = published
        .keys()
        .filter(|id| !posts.iter().any(|p| &p.id == *id))
        .cloned()
        .collect();
    for id in gone {
        if let Ok(topic) = topic::format(prefix, &id, TopicKind::Config) {
            // An empty retained message deletes the retained config.
            if client
                .publish(topic.as_str(), QoS::AtLeastOnce, true, Vec::new())
                .await
                .is_ok()
            {
                published.remove(&id);
            }
        }
    }
}
