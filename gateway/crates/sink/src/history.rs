//! Reading the long-term store back, through the `influxdb2` crate's bucket and Flux query
//! clients: `gateway influx check` ([`check`]), and the hourly and 20-minute means a
//! scorecard needs once SQLite no longer holds the raw readings ([`read_series`], for
//! `gateway report --source influxdb`; the scoring engine is the store's, `taza_api::scoring`).
//!
//! [`check`] asks `GET /api/v2/buckets?name=&org=` for the configured bucket (its retention
//! rules) and runs one Flux query for the newest `value` point per measurement of the schema
//! ([`crate::schema`]). Each way it can fail is told apart ([`CheckError`]): nothing answers
//! at the URL, the token is refused (401) or may not read (403), the organization or the
//! bucket does not exist (404), or InfluxDB answered something that is not its documented
//! format.
//!
//! The crate unwraps the body of a query's answer and its CSV reads (`api/query.rs`); a body
//! cut off mid-answer would panic inside it. Every crate call here runs in a task of its own,
//! so such a panic is an error ([`CheckError::BadAnswer`]), not a crash.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use influxdb2::api::buckets::ListBucketsRequest;
use influxdb2::models::Query;
use influxdb2_structmap::value::Value;
use influxdb2_structmap::GenericMap;
use protocol::{Quantity, UnixSeconds};
use taza_domain::series::{
    HourlyMean, PostDescriptor, PostSeries, QuantitySeries, TwentyMinuteMean,
};

use crate::InfluxClient;

/// What `gateway influx check` found.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// InfluxDB's URL.
    pub url: String,
    /// Organization.
    pub org: String,
    /// Bucket.
    pub bucket: String,
    /// The bucket's id, as InfluxDB gave it.
    pub bucket_id: Option<String>,
    /// How long the bucket keeps points; None: for ever.
    pub retention: Option<Duration>,
    /// Per measurement of the schema, the time of its newest point (None: no point).
    pub newest: Vec<(String, Option<UnixSeconds>)>,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "InfluxDB {}: reachable, token accepted", self.url)?;
        writeln!(
            f,
            "bucket {:?} in organization {:?}{}",
            self.bucket,
            self.org,
            self.bucket_id
                .as_deref()
                .map(|id| format!(" (id {id})"))
                .unwrap_or_default()
        )?;
        match self.retention {
            None => writeln!(f, "retention: for ever (no expiry rule)")?,
            // Whole days as `[store] raw_retention` spells them (humantime would say
            // `1year 1month 4days 7h 26m 24s` for 400 days: its year is 365.25 days).
            Some(d) if d.as_secs() % 86_400 == 0 => {
                writeln!(f, "retention: {}d", d.as_secs() / 86_400)?
            }
            Some(d) => writeln!(f, "retention: {}", humantime::format_duration(d))?,
        }
        writeln!(f, "newest point per measurement:")?;
        for (measurement, at) in &self.newest {
            match at {
                Some(at) => writeln!(
                    f,
                    "  {measurement:<8} {}",
                    taza_domain::calendar::rfc3339(*at)
                )?,
                None => writeln!(f, "  {measurement:<8} none")?,
            }
        }
        Ok(())
    }
}

