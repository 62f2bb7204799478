//! The parts of a request's URL the Worker routes on, read straight from the text the runtime
//! gives it. That text is already a normalised absolute URL (scheme and host in lower case, no
//! default port, dot segments resolved, host in ASCII), so splitting it is enough; a full URL
//! parser (the `url` crate, with its Unicode host handling) was about 23 KB (gzip) of the
//! Worker's wasm and a parse on every request.

/// `origin`, `path` and `query` of an absolute URL, as `url::Url` would give them for the
/// runtime's normalised URLs: the origin `scheme://host[:port]`, the path still percent-encoded
/// (`/` when empty), the query without its `?` (empty when there is none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlParts<'a> {
    pub origin: &'a str,
    pub path: &'a str,
    pub query: &'a str,
}

pub fn split(url: &str) -> UrlParts<'_> {
    let url = url.split('#').next().unwrap_or_default();
    let (before_query, query) = url.split_once('?').unwrap_or((url, ""));
    let after_scheme = before_query.find("://").map_or(0, |i| i + 3);
    let (origin, path) = match before_query[after_scheme..].find('/') {
        Some(i) => before_query.split_at(after_scheme + i),
        None => (before_query, "/"),
    };
    UrlParts {
        origin,
        path,
        query,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_runtimes_urls() {
        let parts = split("https://chat.example.com/api/v1/widget?site=pk_a-b&x=%20y#top");
        assert_eq!(parts.origin, "https://chat.example.com");
        assert_eq!(parts.path, "/api/v1/widget");
        assert_eq!(parts.query, "site=pk_a-b&x=%20y");
        let parts = split("http://127.0.0.1:8787");
        assert_eq!(
            (parts.origin, parts.path, parts.query),
            ("http://127.0.0.1:8787", "/", "")
        );
        let parts = split("http://[::1]:8787/healthz?");
        assert_eq!(
            (parts.origin, parts.path, parts.query),
            ("http://[::1]:8787", "/healthz", "")
        );
        let parts = split("http://h.example/a%2Fb/c?q=a?b");
        assert_eq!((parts.path, parts.query), ("/a%2Fb/c", "q=a?b"));
        let parts = split("http://h.example?q=1");
        assert_eq!(
            (parts.origin, parts.path, parts.query),
            ("http://h.example", "/", "q=1")
        );
    }
}
