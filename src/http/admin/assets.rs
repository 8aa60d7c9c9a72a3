//! The admin UI's static files, embedded from `web/` with rust-embed (read from disk in debug
//! builds, compiled in for release), served under `/_/`.
//!
//! Caching: `index.html` is rewritten so its script, stylesheet and icon load from
//! `/_/v/<VERSION>/…`, where VERSION is a hash over every embedded file. Everything under that
//! prefix is immutable (cached for a year), and since ES modules import each other by relative
//! path, the whole module graph inherits the versioned prefix. The index itself and unversioned
//! paths are `no-cache` with a strong ETag, so a new binary is picked up at the next load.

use super::headers;
use crate::http::error::ApiError;
use crate::http::response::Body;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, IF_NONE_MATCH};
use hyper::{Method, Response, StatusCode};
use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

#[derive(RustEmbed)]
#[folder = "web/"]
struct Assets;

/// Hash of all embedded files (first 12 hex digits).
pub fn version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        let mut names: Vec<_> = Assets::iter().collect();
        names.sort();
        let mut h = Sha256::new();
        for n in names {
            if let Some(f) = Assets::get(&n) {
                h.update(n.as_bytes());
                h.update(f.metadata.sha256_hash());
            }
        }
        crate::store::ids::hex(&h.finalize()[..6])
    })
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// The index with versioned asset URLs.
fn index_html(raw: &[u8]) -> Vec<u8> {
    let v = version();
    let s = String::from_utf8_lossy(raw);
    s.replace("src=\"js/", &format!("src=\"v/{v}/js/"))
        .replace("href=\"app.css\"", &format!("href=\"v/{v}/app.css\""))
        .replace(
            "href=\"favicon.svg\"",
            &format!("href=\"v/{v}/favicon.svg\""),
        )
        .into_bytes()
}

/// Serves `rest` (the path after `/_/`, no leading slash). GET and HEAD only.
pub fn serve(
    method: &Method,
    rest: &str,
    req_headers: &HeaderMap,
) -> Result<Response<Body>, ApiError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::method_not_allowed(
            method,
            &[Method::GET, Method::HEAD],
        ));
    }
    let (path, immutable) = match rest.strip_prefix("v/").and_then(|r| r.split_once('/')) {
        Some((v, p)) => (p, v == version()),
        None => (rest, false),
    };
    let path = if path.is_empty() { "index.html" } else { path };
    if path.contains("..") || path.starts_with('/') {
        return Err(ApiError::not_found(format!("no file /_/{rest}")));
    }
    let file =
        Assets::get(path).ok_or_else(|| ApiError::not_found(format!("no file /_/{rest}")))?;
    let is_index = path == "index.html";
    let hash = file.metadata.sha256_hash();
    // The index's bytes depend on the version too, so its tag covers both.
    let etag = if is_index {
        format!("\"{}-{}\"", crate::store::ids::hex(&hash[..8]), version())
    } else {
        format!("\"{}\"", crate::store::ids::hex(&hash[..8]))
    };
    let cache = if immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let not_modified = req_headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let body = if not_modified || method == Method::HEAD {
        Bytes::new()
    } else if is_index {
        Bytes::from(index_html(&file.data))
    } else {
        Bytes::from(file.data.into_owned())
    };
    let mut resp = Response::new(Full::new(body));
    if not_modified {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
    }
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    headers::security(h);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_points_at_versioned_assets() {
        let out = String::from_utf8(index_html(
            br#"<link rel="stylesheet" href="app.css"><script type="module" src="js/app.js"></script>"#,
        ))
        .unwrap();
        let v = version();
        assert!(out.contains(&format!("href=\"v/{v}/app.css\"")), "{out}");
        assert!(out.contains(&format!("src=\"v/{v}/js/app.js\"")), "{out}");
    }

    #[test]
    fn serves_with_etag_and_304() {
        let r = serve(&Method::GET, "", &HeaderMap::new()).unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[CACHE_CONTROL], "no-cache");
        let etag = r.headers()[ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(IF_NONE_MATCH, etag);
        assert_eq!(serve(&Method::GET, "index.html", &h).unwrap().status(), 304);
        let v = serve(
            &Method::GET,
            &format!("v/{}/js/app.js", version()),
            &HeaderMap::new(),
        )
        .unwrap();
        assert!(
            v.headers()[CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        assert!(
            v.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/javascript")
        );
        assert!(serve(&Method::GET, "nope.js", &HeaderMap::new()).is_err());
        assert!(serve(&Method::GET, "../Cargo.toml", &HeaderMap::new()).is_err());
        assert!(serve(&Method::POST, "", &HeaderMap::new()).is_err());
    }
}
