//! The page at `/` (documentation and test area) and the client library,
//! compiled into the Worker from `public/` and `client/`.
//!
//! Why not Workers static assets: with an `[assets]` directory every request,
//! WebSocket upgrades included, first passes through the assets router, and
//! under `wrangler dev` each socket then crosses one more proxy hop for its
//! whole life. Measured with 1,800 sockets, that hop cost about 90 KiB of
//! workerd memory per socket, more than the relay itself. The page is a few
//! files; the Worker serves them itself, with an ETag so browsers revalidate
//! for free.

/// One file the Worker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    pub body: &'static str,
    pub content_type: &'static str,
}

const FILES: [(&str, Asset); 5] = [
    ("/", Asset { body: include_str!("../../public/index.html"), content_type: "text/html; charset=utf-8" }),
    ("/index.html", Asset { body: include_str!("../../public/index.html"), content_type: "text/html; charset=utf-8" }),
    ("/app.js", Asset { body: include_str!("../../public/app.js"), content_type: "text/javascript; charset=utf-8" }),
    ("/style.css", Asset { body: include_str!("../../public/style.css"), content_type: "text/css; charset=utf-8" }),
    (
        "/relay-client.js",
        Asset { body: include_str!("../../client/relay-client.js"), content_type: "text/javascript; charset=utf-8" },
    ),
];

/// The file served at `path`, if any.
pub fn asset(path: &str) -> Option<Asset> {
    FILES.iter().find(|(p, _)| *p == path).map(|(_, a)| *a)
}

impl Asset {
    /// A strong ETag: the FNV-1a hash of the body, which only changes with a
    /// new build.
    pub fn etag(&self) -> String {
        let hash =
            self.body.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        format!("\"{hash:016x}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_the_library_are_served() {
        let page = asset("/").unwrap();
        assert!(page.body.contains("<html") && page.content_type.starts_with("text/html"));
        assert_eq!(asset("/index.html"), Some(page));
        assert!(asset("/relay-client.js").unwrap().body.contains("export"));
        assert!(asset("/nope").is_none() && asset("/session").is_none());
        assert_eq!(page.etag(), page.etag());
        assert_ne!(page.etag(), asset("/app.js").unwrap().etag());
    }
}
