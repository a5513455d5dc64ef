//! `gateway posts ...`: the registry from a terminal, on the store in the data dir (beside a
//! running gateway too: it picks changes up within seconds). Same operations, checks and audit
//! as the API; the actor is `cli:$USER` unless `--actor` says otherwise.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use protocol::{PostId, Quantity};
use taza_domain::credentials::PasswordHash;
use taza_domain::post::{Instrument, LinearFit, No2Cell, PostEntry, PostKind};
use taza_gateway::config::Config;
use taza_ingest::config::BrokerUrl;
use taza_registry::manage;
use taza_store::registry as table;

#[derive(Debug, Subcommand)]
pub enum PostsCommand {
    /// List posts: status, whether each runs the registry's config, credentials.
    List {
        /// Include retired posts.
        #[arg(long)]
        all: bool,
    },
    /// Show one post's record, status and audit trail.
    Show { post: String },
    /// Register a post (or, with --replace, change one).
    Add(Box<AddArgs>),
    /// Take a post out of service: its readings are refused, its credentials deleted.
    Retire {
        post: String,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// Issue the post's MQTT credentials and write its device config blob.
    Provision {
        post: String,
        /// Folder for `<post>.taza-device.bin`.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Broker address the post dials [default: `[provision] broker`].
        #[arg(long)]
        post_broker: Option<BrokerUrl>,
    },
    /// Wait for the post and check it: status, config, clock, signal, supply, every sensor.
    /// Exits 1 when a check fails. The gateway must be running (it is what receives the post).
    Commission {
        post: String,
        /// How long to wait for the post [default: two reporting windows + 30 s].
        #[arg(long, value_parser = humantime::parse_duration)]
        wait: Option<Duration>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Language of the report: ru, kk or en [default: from $LANG, else en].
        #[arg(long, value_parser = parse_lang)]
        lang: Option<taza_registry::commission::Lang>,
    },
    /// Write Mosquitto's password file and ACL from the registry (reload Mosquitto afterwards).
    BrokerAuth {
        /// Password file to write.
        #[arg(long)]
        password_file: PathBuf,
        /// ACL file to write.
        #[arg(long)]
        acl_file: PathBuf,
        /// The gateway's MQTT user name.
        #[arg(long, default_value = "gateway")]
        gateway_user: String,
        /// File holding the gateway's MQTT password (the same secret the gateway's
        /// `[mqtt] broker` URL carries).
        #[arg(long)]
        gateway_password_file: PathBuf,
    },
    /// The registry's audit trail (one post's, or everyone's).
    Audit { post: Option<String> },
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// TOML file with one post, the fields of a `[[posts]]` entry (calibration and instruments
    /// included). Flags below fill in or override its fields.
    #[arg(long)]
    file: Option<PathBuf>,
    #[arg(long)]
    id: Option<String>,
    #[arg(long, value_parser = parse_kind)]
    kind: Option<PostKind>,
    #[arg(long)]
    name: Option<String>,
    /// WGS84 latitude, degrees.
    #[arg(long, allow_hyphen_values = true)]
    lat: Option<f64>,
    /// WGS84 longitude, degrees.
    #[arg(long, allow_hyphen_values = true)]
    lon: Option<f64>,
    #[arg(long)]
    district: Option<String>,
    #[arg(long)]
    river: Option<String>,
    /// Instrument as `MODEL:SERIAL:q1,q2`, e.g. `Plantower PMS5003:PMS-22-0481:pm1,pm2_5,pm10`.
    #[arg(long = "instrument", value_parser = parse_instrument)]
    instruments: Vec<Instrument>,
    /// Reporting interval, e.g. `1m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    cadence: Option<Duration>,
    /// Sensor polling interval, e.g. `10s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    sample_interval: Option<Duration>,
    /// How long readings after boot are flagged warm-up, e.g. `2m` (the default).
    #[arg(long, value_parser = humantime::parse_duration)]
    warm_up: Option<Duration>,
    /// Linear calibration as `QUANTITY:GAIN:OFFSET`, e.g. `pm2_5:0.82:1.4`.
    #[arg(long = "calibrate", value_parser = parse_fit, allow_hyphen_values = true)]
    calibrations: Vec<LinearFit>,
    /// NO2 cell constants as `WE_ZERO_MV:AE_ZERO_MV:SENSITIVITY_MV_PER_PPB`.
    #[arg(long, value_parser = parse_no2, allow_hyphen_values = true)]
    no2_cell: Option<No2Cell>,
    /// River posts: gauge zero, metres above the Baltic datum.
    #[arg(long)]
    gauge_zero_m: Option<f64>,
    /// Change an existing post instead of adding one.
    #[arg(long)]
    replace: bool,
}

fn parse_lang(s: &str) -> Result<taza_registry::commission::Lang, String> {
    taza_registry::commission::Lang::parse(s).ok_or_else(|| "ru, kk or en".into())
}

/// The terminal's language when it is one the report speaks (`LANG=ru_KZ.UTF-8`), else English.
fn terminal_lang() -> taza_registry::commission::Lang {
    std::env::var("LANG")
        .ok()
        .and_then(|l| l.get(..2).and_then(taza_registry::commission::Lang::parse))
        .unwrap_or(taza_registry::commission::Lang::En)
}

fn parse_kind(s: &str) -> Result<PostKind, String> {
    match s {
        "air" => Ok(PostKind::Air),
        "river" => Ok(PostKind::River),
        _ => Err("air or river".into()),
    }
}

fn quantity(s: &str) -> Result<Quantity, String> {
    Quantity::parse(s.trim()).ok_or_else(|| format!("unknown quantity {s:?}"))
}

fn parse_instrument(s: &str) -> Result<Instrument, String> {
    let mut it = s.splitn(3, ':');
    let (Some(model), Some(serial), Some(qs)) = (it.next(), it.next(), it.next()) else {
        return Err("expected MODEL:SERIAL:q1,q2".into());
    };
    Ok(Instrument {
        model: model.trim().into(),
        serial: serial.trim().into(),
        quantities: qs.split(',').map(quantity).collect::<Result<_, _>>()?,
    })
}

fn parse_fit(s: &str) -> Result<LinearFit, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [q, gain, offset] = parts.as_slice() else {
        return Err("expected QUANTITY:GAIN:OFFSET".into());
    };
    Ok(LinearFit {
        quantity: quantity(q)?,
        gain: gain.parse().map_err(|e| format!("gain: {e}"))?,
        offset: offset.parse().map_err(|e| format!("offset: {e}"))?,
    })
}

