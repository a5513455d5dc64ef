//! `gateway influx check` ([`taza_sink::history::check`]) against a local HTTP server that
//! answers as InfluxDB 2 documents: `GET /api/v2/buckets` (JSON), `POST /api/v2/query`
//! (annotated CSV) and its error bodies (`{"code": ..., "message": ...}`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use taza_sink::history::{check, CheckError};
use taza_sink::{InfluxClient, InfluxConfig};

const TOKEN: &str = "good-token-0123456789";
/// 2026-12-03T17:40:00Z.
const TS_AIR: i64 = 1_796_319_600;

/// What the fake InfluxDB answers to a query.
#[derive(Clone)]
struct Fake {
    /// Body of a 200 to `/api/v2/query`.
    csv: String,
    /// The bucket's retention (`everySeconds`, 0: for ever).
    every_seconds: i64,
}

/// The newest point per measurement, as InfluxDB 2 writes the annotated CSV of
/// `newest_query`: annotations, header, one row per table.
const NEWEST_CSV: &str = "#datatype,string,long,string,dateTime:RFC3339\r\n\
#group,false,false,true,false\r\n\
#default,_result,,,\r\n\
,result,table,_measurement,_time\r\n\
,,0,air,2026-12-03T17:40:00Z\r\n\
,,1,water,2026-12-03T17:35:00Z\r\n\
\r\n";

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [("content-type", "application/json; charset=utf-8")],
        r#"{"code":"unauthorized","message":"unauthorized access"}"#,
    )
        .into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Token {TOKEN}"))
}

async fn buckets(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    let org = q.get("org").map(String::as_str).unwrap_or("");
    if org != "akimat" {
        return (
            StatusCode::NOT_FOUND,
            [("content-type", "application/json; charset=utf-8")],
            format!(r#"{{"code":"not found","message":"organization name \"{org}\" not found"}}"#),
        )
            .into_response();
    }
    let name = q.get("name").map(String::as_str).unwrap_or("");
    let list = if name == "taza" {
        format!(
            r#"{{"id":"0f1e2d3c4b5a6978","orgID":"1a2b3c4d5e6f7a8b","type":"user","name":"taza",
               "retentionRules":[{{"type":"expire","everySeconds":{},"shardGroupDurationSeconds":604800}}],
               "createdAt":"2026-01-05T09:00:00.000000Z","updatedAt":"2026-01-05T09:00:00.000000Z",
               "links":{{"labels":"/api/v2/buckets/0f1e2d3c4b5a6978/labels","members":"/api/v2/buckets/0f1e2d3c4b5a6978/members",
                         "org":"/api/v2/orgs/1a2b3c4d5e6f7a8b","owners":"/api/v2/buckets/0f1e2d3c4b5a6978/owners",
                         "self":"/api/v2/buckets/0f1e2d3c4b5a6978","write":"/api/v2/write?org=1a2b3c4d5e6f7a8b&bucket=0f1e2d3c4b5a6978"}},
               "labels":[]}}"#,
            fake.every_seconds
        )
    } else {
        String::new()
    };
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=utf-8")],
        format!(
            r#"{{"links":{{"self":"/api/v2/buckets?descending=false&limit=20&name={name}&offset=0&org={org}"}},"buckets":[{list}]}}"#
        ),
    )
        .into_response()
}

