//! `gateway posts ...`: the registry from a terminal, on the configured store (`[store] url`:
//! SQLite in the data dir, or the PostgreSQL server replicas share), beside running gateways
//! too: they pick changes up within a second. Same operations, checks and audit as the API; the
//! actor is `cli:$USER` unless `--actor` says otherwise.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use protocol::{PostId, Quantity};
use taza_domain::credentials::PasswordHash;
use taza_domain::post::{Instrument, LinearFit, No2Cell, PostEntry, PostKind};
use taza_gateway::config::Config;
use taza_ingest::config::BrokerUrl;
use taza_registry::commission::{Lang, PlausibleRanges};
use taza_registry::service::{RegistryService, RegistrySettings};
use taza_store::config::Location;

/// Audit rows `gateway posts audit` prints, the newest.
const AUDIT_ROWS: usize = 10_000;

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
        lang: Option<Lang>,
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

fn parse_lang(s: &str) -> Result<Lang, String> {
    Lang::parse(s).ok_or_else(|| "ru, kk or en".into())
}

/// The terminal's language when it is one the report speaks (`LANG=ru_KZ.UTF-8`), else English.
fn terminal_lang() -> Lang {
    std::env::var("LANG")
        .ok()
        .and_then(|l| l.get(..2).and_then(Lang::parse))
        .unwrap_or(Lang::En)
}

fn parse_kind(s: &str) -> Result<PostKind, String> {
    s.parse().map_err(|_| "air or river".into())
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

/// How a command ended, besides failing.
#[derive(Debug, PartialEq, Eq)]
enum Exit {
    Done,
    /// Commissioning found a failed check: exit 1.
    ChecksFailed,
}

/// The registry service on the configured store (created and migrated first, as at start).
async fn service(config: &Config) -> anyhow::Result<RegistryService> {
    let store = match config.store.location().map_err(anyhow::Error::msg)? {
        Location::Sqlite(dir) => {
            let cfg = config.store.sqlite_in(dir);
            drop(taza_store::open_writer(&cfg)?);
            taza_store::Store::sqlite(&taza_store::db_path(&cfg))?
        }
        Location::Postgres(url) => {
            taza_store::Store::Pg(taza_store::pg::PgStore::connect(&url).await?)
        }
    };
    Ok(RegistryService::new(
        store,
        RegistrySettings {
            default_cadence: config.store.default_cadence,
            topic_prefix: config.mqtt.topic_prefix.clone(),
            post_broker: taza_registry::provision::post_broker(&config.provision, &config.mqtt),
            ranges: Arc::new(PlausibleRanges::shipped().map_err(anyhow::Error::msg)?),
        },
    ))
}

/// Runs one `gateway posts` command.
pub fn run(
    config: &Config,
    command: PostsCommand,
    actor_flag: Option<String>,
) -> anyhow::Result<()> {
    let actor = actor(actor_flag);
    // Multi-threaded: PostgreSQL store calls block on the driver from the blocking pool.
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let exit = runtime.block_on(async {
        let service = service(config).await?;
        // Config-file posts are in the registry before anything else looks at it, as at start.
        service.apply_config_posts(config.posts.clone()).await?;
        execute(&service, config, command, &actor).await
    })?;
    if exit == Exit::ChecksFailed {
        std::process::exit(1);
    }
    Ok(())
}

async fn execute(
    service: &RegistryService,
    config: &Config,
    command: PostsCommand,
    actor: &str,
) -> anyhow::Result<Exit> {
    match command {
        PostsCommand::List { all } => list(service, all).await?,
        PostsCommand::Show { post } => {
            let id = parse_post(&post)?;
            let found = service
                .show(id.clone())
                .await?
                .with_context(|| format!("no post {id}"))?;
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({ "post": found.record, "audit": found.audit })
                )?
            );
        }
        PostsCommand::Add(args) => {
            let (entry, replace) = args.entry()?;
            let (id, name) = (entry.id.clone(), entry.name.clone());
            if replace {
                service.replace(entry, actor).await?;
            } else {
                service.add(entry, actor).await?;
            }
            println!(
                "{} {id} ({name}). Next: gateway posts provision {id}",
                if replace { "changed" } else { "added" },
            );
        }
        PostsCommand::Retire { post, reason } => {
            let id = parse_post(&post)?;
            if reason.trim().is_empty() {
                bail!("say why the post is retired (--reason)");
            }
            service.retire(id.clone(), actor, &reason).await?;
            println!("retired {id}: its credentials are deleted and its readings refused. With an external Mosquitto, rerun `gateway posts broker-auth` and reload it.");
        }
        PostsCommand::Provision {
            post,
            out,
            post_broker,
        } => {
            let id = parse_post(&post)?;
            let path = out.join(format!("{id}.taza-device.bin"));
            let blob_path = path.clone();
            // Only after the blob is safely on disk do the new credentials replace the old ones.
            let done = service
                .provision(id.clone(), actor, post_broker, move |done| {
                    std::fs::create_dir_all(&out)
                        .with_context(|| format!("creating {}", out.display()))?;
                    write_private(&blob_path, &done.blob)?;
                    Ok(())
                })
                .await?;
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
        }
        PostsCommand::Commission {
            post,
            wait,
            json,
            lang,
        } => {
            let id = parse_post(&post)?;
            let lang = lang.unwrap_or_else(terminal_lang);
            let post = service.start_commissioning(id.clone()).await?;
            let wait = wait.unwrap_or_else(|| post.default_wait());
            eprintln!("waiting up to {} s for {id}...", wait.as_secs());
            let report = service.commission(post, wait, lang, actor).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            if !report.passed {
                return Ok(Exit::ChecksFailed);
            }
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
            if let Ok(user) = PostId::parse(&gateway_user) {
                if service.is_registered(user).await? {
                    bail!("the gateway user {gateway_user:?} is also a post id");
                }
            }
            let hash = PasswordHash::new(secret)?;
            let posts = service.credentials().await?;
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
        }
        PostsCommand::Audit { post } => {
            let id = post.as_deref().map(parse_post).transpose()?;
            for a in service.audit(id, AUDIT_ROWS).await? {
                println!(
                    "{}  {:<22} {:<12} {:<11} {}",
                    a.at, a.actor, a.post, a.action, a.detail
                );
            }
        }
    }
    Ok(Exit::Done)
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

async fn list(service: &RegistryService, all: bool) -> anyhow::Result<()> {
    println!(
        "{:<16} {:<6} {:<9} {:<9} {:<12} {:<11} NAME",
        "POST", "KIND", "STATE", "CONFIG", "FIRMWARE", "CREDENTIALS"
    );
    for view in service.list().await? {
        let p = &view.summary;
        let Some(rec) = &view.record else {
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
        let config_state = match (&p.config, rec.active()) {
            (_, false) => "-",
            (Some(c), true) => c.state,
            (None, true) => "invalid",
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