fn parse_no2(s: &str) -> Result<No2Cell, String> {
    let v: Vec<f64> = s
        .split(':')
        .map(|p| p.trim().parse::<f64>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let [we, ae, sens] = v.as_slice() else {
        return Err("expected WE_ZERO_MV:AE_ZERO_MV:SENSITIVITY".into());
    };
    Ok(No2Cell {
        we_zero_mv: *we,
        ae_zero_mv: *ae,
        sensitivity_mv_per_ppb: *sens,
    })
}

impl AddArgs {
    fn entry(self) -> anyhow::Result<(PostEntry, bool)> {
        let mut entry = match &self.file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<PostEntry>(&text)
                    .with_context(|| format!("{} is not a post entry", path.display()))?
            }
            None => {
                let (Some(id), Some(kind), Some(name), Some(lat), Some(lon)) =
                    (&self.id, self.kind, &self.name, self.lat, self.lon)
                else {
                    bail!("give --file, or at least --id --kind --name --lat --lon");
                };
                PostEntry::new(
                    PostId::parse(id).map_err(|e| anyhow::anyhow!("post id {id:?}: {e:?}"))?,
                    kind,
                    name.clone(),
                    lat,
                    lon,
                )
            }
        };
        if let Some(id) = &self.id {
            entry.id = PostId::parse(id).map_err(|e| anyhow::anyhow!("post id {id:?}: {e:?}"))?;
        }
        if let Some(k) = self.kind {
            entry.kind = k;
        }
        if let Some(n) = self.name {
            entry.name = n;
        }
        if let Some(v) = self.lat {
            entry.latitude = v;
        }
        if let Some(v) = self.lon {
            entry.longitude = v;
        }
        if self.district.is_some() {
            entry.district = self.district;
        }
        if self.river.is_some() {
            entry.river = self.river;
        }
        if !self.instruments.is_empty() {
            entry.instruments = self.instruments;
        }
        if self.cadence.is_some() {
            entry.cadence = self.cadence;
        }
        if self.sample_interval.is_some() {
            entry.sample_interval = self.sample_interval;
        }
        if self.warm_up.is_some() {
            entry.warm_up = self.warm_up;
        }
        if !self.calibrations.is_empty() {
            entry.calibration.linear = self.calibrations;
        }
        if self.no2_cell.is_some() {
            entry.calibration.no2 = self.no2_cell;
        }
        if self.gauge_zero_m.is_some() {
            entry.gauge_zero_m = self.gauge_zero_m;
        }
        Ok((entry, self.replace))
    }
}