async fn query(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: String,
) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    let asked: serde_json::Value = serde_json::from_str(&body).unwrap();
    let flux = asked["query"].as_str().unwrap();
    assert!(flux.contains(r#"from(bucket: "taza")"#), "{flux}");
    assert_eq!(q.get("org").map(String::as_str), Some("akimat"));
    (
        StatusCode::OK,
        [("content-type", "text/csv; charset=utf-8")],
        fake.csv.clone(),
    )
        .into_response()
}

async fn serve(fake: Fake) -> SocketAddr {
    let app = Router::new()
        .route("/api/v2/buckets", get(buckets))
        .route("/api/v2/query", post(query))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn client(addr: SocketAddr, org: &str, bucket: &str, token: &str) -> InfluxClient {
    let cfg: InfluxConfig = toml::from_str(&format!(
        "url = \"http://{addr}\"\norg = \"{org}\"\nbucket = \"{bucket}\"\ntoken = \"{token}\"\nrequest_timeout = \"3s\"\n"
    ))
    .unwrap();
    InfluxClient::new(&cfg).unwrap()
}

fn fake() -> Fake {
    Fake {
        csv: NEWEST_CSV.into(),
        every_seconds: 0,
    }
}

#[tokio::test]
async fn check_reports_the_retention_and_the_newest_point_per_measurement() {
    let addr = serve(fake()).await;
    let report = check(&client(addr, "akimat", "taza", TOKEN)).await.unwrap();
    assert_eq!(report.bucket_id.as_deref(), Some("0f1e2d3c4b5a6978"));
    assert_eq!(report.retention, None, "everySeconds 0 keeps for ever");
    let at = |m: &str| {
        report
            .newest
            .iter()
            .find(|(n, _)| n == m)
            .unwrap_or_else(|| panic!("{m} missing: {report:?}"))
            .1
            .map(|t| t.0)
    };
    assert_eq!(at("air"), Some(TS_AIR));
    assert_eq!(at("water"), Some(at("air").unwrap() - 300));
    assert_eq!(at("climate"), None, "no point yet");
    let text = report.to_string();
    assert!(text.contains("retention: for ever"), "{text}");
    assert!(text.contains("air      2026-12-03T17:40:00Z"), "{text}");
    assert!(text.contains("climate  none"), "{text}");

    let addr = serve(Fake {
        every_seconds: 400 * 86_400,
        ..fake()
    })
    .await;
    let report = check(&client(addr, "akimat", "taza", TOKEN)).await.unwrap();
    assert_eq!(report.retention, Some(Duration::from_secs(400 * 86_400)));
    assert!(report.to_string().contains("retention: 400d\n"), "{report}");
}

#[tokio::test]
async fn a_bad_token_is_a_401_named_as_such() {
    let addr = serve(fake()).await;
    let e = check(&client(addr, "akimat", "taza", "wrong-token-000000"))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        CheckError::BadToken {
            message: "unauthorized access".into()
        }
    );
    assert!(e.to_string().contains("401"), "{e}");
    assert!(e.to_string().contains("token_file"), "{e}");
}

#[tokio::test]
async fn a_missing_bucket_and_a_missing_organization_are_told_apart() {
    let addr = serve(fake()).await;
    let e = check(&client(addr, "akimat", "tazaa", TOKEN))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, CheckError::MissingBucket { bucket, org, .. } if bucket == "tazaa" && org == "akimat"),
        "{e:?}"
    );
    assert!(e.to_string().contains("bucket \"tazaa\" not found"), "{e}");

    let e = check(&client(addr, "akimatt", "taza", TOKEN))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        CheckError::MissingOrg {
            org: "akimatt".into(),
            message: "organization name \"akimatt\" not found".into()
        }
    );
}

#[tokio::test]
async fn nothing_listening_is_unreachable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let e = check(&client(addr, "akimat", "taza", TOKEN))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, CheckError::Unreachable { url, .. } if *url == format!("http://{addr}")),
        "{e:?}"
    );
    assert!(e.to_string().contains("unreachable"), "{e}");
}

#[tokio::test]
async fn a_body_that_is_not_annotated_csv_is_a_clear_error() {
    for csv in [
        // No annotations at all.
        "result,table,_measurement,_time\r\n,_result,0,air,2026-12-03T17:40:00Z\r\n",
        // A datatype the format does not have.
        "#datatype,string,long,string,instant\r\n#group,false,false,true,false\r\n#default,_result,,,\r\n,result,table,_measurement,_time\r\n,,0,air,x\r\n",
        // A time that is not RFC 3339.
        "#datatype,string,long,string,dateTime:RFC3339\r\n#group,false,false,true,false\r\n#default,_result,,,\r\n,result,table,_measurement,_time\r\n,,0,air,yesterday\r\n",
        // Rows of the wrong width.
        "#datatype,string,long,string,dateTime:RFC3339\r\n#group,false,false,true,false\r\n#default,_result,,,\r\n,result,table,_measurement,_time\r\n,,0,air\r\n",
        // A column of the wrong type for what is asked.
        "#datatype,string,long,long,dateTime:RFC3339\r\n#group,false,false,true,false\r\n#default,_result,,,\r\n,result,table,_measurement,_time\r\n,,0,7,2026-12-03T17:40:00Z\r\n",
    ] {
        let addr = serve(Fake {
            csv: csv.into(),
            ..fake()
        })
        .await;
        let e = check(&client(addr, "akimat", "taza", TOKEN))
            .await
            .unwrap_err();
        assert!(
            matches!(e, CheckError::BadAnswer { what: "the newest-point query", .. }),
            "{csv:?}: {e:?}"
        );
    }
    // A Flux runtime error comes as an `error` table in a 200.
    let addr = serve(Fake {
        csv: "#datatype,string,string\r\n#group,true,true\r\n#default,,\r\n,error,reference\r\n,\"panic: runtime error: out of memory\",897\r\n".into(),
        ..fake()
    })
    .await;
    let e = check(&client(addr, "akimat", "taza", TOKEN))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("out of memory"), "{e}");
}
