//! The request's query string ([`Params`]) and Django REST framework's limit/offset
//! pagination (`{"count", "next", "previous", "results"}`).

use std::fmt::Write as _;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Serialize;
use serde_json::{Value, json};

use super::ApiError;

/// DRF's `PAGE_SIZE` in LAVA's settings.
pub const PAGE_SIZE: u64 = 50;

/// The largest page served (DRF's `LimitOffsetPagination.max_limit`, which LAVA leaves
/// unset): a larger `limit` is served as this many rows, and `next` links the rest, so one
/// request never renders a whole table.
pub const MAX_LIMIT: u64 = 1000;

/// The decoded query parameters in request order, plus what pagination links need.
#[derive(Debug, Clone, Default)]
pub struct Params {
    /// `(name, value)` pairs, repeated names kept.
    pub pairs: Vec<(String, String)>,
    /// `http://host` as the client addressed the server.
    origin: String,
    /// The request path.
    path: String,
}

impl Params {
    /// The last value given for `name`, as Django's `QueryDict.get` returns it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `http://host/api/v0.2` (the version prefix of this request), for resource URIs.
    pub fn base(&self) -> String {
        let prefix = match self.path.strip_prefix("/api/") {
            Some(rest) => format!("/api/{}", rest.split('/').next().unwrap_or("v0.2")),
            None => "/api/v0.2".to_owned(),
        };
        format!("{}{prefix}", self.origin)
    }

    /// DRF's limit/offset: a bad or non-positive limit falls back to the page size, a larger
    /// one than [`MAX_LIMIT`] is cut to it (as DRF does with `max_limit`), a bad offset falls
    /// back to 0.
    pub fn page(&self) -> Page {
        let limit = self
            .get("limit")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|l| *l > 0)
            .unwrap_or(PAGE_SIZE)
            .min(MAX_LIMIT);
        let offset = self
            .get("offset")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        Page { limit, offset }
    }

    /// An absolute URL for this request with `key` replaced by `value` (or removed), the
    /// query sorted by name as DRF writes it.
    fn with(&self, changes: &[(&str, Option<u64>)]) -> String {
        let mut pairs: Vec<(String, String)> = self
            .pairs
            .iter()
            .filter(|(k, _)| !changes.iter().any(|(c, _)| c == k))
            .cloned()
            .collect();
        for (key, value) in changes {
            if let Some(value) = value {
                pairs.push(((*key).to_owned(), value.to_string()));
            }
        }
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut url = format!("{}{}", self.origin, self.path);
        for (i, (k, v)) in pairs.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            quote_plus(k, &mut url);
            url.push('=');
            quote_plus(v, &mut url);
        }
        url
    }

    /// The paginated response body.
    pub fn paginated(&self, page: Page, count: u64, results: Vec<Value>) -> Value {
        let body = self.page_body(page, count, results);
        json!({
            "count": body.count,
            "next": body.next,
            "previous": body.previous,
            "results": body.results,
        })
    }

    /// The paginated response body over rows serialised as they are (no `Value` tree per
    /// row); its fields come out in the order [`Params::paginated`] writes them.
    pub fn page_body<T: Serialize>(&self, page: Page, count: u64, results: Vec<T>) -> PageBody<T> {
        let next = (page.offset.saturating_add(page.limit) < count).then(|| {
            self.with(&[
                ("limit", Some(page.limit)),
                ("offset", Some(page.offset.saturating_add(page.limit))),
            ])
        });
        let previous = (page.offset > 0).then(|| {
            if page.offset <= page.limit {
                self.with(&[("limit", Some(page.limit)), ("offset", None)])
            } else {
                self.with(&[
                    ("limit", Some(page.limit)),
                    ("offset", Some(page.offset - page.limit)),
                ])
            }
        });
        PageBody {
            count,
            next,
            previous,
            results,
        }
    }
}

/// DRF's `{"count", "next", "previous", "results"}`.
#[derive(Debug, Serialize)]
pub struct PageBody<T> {
    count: u64,
    next: Option<String>,
    previous: Option<String>,
    results: Vec<T>,
}

/// Python's `urllib.parse.quote_plus`.
fn quote_plus(text: &str, out: &mut String) {
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(byte as char);
            }
            b' ' => out.push('+'),
            other => {
                let _ = write!(out, "%{other:02X}");
            }
        }
    }
}

/// A limit/offset window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Rows per page.
    pub limit: u64,
    /// Rows skipped.
    pub offset: u64,
}

impl Page {
    /// This window of an in-memory list.
    pub fn slice<T>(&self, items: Vec<T>) -> Vec<T> {
        let offset = usize::try_from(self.offset).unwrap_or(usize::MAX);
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        items.into_iter().skip(offset).take(limit).collect()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Params, ApiError> {
        let axum::extract::Query(pairs) =
            axum::extract::Query::<Vec<(String, String)>>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::detail("Malformed query string."))?;
        let host = parts
            .headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let path = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or_else(|| parts.uri.path().to_owned(), |u| u.path().to_owned());
        Ok(Params {
            pairs,
            origin: format!("http://{host}"),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &[(&str, &str)]) -> Params {
        Params {
            pairs: query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            origin: "http://lab".to_owned(),
            path: "/api/v0.2/jobs/".to_owned(),
        }
    }

    #[test]
    fn a_larger_limit_is_served_as_the_maximum_with_next() {
        let p = params(&[("limit", "1000000")]);
        let page = p.page();
        assert_eq!(
            page,
            Page {
                limit: MAX_LIMIT,
                offset: 0
            }
        );
        let body = p.paginated(page, 2500, Vec::new());
        assert_eq!(
            body["next"],
            "http://lab/api/v0.2/jobs/?limit=1000&offset=1000"
        );
        assert_eq!(params(&[("limit", "20")]).page().limit, 20);
        assert_eq!(params(&[("limit", "0")]).page().limit, PAGE_SIZE);
        assert_eq!(params(&[]).page().limit, PAGE_SIZE);
    }
}