fn actor(explicit: Option<String>) -> String {
    explicit.unwrap_or_else(|| {
        format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into())
        )
    })
}

fn parse_post(raw: &str) -> anyhow::Result<PostId> {
    PostId::parse(raw).map_err(|e| anyhow::anyhow!("post id {raw:?}: {e:?}"))
}

/// Runs one `gateway posts` command.
pub fn run(
    config: &Config,
    command: PostsCommand,
    actor_flag: Option<String>,
) -> anyhow::Result<()> {
    let actor = actor(actor_flag);
    let cadence = config.store.default_cadence;
    let mut conn = taza_store::open_writer(&config.store)?;
    // Config-file posts are in the registry before anything else looks at it, as at start.
    {
        let tx = conn.transaction()?;
        manage::apply_config_posts(&tx, &config.posts, cadence)?;
        tx.commit()?;
    }
    match command {
        PostsCommand::List { all } => list(&conn, config, all),
        PostsCommand::Show { post } => {
            let id = parse_post(&post)?;
            let record = table::get(&conn, &id)?.with_context(|| format!("no post {id}"))?;
            let trail = table::audit_trail(&conn, Some(&id), 200)?;
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({ "post": record, "audit": trail })
                )?
            );
            Ok(())
        }
        PostsCommand::Add(args) => {
            let (entry, replace) = args.entry()?;
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if replace {
                manage::replace(&tx, &entry, &actor, cadence)?;
            } else {
                manage::add(&tx, &entry, &actor, cadence)?;
            }
            tx.commit()?;
            println!(
                "{} {} ({}). Next: gateway posts provision {}",
                if replace { "changed" } else { "added" },
                entry.id,
                entry.name,
                entry.id
            );
            Ok(())
        }
        PostsCommand::Retire { post, reason } => {
            let id = parse_post(&post)?;
            if reason.trim().is_empty() {
                bail!("say why the post is retired (--reason)");
            }
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            manage::retire(&tx, &id, &actor, reason.trim())?;
            tx.commit()?;
            println!("retired {id}: its credentials are deleted and its readings refused. With an external Mosquitto, rerun `gateway posts broker-auth` and reload it.");
            Ok(())
        }
        PostsCommand::Provision {
            post,
            out,
            post_broker,
        } => {
            let id = parse_post(&post)?;
            let broker = post_broker.unwrap_or_else(|| {
                taza_registry::provision::post_broker(&config.provision, &config.mqtt)
            });
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let done = taza_registry::provision::provision(
                &tx,
                &id,
                &actor,
                &broker,
                &config.mqtt.topic_prefix,
                cadence,
            )?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let path = out.join(format!("{id}.taza-device.bin"));
            write_private(&path, &done.blob)?;
            // Only after the blob is safely on disk do the new credentials replace the old ones.
            tx.commit()?;
            println!("provisioned {id}");
            println!("  device config: {} ({} bytes; holds the post's password: flash it, then delete it)", path.display(), done.blob.len());
            println!("  config hash:   {:08x}", done.config_hash);
            println!("  paper log:     {}", done.summary);
            if let Some(qr) = taza_registry::provision::qr_code(&done.summary) {
                println!("{qr}");
            }
            if config.mqtt.broker.is_some() {
                println!("External broker: rerun `gateway posts broker-auth` and reload Mosquitto so it knows the new password.");
            }
            Ok(())
        }
        PostsCommand::Commission {
            post,
            wait,
            json,
            lang,
        } => {
            let id = parse_post(&post)?;
            drop(conn);
            let lang = lang.unwrap_or_else(terminal_lang);
            commission(config, &id, wait, json, lang, &actor)
        }
        PostsCommand::BrokerAuth {
            password_file,
            acl_file,
            gateway_user,
            gateway_password_file,
        } => {
            let secret = std::fs::read_to_string(&gateway_password_file)
                .with_context(|| format!("reading {}", gateway_password_file.display()))?;
            let secret = secret.trim_end_matches(['\n', '\r']);
            if secret.is_empty() {
                bail!("{} is empty", gateway_password_file.display());
            }
            if PostId::parse(&gateway_user).is_ok()
                && table::get(&conn, &parse_post(&gateway_user)?)?.is_some()
            {
                bail!("the gateway user {gateway_user:?} is also a post id");
            }
            let hash = PasswordHash::new(secret)?;
            let posts = table::credentials(&conn)?;
            // Readable by all, as mosquitto_passwd leaves it: Mosquitto reads it after dropping
            // to its own user (uid 1883 in the container), and it holds only salted PBKDF2
            // hashes of random passwords. On a shared host chown it to Mosquitto and chmod 0640.
            std::fs::write(
                &password_file,
                taza_registry::mosquitto::password_file((&gateway_user, &hash), &posts),
            )
            .with_context(|| format!("writing {}", password_file.display()))?;
            #[cfg(unix)]
            std::fs::set_permissions(
                &password_file,
                std::os::unix::fs::PermissionsExt::from_mode(0o644),
            )
            .with_context(|| format!("chmod {}", password_file.display()))?;
            std::fs::write(
                &acl_file,
                taza_registry::mosquitto::acl(&config.mqtt.topic_prefix, &gateway_user),
            )
            .with_context(|| format!("writing {}", acl_file.display()))?;
            println!(
                "wrote {} ({} posts + {gateway_user}) and {}; reload Mosquitto (SIGHUP) to apply",
                password_file.display(),
                posts.len(),
                acl_file.display()
            );
            Ok(())
        }
        PostsCommand::Audit { post } => {
            let id = post.as_deref().map(parse_post).transpose()?;
            for a in table::audit_trail(&conn, id.as_ref(), 10_000)? {
                println!(
                    "{}  {:<22} {:<12} {:<11} {}",
                    a.at, a.actor, a.post, a.action, a.detail
                );
            }
            Ok(())
        }
    }
}