/// Why `gateway influx check` (or a history read) failed, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckError {
    /// Nothing answered at the URL (refused, no route, DNS, timeout, TLS).
    #[error("InfluxDB at {url} is unreachable: {reason} (check sink.influxdb.url and that InfluxDB runs)")]
    Unreachable {
        /// The configured URL.
        url: String,
        /// What the HTTP client said.
        reason: String,
    },
    /// 401: the token is wrong, revoked or missing.
    #[error(
        "InfluxDB refused the token (401 Unauthorized: {message}); check sink.influxdb.token or token_file"
    )]
    BadToken {
        /// InfluxDB's message.
        message: String,
    },
    /// 403: the token is valid but may not read what was asked.
    #[error("the token may not read {what} (403 Forbidden: {message}); give it read access to bucket {bucket:?}")]
    Forbidden {
        /// What was asked.
        what: &'static str,
        /// The bucket.
        bucket: String,
        /// InfluxDB's message.
        message: String,
    },
    /// 404 on the bucket list: the organization does not exist.
    #[error("organization {org:?} not found (404: {message}); check sink.influxdb.org")]
    MissingOrg {
        /// The configured organization.
        org: String,
        /// InfluxDB's message.
        message: String,
    },
    /// The bucket is not in the organization.
    #[error("bucket {bucket:?} not found in organization {org:?}{detail}; check sink.influxdb.bucket or create it (influx bucket create -n {bucket} -o {org})")]
    MissingBucket {
        /// The configured bucket.
        bucket: String,
        /// The configured organization.
        org: String,
        /// InfluxDB's message, if it sent one (`: ...`).
        detail: String,
    },
    /// Another HTTP status.
    #[error("InfluxDB answered {status} to {what}: {message}")]
    Http {
        /// What was asked.
        what: &'static str,
        /// HTTP status.
        status: u16,
        /// InfluxDB's message.
        message: String,
    },
    /// A 2xx whose body is not what InfluxDB documents (JSON bucket list, annotated CSV).
    #[error("InfluxDB's answer to {what} could not be read: {reason}")]
    BadAnswer {
        /// What was asked.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// The measurements of the schema ([`crate::schema::measurement`]), in first-seen order.
pub fn measurements() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for q in Quantity::ALL {
        let m = crate::schema::measurement(q);
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

/// A Flux string literal.
pub(crate) fn flux_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The Flux query for the newest `value` point per measurement.
pub fn newest_query(bucket: &str) -> String {
    format!(
        "from(bucket: {})\n  |> range(start: 0)\n  |> filter(fn: (r) => r._field == \"value\")\n  |> last()\n  |> group(columns: [\"_measurement\"])\n  |> sort(columns: [\"_time\"], desc: true)\n  |> limit(n: 1)\n  |> keep(columns: [\"_measurement\", \"_time\"])",
        flux_string(bucket)
    )
}

/// Connects with `client`'s URL, org, bucket and token; reports the bucket's retention and
/// the newest point per measurement.
pub async fn check(client: &InfluxClient) -> Result<CheckReport, CheckError> {
    let url = client.client.base.as_str().trim_end_matches('/').to_owned();
    let org = client.org.clone();
    let bucket = client.bucket.clone();

    let request = ListBucketsRequest {
        name: Some(bucket.clone()),
        org: Some(org.clone()),
        ..Default::default()
    };
    let c = client.client.clone();
    let listed = guarded("the bucket list", async move {
        c.list_buckets(Some(request)).await
    })
    .await?
    .map_err(|e| classify(e, client, "the bucket list"))?;
    let Some(found) = listed.buckets.into_iter().find(|b| b.name == bucket) else {
        return Err(CheckError::MissingBucket {
            bucket,
            org,
            detail: String::new(),
        });
    };
    let retention = found
        .retention_rules
        .iter()
        .filter(|r| r.every_seconds > 0)
        .map(|r| Duration::from_secs(u64::from(r.every_seconds.unsigned_abs())))
        .min();

    let records = query(client, "the newest-point query", newest_query(&bucket)).await?;
    let mut newest: Vec<(String, Option<UnixSeconds>)> = measurements()
        .into_iter()
        .map(|m| (m.to_owned(), None))
        .collect();
    for r in records {
        let measurement = string(&r, "_measurement", "the newest-point query")?;
        let at = time(&r, "_time", "the newest-point query")?;
        match newest.iter_mut().find(|(m, _)| *m == measurement) {
            Some((_, slot)) => *slot = Some((*slot).map_or(at, |s: UnixSeconds| s.max(at))),
            // A measurement outside the schema (written by something else): shown too.
            None => newest.push((measurement, Some(at))),
        }
    }
    Ok(CheckReport {
        url,
        org,
        bucket,
        bucket_id: found.id,
        retention,
        newest,
    })
}

/// One record of a Flux answer, its columns by name.
pub(crate) struct Record(pub(crate) GenericMap);

/// Runs `flux` through the crate's query client; the records of every table.
pub(crate) async fn query(
    client: &InfluxClient,
    what: &'static str,
    flux: String,
) -> Result<Vec<Record>, CheckError> {
    let c = client.client.clone();
    let records = guarded(what, async move {
        c.query_raw(Some(Query::new(flux)))
            .await
            .map(|rs| rs.into_iter().map(|r| Record(r.values)).collect())
    })
    .await?;
    records.map_err(|e| classify(e, client, what))
}

/// `fut` in a task of its own: a panic inside the crate becomes [`CheckError::BadAnswer`].
async fn guarded<T: Send + 'static>(
    what: &'static str,
    fut: impl Future<Output = T> + Send + 'static,
) -> Result<T, CheckError> {
    tokio::spawn(fut).await.map_err(|e| CheckError::BadAnswer {
        what,
        reason: if e.is_panic() {
            "the influxdb2 crate failed on it (a cut-off or malformed body)".into()
        } else {
            e.to_string()
        },
    })
}

/// InfluxDB's error body is `{"code": "...", "message": "..."}`; its message, else the body.
fn message(text: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        message: Option<String>,
    }
    match serde_json::from_str::<Body>(text) {
        Ok(Body { message: Some(m) }) => m,
        _ => {
            let t = text.trim();
            if t.is_empty() {
                "no message".into()
            } else {
                t.chars().take(300).collect()
            }
        }
    }
}

