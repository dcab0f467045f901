//! The UI's static files, compiled in: the vendored htmx and its SSE extension (pinned by
//! sha256, re-vendored only by `scripts/vendor-js.sh`), our own `app.js` and `app.css`.
//! Served under `/static/` with their version in the name where they have one.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One compiled-in file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "htmx-2.0.11.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("static/htmx-2.0.11.min.js"),
    },
    Asset {
        name: "htmx-ext-sse-2.2.4.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("static/htmx-ext-sse-2.2.4.min.js"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("static/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("static/app.css"),
    },
];

/// `GET /static/<name>`.
pub async fn serve(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            asset.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// The vendored files are exactly the ones `scripts/vendor-js.sh` checked out of npm.
    #[test]
    fn vendored_files_match_their_pins() {
        let pins = include_str!("static/SHA256SUMS");
        let mut checked = 0;
        for line in pins.lines() {
            let (hash, name) = line.split_once("  ").expect("sha256sum line");
            let asset = ASSETS.iter().find(|a| a.name == name).expect(name);
            let got: String = Sha256::digest(asset.body)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(got, hash, "{name}");
            checked += 1;
        }
        assert_eq!(checked, 2);
    }
}
