//! The department's built-in dashboard: plain HTML, CSS and JavaScript from `gateway/crates/api/dashboard/`,
//! embedded in the binary (no front-end build step, no network beyond this gateway). `/` serves
//! `index.html`; `/assets/{name}` serves only the embedded files. Every response carries a strict
//! Content-Security-Policy, an ETag (a hash of the file, so a new binary invalidates caches) and
//! `Cache-Control: no-cache` (browsers revalidate and get `304 Not Modified` while unchanged).

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::ApiError;

/// The policy of every dashboard response: nothing inline, nothing from elsewhere.
const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   style-src 'self'; script-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// One embedded file.
#[derive(Debug)]
pub(crate) struct Asset {
    /// Name under `/assets/` (`index.html` is also served at `/`).
    pub name: &'static str,
    /// Content type.
    pub content_type: &'static str,
    /// Bytes.
    pub body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file of the dashboard.
pub(crate) const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: HTML,
        body: include_bytes!("../dashboard/index.html"),
    },
    Asset {
        name: "style.css",
        content_type: CSS,
        body: include_bytes!("../dashboard/style.css"),
    },
    Asset {
        name: "app.js",
        content_type: JS,
        body: include_bytes!("../dashboard/app.js"),
    },
    Asset {
        name: "page-overview.js",
        content_type: JS,
        body: include_bytes!("../dashboard/page-overview.js"),
    },
    Asset {
        name: "page-alerts.js",
        content_type: JS,
        body: include_bytes!("../dashboard/page-alerts.js"),
    },
    Asset {
        name: "page-post.js",
        content_type: JS,
        body: include_bytes!("../dashboard/page-post.js"),
    },
    Asset {
        name: "page-targets.js",
        content_type: JS,
        body: include_bytes!("../dashboard/page-targets.js"),
    },
    Asset {
        name: "page-zones.js",
        content_type: JS,
        body: include_bytes!("../dashboard/page-zones.js"),
    },
    Asset {
        name: "page-rivers.js",
        content_type: JS,
        body: include_bytes!("../dashboard/page-rivers.js"),
    },
    Asset {
        name: "api.js",
        content_type: JS,
        body: include_bytes!("../dashboard/api.js"),
    },
    Asset {
        name: "i18n.js",
        content_type: JS,
        body: include_bytes!("../dashboard/i18n.js"),
    },
    Asset {
        name: "time.js",
        content_type: JS,
        body: include_bytes!("../dashboard/time.js"),
    },
    Asset {
        name: "dom.js",
        content_type: JS,
        body: include_bytes!("../dashboard/dom.js"),
    },
    Asset {
        name: "levels.js",
        content_type: JS,
        body: include_bytes!("../dashboard/levels.js"),
    },
    Asset {
        name: "live.js",
        content_type: JS,
        body: include_bytes!("../dashboard/live.js"),
    },
    Asset {
        name: "map.js",
        content_type: JS,
        body: include_bytes!("../dashboard/map.js"),
    },
    Asset {
        name: "basemap.js",
        content_type: JS,
        body: include_bytes!("../dashboard/basemap.js"),
    },
    Asset {
        name: "alert-list.js",
        content_type: JS,
        body: include_bytes!("../dashboard/alert-list.js"),
    },
    Asset {
        name: "charts.js",
        content_type: JS,
        body: include_bytes!("../dashboard/charts.js"),
    },
    Asset {
        name: "lang-ru.js",
        content_type: JS,
        body: include_bytes!("../dashboard/lang-ru.js"),
    },
    Asset {
        name: "lang-kk.js",
        content_type: JS,
        body: include_bytes!("../dashboard/lang-kk.js"),
    },
    Asset {
        name: "lang-en.js",
        content_type: JS,
        body: include_bytes!("../dashboard/lang-en.js"),
    },
];