fn classify(e: influxdb2::RequestError, client: &InfluxClient, what: &'static str) -> CheckError {
    use influxdb2::RequestError as E;
    match e {
        E::Http { status, text } => {
            let message = message(&text);
            match status.as_u16() {
                401 => CheckError::BadToken { message },
                403 => CheckError::Forbidden {
                    what,
                    bucket: client.bucket.clone(),
                    message,
                },
                404 if message.contains("bucket") => CheckError::MissingBucket {
                    bucket: client.bucket.clone(),
                    org: client.org.clone(),
                    detail: format!(" ({message})"),
                },
                404 if message.contains("organization") || what == "the bucket list" => {
                    CheckError::MissingOrg {
                        org: client.org.clone(),
                        message,
                    }
                }
                status => CheckError::Http {
                    what,
                    status,
                    message,
                },
            }
        }
        E::ReqwestProcessing { source }
            if source.is_connect() || source.is_timeout() || source.is_request() =>
        {
            CheckError::Unreachable {
                url: client.client.base.as_str().trim_end_matches('/').to_owned(),
                reason: crate::describe(&E::ReqwestProcessing { source }),
            }
        }
        E::ReqwestProcessing { source } => CheckError::BadAnswer {
            what,
            reason: crate::describe(&E::ReqwestProcessing { source }),
        },
        // An `error` table in the CSV (a Flux runtime error) lands here too.
        E::Deserializing { text } => CheckError::BadAnswer { what, reason: text },
        E::Serializing { source } => CheckError::BadAnswer {
            what,
            reason: source.to_string(),
        },
    }
}

/// A string column of a record.
pub(crate) fn string(r: &Record, column: &str, what: &'static str) -> Result<String, CheckError> {
    match r.0.get(column) {
        Some(Value::String(s)) => Ok(s.clone()),
        other => Err(missing(column, other, what)),
    }
}

/// A time column of a record, whole seconds.
pub(crate) fn time(
    r: &Record,
    column: &str,
    what: &'static str,
) -> Result<UnixSeconds, CheckError> {
    match r.0.get(column) {
        Some(Value::TimeRFC(t)) => Ok(UnixSeconds(t.timestamp())),
        other => Err(missing(column, other, what)),
    }
}

/// A float column of a record (a long is taken as a float).
pub(crate) fn float(r: &Record, column: &str, what: &'static str) -> Result<f64, CheckError> {
    match r.0.get(column) {
        Some(Value::Double(v)) => Ok(v.into_inner()),
        Some(Value::Long(v)) => Ok(*v as f64),
        other => Err(missing(column, other, what)),
    }
}

/// An integer column of a record.
pub(crate) fn long(r: &Record, column: &str, what: &'static str) -> Result<i64, CheckError> {
    match r.0.get(column) {
        Some(Value::Long(v)) => Ok(*v),
        Some(Value::UnsignedLong(v)) => i64::try_from(*v).map_err(|_| missing(column, None, what)),
        other => Err(missing(column, other, what)),
    }
}

fn missing(column: &str, found: Option<&Value>, what: &'static str) -> CheckError {
    CheckError::BadAnswer {
        what,
        reason: match found {
            None => format!("no column {column:?} in a record"),
            Some(v) => format!("column {column:?} holds {v:?}, not the type expected"),
        },
    }
}

