//! The two parts of a request URL the relay reads: its path and its query.
//! A full URL parser (the `url` crate, with its IDNA and Unicode tables) was
//! the largest dependency of the Worker for three URLs the runtime has
//! already parsed and normalised; splitting them is enough.

/// The path (always starting with `/`) and the raw query (after `?`, without
/// the fragment) of an absolute URL as the runtime hands it over.
pub fn split(url: &str) -> (&str, &str) {
    let without_fragment = url.split('#').next().unwrap_or("");
    let after_scheme = without_fragment.find("://").map_or(0, |i| i + 3);
    let rest = &without_fragment[after_scheme..];
    let path_start = rest.find(['/', '?']).map_or(rest.len(), |i| i);
    let path_and_query = &rest[path_start..];
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    (if path.is_empty() { "/" } else { path }, query)
}

/// The query's decoded `key=value` pairs, in order (`application/x-www-form-urlencoded`).
pub fn pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries() {
        assert_eq!(split("http://127.0.0.1:8787/session?id=a&secret=b"), ("/session", "id=a&secret=b"));
        assert_eq!(split("https://relay.example/session/abc"), ("/session/abc", ""));
        assert_eq!(split("https://relay.example"), ("/", ""));
        assert_eq!(split("https://relay.example?x=1"), ("/", "x=1"));
        assert_eq!(split("https://relay.example/a?b=c#frag"), ("/a", "b=c"));
        let decoded: Vec<_> = pairs("keepAlive=a%20b+c&client=u%2F1&flag").collect();
        assert_eq!(
            decoded,
            vec![("keepAlive".into(), "a b c".into()), ("client".into(), "u/1".into()), ("flag".into(), String::new())]
        );
    }
}