/// The embedded file called `name`, if any.
pub(crate) fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// Strong ETag of each asset (FNV-1a 64 of its bytes), computed once.
fn etag(index: usize) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                for b in a.body {
                    h ^= u64::from(*b);
                    h = h.wrapping_mul(0x0000_0100_0000_01b3);
                }
                format!("\"{h:016x}\"")
            })
            .collect()
    });
    tags.get(index).map(String::as_str).unwrap_or("\"0\"")
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let (Some(asset), Some(index)) = (asset(name), ASSETS.iter().position(|a| a.name == name))
    else {
        return ApiError::NotFound(format!("no dashboard asset {name:?}")).into_response();
    };
    let tag = etag(index);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let common = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::ETAG,
            HeaderValue::from_str(tag).unwrap_or(HeaderValue::from_static("\"0\"")),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset_route(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

/// The dashboard's routes, merged into the API router.
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset_route))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Local files `index.html` refers to (`src="/assets/..."`, `href="/assets/..."`), and
    /// the modules that `app.js` imports.
    fn referenced() -> Vec<String> {
        let mut out = Vec::new();
        for a in ASSETS {
            let text = std::str::from_utf8(a.body).unwrap();
            for marker in ["\"/assets/", "'/assets/", "\"./", "'./"] {
                let mut rest = text;
                while let Some(at) = rest.find(marker) {
                    let tail = &rest[at + marker.len()..];
                    let end = tail.find(['"', '\'', '?', '#']).unwrap();
                    let name = &tail[..end];
                    if name.ends_with(".js") || name.ends_with(".css") || name.ends_with(".html") {
                        out.push(name.to_string());
                    }
                    rest = &tail[end..];
                }
            }
        }
        out
    }

    #[test]
    fn every_referenced_file_is_embedded() {
        let refs = referenced();
        assert!(refs.iter().any(|r| r == "app.js"), "{refs:?}");
        assert!(refs.iter().any(|r| r == "style.css"), "{refs:?}");
        for r in &refs {
            assert!(asset(r).is_some(), "{r} is referenced but not embedded");
        }
    }

    #[test]
    fn embedded_total_is_under_300_kb() {
        let total: usize = ASSETS.iter().map(|a| a.body.len()).sum();
        assert!(total < 300 * 1024, "dashboard weighs {total} bytes");
    }

    #[test]
    fn no_inline_scripts_styles_or_external_urls() {
        let html = std::str::from_utf8(asset("index.html").unwrap().body).unwrap();
        assert!(!html.contains("<style"), "inline style element");
        assert!(!html.contains(" style="), "inline style attribute");
        for (at, _) in html.match_indices(" on") {
            let word: String = html[at + 3..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase())
                .collect();
            let next = html[at + 3 + word.len()..].chars().next();
            assert!(
                word.is_empty() || next != Some('='),
                "inline handler on{word}="
            );
        }
        for a in ASSETS {
            // The SVG namespace is a name, not a request.
            let text = std::str::from_utf8(a.body)
                .unwrap()
                .replace("http://www.w3.org/2000/svg", "");
            assert!(!text.contains("http://"), "{} refers to http://", a.name);
            assert!(!text.contains("https://"), "{} refers to https://", a.name);
        }
        // Script tags only with src.
        for chunk in html.split("<script").skip(1) {
            let open = &chunk[..chunk.find('>').unwrap()];
            assert!(open.contains("src="), "inline script: <script{open}>");
            assert!(chunk[chunk.find('>').unwrap() + 1..].starts_with("</script>"));
        }
    }

    #[tokio::test]
    async fn serves_files_with_types_csp_and_etag() {
        let r = index(HeaderMap::new()).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], HTML);
        assert!(r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self'"));
        let tag = r.headers()[header::ETAG].clone();

        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, tag);
        assert_eq!(index(h).await.status(), StatusCode::NOT_MODIFIED);

        for (name, ty) in [("app.js", JS), ("style.css", CSS), ("i18n.js", JS)] {
            let r = asset_route(Path(name.to_string()), HeaderMap::new()).await;
            assert_eq!(r.status(), StatusCode::OK, "{name}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], ty, "{name}");
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        }
        for name in ["nope.js", "../Cargo.toml", ""] {
            let r = asset_route(Path(name.to_string()), HeaderMap::new()).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{name}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        }
    }
}
