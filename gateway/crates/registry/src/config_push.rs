//! Remote configuration: publishes every post's desired config ([`crate::provision::desired_config`]
//! of its registry entry) retained on `{prefix}/v1/posts/{post}/config`, so a post gets it at
//! every (re)connect. Republished when the registry changes and after every reconnect of this
//! client; a retired post's retained config is cleared. Posts report the hash of the config they
//! run in their status; the API compares it with [`desired_hash`] to show out-of-date posts.
//!
//! Its own MQTT connection (client id `{client_id}-config`, clean session): publishing here never
//! competes with ingest's acknowledgements.

use std::collections::{HashMap, VecDeque};
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
/// rumqttc's request channel between this task and its event loop. Full policy: publishes that
/// do not fit wait in [`Publisher::unsent`] until the next poll drains the channel.
const REQUEST_CHANNEL_CAPACITY: usize = 256;
/// How long a stopping publisher keeps polling to get its DISCONNECT out.
const DISCONNECT_FLUSH: Duration = Duration::from_secs(1);

/// The hash of the config the registry wants `entry`'s post to run (None: the entry cannot be
/// expressed as a config; provisioning says why).
pub fn desired_hash(entry: &PostEntry, default_cadence: Duration) -> Option<u32> {
    crate::provision::desired_config(entry, default_cadence)
        .ok()
        .map(|c| c.hash())
}

/// Starts the publisher.
///
/// The event loop is polled on every turn of the task's loop, and publishing never awaits
/// rumqttc's request channel: only polling drains that channel, so awaiting a full one from
/// this same task would stop publishing for good (more posts than the channel holds did).
pub fn spawn(
    cfg: MqttConfig,
    endpoint: Endpoint,
    registry: Registry,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let mut options = endpoint.options(format!("{}-config", cfg.client_id), cfg.keep_alive);
    options.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CHANNEL_CAPACITY);
    let mut publisher = Publisher {
        client,
        prefix: cfg.topic_prefix.clone(),
        published: HashMap::new(),
        unsent: VecDeque::new(),
    };
    tokio::spawn(async move {
        let mut connected = false;
        let mut backoff = Duration::from_millis(100);
        let mut tick = tokio::time::interval(CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if connected {
                publisher.send_unsent();
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected = true;
                        backoff = Duration::from_millis(100);
                        // Retained messages survive in a persistent broker, not necessarily in
                        // the embedded one: publish everything again after every connect.
                        publisher.forget();
                        publisher.sync(&registry);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if connected {
                            tracing::warn!(error = %e, "config publisher lost the broker");
                        }
                        connected = false;
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(cfg.reconnect_max_backoff);
                    }
                },
                _ = tick.tick(), if connected => publisher.sync(&registry),
            }
        }
        if connected && publisher.client.try_disconnect().is_ok() {
            let _ = tokio::time::timeout(DISCONNECT_FLUSH, async {
                while let Ok(event) = eventloop.poll().await {
                    if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                        break;
                    }
                }
            })
            .await;
        }
    })
}

/// What was published, and what is still to hand to rumqttc.
struct Publisher {
    client: AsyncClient,
    prefix: String,
    /// Per post: the hash last handed to rumqttc, or None for an entry that is not a valid
    /// config (warned about once per change, not every tick).
    published: HashMap<PostId, Option<u32>>,
    /// Publishes the request channel had no room for yet, oldest first. A sync is made only
    /// when this is empty, so it holds at most one message per post (and per retired post).
    unsent: VecDeque<Unsent>,
}

/// One retained message waiting for room in the request channel.
struct Unsent {
    post: PostId,
    topic: String,
    /// The config's hash; None: an empty message clearing a retired post's retained config.
    hash: Option<u32>,
    payload: Vec<u8>,
}

impl Publisher {
    /// A new connection: nothing is known to be published.
    fn forget(&mut self) {
        self.published.clear();
        self.unsent.clear();
    }

    /// Queues what changed since the last sync, then clears configs of posts no longer in
    /// service. Waits for the previous sync's messages to be handed over first.
    fn sync(&mut self, registry: &Registry) {
        if !self.unsent.is_empty() {
            return;
        }
        let posts = registry.all();
        for entry in &posts {
            let config = match crate::provision::desired_config(entry, registry.default_cadence()) {
                Ok(c) => c,
                Err(e) => {
                    if self.published.insert(entry.id.clone(), None) != Some(None) {
                        tracing::warn!(error = %e, "post's registry entry is not a valid config");
                    }
                    continue;
                }
            };
            let hash = config.hash();
            if self.published.get(&entry.id) == Some(&Some(hash)) {
                continue;
            }
            let mut buf = [0u8; MAX_CONFIG_BYTES];
            let Ok(n) = post_config::encode(&config, &mut buf) else {
                continue;
            };
            let Ok(topic) = topic::format(&self.prefix, &entry.id, TopicKind::Config) else {
                continue;
            };
            self.unsent.push_back(Unsent {
                post: entry.id.clone(),
                topic: topic.to_string(),
                hash: Some(hash),
                payload: buf.get(..n).unwrap_or(&[]).to_vec(),
            });
        }
        let gone: Vec<PostId> = self
            .published
            .keys()
            .filter(|id| !posts.iter().any(|p| &p.id == *id))
            .cloned()
            .collect();
        for id in gone {
            if let Ok(topic) = topic::format(&self.prefix, &id, TopicKind::Config) {
                // An empty retained message deletes the retained config.
                self.unsent.push_back(Unsent {
                    post: id,
                    topic: topic.to_string(),
                    hash: None,
                    payload: Vec::new(),
                });
            }
        }
        self.send_unsent();
    }