/// A post whose history is read back, and what one of its readings covers.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPost {
    /// The post, as the scorecard names it.
    pub descriptor: PostDescriptor,
    /// Its reporting interval: the seconds one reading covers (capped at the bucket), as the
    /// store's writer counts a reading without `window_s`.
    pub cadence: Duration,
}

/// Seconds of a 20-minute bucket.
const TWENTY_MIN_S: i64 = 1200;
/// Seconds of an hourly bucket.
const HOUR_S: i64 = 3600;

/// A Flux time literal.
fn flux_time(at: UnixSeconds) -> String {
    taza_domain::calendar::rfc3339(at)
}

/// The Flux query for the valid readings of `quantities` in `[from, to)` folded into buckets
/// of `every_s` seconds per (post, quantity): their count, sum and largest value. As the
/// store's rollups: a reading stamped at the end of its window belongs to the bucket holding
/// `at - 1 s` (`timeShift(-1s)` over a range shifted by 1 s), and readings with an
/// invalidating QA flag are left out.
pub fn buckets_query(
    bucket: &str,
    quantities: &[Quantity],
    from: UnixSeconds,
    to: UnixSeconds,
    every_s: i64,
) -> String {
    let mut measurements: Vec<&str> = quantities
        .iter()
        .map(|q| crate::schema::measurement(*q))
        .collect();
    measurements.dedup();
    let any = |column: &str, values: &[&str]| {
        values
            .iter()
            .map(|v| format!("r.{column} == {}", flux_string(v)))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let names: Vec<&str> = quantities.iter().map(|q| q.as_str()).collect();
    let every = if every_s % HOUR_S == 0 {
        format!("{}h", every_s / HOUR_S)
    } else if every_s % 60 == 0 {
        format!("{}m", every_s / 60)
    } else {
        format!("{every_s}s")
    };
    format!(
        "import \"experimental/bitwise\"\n\
         from(bucket: {bucket})\n\
         \x20 |> range(start: {start}, stop: {stop})\n\
         \x20 |> filter(fn: (r) => ({measurements}) and ({quantities}))\n\
         \x20 |> filter(fn: (r) => r._field == \"value\" or r._field == \"flags\")\n\
         \x20 |> pivot(rowKey: [\"_time\"], columnKey: [\"_field\"], valueColumn: \"_value\")\n\
         \x20 |> filter(fn: (r) => bitwise.sand(a: r.flags, b: {invalid}) == 0)\n\
         \x20 |> timeShift(duration: -1s)\n\
         \x20 |> window(every: {every})\n\
         \x20 |> reduce(identity: {{count: 0, sum: 0.0, max: float(v: \"-Inf\")}}, fn: (r, accumulator) => ({{count: accumulator.count + 1, sum: accumulator.sum + r.value, max: if r.value > accumulator.max then r.value else accumulator.max}}))\n\
         \x20 |> keep(columns: [\"_start\", \"post\", \"quantity\", \"count\", \"sum\", \"max\"])\n\
         \x20 |> group()",
        bucket = flux_string(bucket),
        start = flux_time(from.offset(1)),
        stop = flux_time(to.offset(1)),
        measurements = any("_measurement", &measurements),
        quantities = any("quantity", &names),
        invalid = protocol::QaFlags::INVALIDATING.0,
    )
}

/// One bucket of a [`buckets_query`] answer.
struct Bucket {
    post: String,
    quantity: Quantity,
    start: UnixSeconds,
    count: i64,
    sum: f64,
    max: f64,
}

async fn buckets(
    client: &InfluxClient,
    what: &'static str,
    quantities: &[Quantity],
    from: UnixSeconds,
    to: UnixSeconds,
    every_s: i64,
) -> Result<Vec<Bucket>, CheckError> {
    let records = query(
        client,
        what,
        buckets_query(&client.bucket, quantities, from, to, every_s),
    )
    .await?;
    let mut out = Vec::with_capacity(records.len());
    for r in &records {
        let name = string(r, "quantity", what)?;
        let quantity = Quantity::parse(&name).ok_or_else(|| CheckError::BadAnswer {
            what,
            reason: format!("unknown quantity {name:?}"),
        })?;
        let count = long(r, "count", what)?;
        let sum = float(r, "sum", what)?;
        let max = float(r, "max", what)?;
        if count <= 0 || !sum.is_finite() || !max.is_finite() {
            return Err(CheckError::BadAnswer {
                what,
                reason: format!("a bucket of {name} with count {count}, sum {sum}, max {max}"),
            });
        }
        out.push(Bucket {
            post: string(r, "post", what)?,
            quantity,
            start: time(r, "_start", what)?,
            count,
            sum,
            max,
        });
    }
    Ok(out)
}

/// The hourly and 20-minute means of `quantities` at `posts` in `[from, to)` (and the hourly
/// means from `recent_from` on, which the comparison views read), from InfluxDB, as the
/// store's rollups give them: mean weighted by coverage, coverage the readings' cadence capped
/// at the bucket. Every post is in the answer, with a series per quantity that has buckets
/// (`days` empty: the scoring adapter computes them, `taza_api::scoring`). Points of posts
/// not listed are ignored.
///
/// InfluxDB keeps no `window_s`: a reading that covered other than its post's cadence counts
/// as the cadence here (the store's writer took its window).
pub async fn read_series(
    client: &InfluxClient,
    posts: &[HistoryPost],
    quantities: &[Quantity],
    from: UnixSeconds,
    to: UnixSeconds,
    recent_from: UnixSeconds,
) -> Result<Vec<PostSeries>, CheckError> {
    let mut hourly = buckets(
        client,
        "the hourly-means query",
        quantities,
        from,
        to,
        HOUR_S,
    )
    .await?;
    if recent_from >= to {
        let recent_to = taza_domain::calendar::now().offset(HOUR_S);
        hourly.extend(
            buckets(
                client,
                "the recent hourly-means query",
                quantities,
                recent_from,
                recent_to,
                HOUR_S,
            )
            .await?,
        );
    }
    let twenty = buckets(
        client,
        "the 20-minute-means query",
        quantities,
        from,
        to,
        TWENTY_MIN_S,
    )
    .await?;
    let mut out: Vec<PostSeries> = posts
        .iter()
        .map(|p| PostSeries {
            post: p.descriptor.clone(),
            series: Vec::new(),
        })
        .collect();
    let slot = |out: &mut Vec<PostSeries>, post: &str, q: Quantity| -> Option<(usize, usize)> {
        let i = out.iter().position(|p| p.post.id.as_str() == post)?;
        let series = &mut out[i].series;
        let j = match series.iter().position(|s| s.quantity == q) {
            Some(j) => j,
            None => {
                series.push(QuantitySeries {
                    quantity: q,
                    hourly: Vec::new(),
                    twenty_minute: Vec::new(),
                    days: Vec::new(),
                });
                series.len() - 1
            }
        };
        Some((i, j))
    };
    let covered = |post: &str, bucket_s: i64| {
        posts
            .iter()
            .find(|p| p.descriptor.id.as_str() == post)
            .map(|p| {
                i64::try_from(p.cadence.as_secs())
                    .unwrap_or(i64::MAX)
                    .clamp(1, bucket_s)
            })
    };
    for b in hourly {
        let (Some((i, j)), Some(each)) = (
            slot(&mut out, &b.post, b.quantity),
            covered(&b.post, HOUR_S),
        ) else {
            continue;
        };
        let covered_s = b.count.saturating_mul(each);
        out[i].series[j].hourly.push(HourlyMean {
            start: b.start,
            mean: b.sum * each as f64 / covered_s.max(1) as f64,
            covered_s,
            count: u32::try_from(b.count).unwrap_or(u32::MAX),
            max: b.max,
        });
    }
    for b in twenty {
        let (Some((i, j)), Some(each)) = (
            slot(&mut out, &b.post, b.quantity),
            covered(&b.post, TWENTY_MIN_S),
        ) else {
            continue;
        };
        let covered_s = b.count.saturating_mul(each);
        out[i].series[j].twenty_minute.push(TwentyMinuteMean {
            start: b.start,
            mean: b.sum * each as f64 / covered_s.max(1) as f64,
            covered_s,
        });
    }
    for p in &mut out {
        for s in &mut p.series {
            s.hourly.sort_by_key(|h| h.start);
            s.hourly.dedup_by_key(|h| h.start);
            s.twenty_minute.sort_by_key(|t| t.start);
            s.twenty_minute.dedup_by_key(|t| t.start);
        }
    }
    Ok(out)
}