/// Writes a file only its owner can read (it holds a password or password hashes).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn list(conn: &rusqlite::Connection, config: &Config, all: bool) -> anyhow::Result<()> {
    let posts = taza_store::read::posts(conn)?;
    let records = table::all(conn)?;
    println!(
        "{:<16} {:<6} {:<9} {:<9} {:<12} {:<11} NAME",
        "POST", "KIND", "STATE", "CONFIG", "FIRMWARE", "CREDENTIALS"
    );
    for p in posts {
        let Some(rec) = records.iter().find(|r| r.entry.id.as_str() == p.id) else {
            continue;
        };
        if !rec.active() && !all {
            continue;
        }
        let state = match (&p.status, rec.active()) {
            (_, false) => "retired",
            (Some(s), true) if s.online => "online",
            (Some(_), true) => "offline",
            (None, true) => "never",
        };
        let desired =
            taza_registry::config_push::desired_hash(&rec.entry, config.store.default_cadence);
        let config_state = match desired.filter(|_| rec.active()) {
            Some(d) => {
                taza_store::read::ConfigState::compare(
                    d,
                    p.status.as_ref().and_then(|s| s.config_hash),
                )
                .state
            }
            None if rec.active() => "invalid",
            None => "-",
        };
        println!(
            "{:<16} {:<6} {:<9} {:<9} {:<12} {:<11} {}",
            p.id,
            p.kind,
            state,
            config_state,
            p.status
                .as_ref()
                .map(|s| s.firmware.as_str())
                .unwrap_or("-"),
            if rec.mqtt_username.is_some() {
                "issued"
            } else {
                "none"
            },
            p.name
        );
    }
    Ok(())
}

fn commission(
    config: &Config,
    id: &PostId,
    wait: Option<Duration>,
    json: bool,
    lang: taza_registry::commission::Lang,
    actor: &str,
) -> anyhow::Result<()> {
    let db = taza_store::db_path(&config.store);
    let pool = taza_store::ReadPool::new(&db);
    let mut conn = taza_store::open_writer(&config.store)?;
    let record = table::get(&conn, id)?
        .filter(|r| r.active())
        .with_context(|| format!("post {id} is not in service"))?;
    let cadence = record.entry.cadence.unwrap_or(config.store.default_cadence);
    let desired =
        taza_registry::provision::desired_config(&record.entry, config.store.default_cadence)?
            .hash();
    let wait = wait.unwrap_or_else(|| taza_registry::commission::default_wait(cadence));
    let ranges = std::sync::Arc::new(
        taza_registry::commission::PlausibleRanges::shipped().map_err(anyhow::Error::msg)?,
    );
    eprintln!("waiting up to {} s for {id}...", wait.as_secs());
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let report = runtime.block_on(taza_registry::commission::run(
        pool,
        record.entry,
        desired,
        cadence,
        wait,
        ranges,
        lang,
    ))?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    table::audit(
        &tx,
        actor,
        id,
        "commission",
        &serde_json::json!({
            "passed": report.passed,
            "failed": report.failures().map(|c| c.name.clone()).collect::<Vec<_>>(),
        }),
    )?;
    tx.commit()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    if !report.passed {
        std::process::exit(1);
    }
    Ok(())
}
