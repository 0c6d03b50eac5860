//! The web console: a small dependency-free page and script embedded in the binary, served by
//! every node on the API listener at `/console/` (same TLS, no CDN, no build step). The browser
//! signs every call it makes with TC3-HMAC-SHA256 itself (WebCrypto), with the SecretId and
//! SecretKey typed at sign-in and kept only in the page's memory; so the console holds no session,
//! grants nothing the API would not, and every action passes the same core, policies and audit
//! trail as any SDK call. There is no cookie, so there is nothing for a cross-site request to
//! ride on; framing is refused (`frame-ancestors 'none'`, `X-Frame-Options: DENY`) and the
//! content security policy allows only this origin's own script and style. docs/console.md.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The content security policy of every console answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes (merged into the API router).
pub fn router() -> Router {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route(
            "/console/",
            get(|headers: HeaderMap| async move {
                asset_response(INDEX, "text/html; charset=utf-8", &headers)
            }),
        )
        .route("/console/{file}", get(asset))
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match file.as_str() {
        "app.js" => asset_response(APP_JS, "text/javascript; charset=utf-8", &headers),
        "app.css" => asset_response(APP_CSS, "text/css; charset=utf-8", &headers),
        "index.html" => asset_response(INDEX, "text/html; charset=utf-8", &headers),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Whether HSTS suits the host the browser asked for: not `localhost` (the header would bind
/// every port of it, other local development servers included) and not an IP address (where
/// browsers ignore it anyway).
fn hsts_suits(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_none_or(|a| a.parse::<std::net::IpAddr>().is_err())
        }
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    !(name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok())
}

fn asset_response(body: &'static str, content_type: &'static str, headers: &HeaderMap) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // No other window keeps a handle on the console, and no other origin embeds its files.
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    // The API listener serves TLS unless a test set `insecure-plaintext` (where browsers ignore
    // this header): browsers that reached the console once never try plain HTTP for it again.
    if hsts_suits(headers) {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_embedded_and_reference_only_their_own_origin() {
        assert!(INDEX.contains("app.js") && INDEX.contains("app.css"));
        for text in [INDEX, APP_JS, APP_CSS] {
            // The SVG namespace is a name, never fetched.
            let text = text.replace("\"http://www.w3.org/2000/svg\"", "");
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "no external URL"
            );
        }
        // No inline script: the content security policy would refuse it.
        assert!(!INDEX.contains("<script>") && !INDEX.contains("onclick="));
    }

    #[test]
    fn hsts_is_sent_for_names_but_not_for_localhost_or_addresses() {
        let with = |host: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::HOST,
                HeaderValue::from_str(host).unwrap_or(HeaderValue::from_static("x")),
            );
            hsts_suits(&h)
        };
        assert!(with("kms.example.com:8081") && with("kms.example.com"));
        for host in [
            "localhost:8081",
            "LOCALHOST",
            "app.localhost:1",
            "127.0.0.1:8081",
            "[::1]:8081",
            "10.0.0.1",
        ] {
            assert!(!with(host), "{host}");
        }
        assert!(!hsts_suits(&HeaderMap::new()));
    }
}