    /// Hands queued messages to rumqttc until its request channel is full.
    fn send_unsent(&mut self) {
        while let Some(u) = self.unsent.front() {
            // Topics come from `topic::format`, so the only refusal left is a full channel
            // (the event loop is ours and outlives the client): retry after the next poll.
            if self
                .client
                .try_publish(u.topic.as_str(), QoS::AtLeastOnce, true, u.payload.clone())
                .is_err()
            {
                return;
            }
            let Some(u) = self.unsent.pop_front() else {
                return;
            };
            match u.hash {
                Some(hash) => {
                    tracing::info!(post = %u.post, config = format_args!("{hash:08x}"), "desired config published");
                    self.published.insert(u.post, Some(hash));
                }
                None => {
                    self.published.remove(&u.post);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::collections::HashSet;

    use rumqttc::MqttOptions;
    use taza_domain::post::PostKind;

    /// More posts than rumqttc's request channel holds (256).
    const POSTS: usize = 300;

    fn air(i: usize) -> PostEntry {
        let mut e = PostEntry::new(
            PostId::parse(&format!("alm-air-{i:03}")).unwrap(),
            PostKind::Air,
            format!("post {i}"),
            43.24,
            76.92,
        );
        e.sensors = vec![protocol::Quantity::Pm2_5];
        e
    }

    /// Connects a subscriber to `filters` and waits for its SUBACK.
    async fn watch(
        addr: std::net::SocketAddr,
        name: &str,
        filters: &[String],
    ) -> (AsyncClient, rumqttc::EventLoop) {
        let opts = MqttOptions::new(
            format!("{name}-{}", std::process::id()),
            addr.ip().to_string(),
            addr.port(),
        );
        let (client, mut events) = AsyncClient::new(opts, 16);
        client
            .subscribe_many(
                filters
                    .iter()
                    .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce)),
            )
            .await
            .unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.poll())
                .await
                .expect("no SUBACK from the embedded broker")
            {
                Ok(Event::Incoming(Packet::SubAck(_))) => return (client, events),
                Ok(_) => {}
                Err(e) => panic!("subscriber cannot reach the embedded broker: {e}"),
            }
        }
    }

    /// Collects config topics until `want` distinct ones arrived (or `within` is over).
    async fn receive(
        events: &mut rumqttc::EventLoop,
        want: usize,
        within: Duration,
        retained_only: bool,
    ) -> HashSet<String> {
        let mut seen = HashSet::new();
        let _ = tokio::time::timeout(within, async {
            while seen.len() < want {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p)))
                        if !p.payload.is_empty() && (p.retain || !retained_only) =>
                    {
                        seen.insert(p.topic.clone());
                    }
                    Ok(_) => {}
                    Err(e) => panic!("subscriber lost the broker: {e}"),
                }
            }
        })
        .await;
        seen
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_post_gets_its_config_when_there_are_more_posts_than_the_request_channel_holds() {
        let addr = taza_ingest::broker::start("127.0.0.1:0".parse().unwrap()).unwrap();
        let posts: Vec<PostEntry> = (0..POSTS).map(air).collect();
        let registry = Registry::new(&posts, Duration::from_secs(60), false);
        let (_live_client, mut live) =
            watch(addr, "cfg-live", &["taza/v1/posts/+/config".to_string()]).await;

        let cfg = MqttConfig {
            client_id: format!("gw-cfg-test-{}", std::process::id()),
            ..MqttConfig::default()
        };
        let endpoint = Endpoint {
            host: addr.ip().to_string(),
            port: addr.port(),
            credentials: None,
            tls: None,
        };
        let shutdown = CancellationToken::new();
        let publisher = spawn(cfg, endpoint, registry, shutdown.clone());

        let seen = receive(&mut live, POSTS, Duration::from_secs(30), false).await;
        assert_eq!(
            seen.len(),
            POSTS,
            "configs received before the publisher stalled"
        );
        // They are retained: a post connecting now still finds its config, the last ones too.
        // (One filter per post, as a post subscribes: rumqttd hands a new subscriber at most
        // its in-flight window of retained messages per filter.)
        let late_posts: Vec<String> = [0, 255, 256, POSTS - 1]
            .iter()
            .map(|&i| format!("taza/v1/posts/alm-air-{i:03}/config"))
            .collect();
        let (_late_client, mut late) = watch(addr, "cfg-late", &late_posts).await;
        let retained = receive(&mut late, late_posts.len(), Duration::from_secs(10), true).await;
        assert_eq!(
            retained,
            late_posts.into_iter().collect(),
            "retained configs"
        );

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), publisher)
            .await
            .expect("the publisher stops on shutdown")
            .unwrap();
    }
}
