//! The wire protocol of PROTOCOL.md as plain data: what frames mean, what the
//! relay says back, which close codes it uses and which HTTP answers it gives.
//! Every string that leaves the relay is spelled here and nowhere else, because
//! external tests check them letter for letter.

use std::fmt;

/// Longest session id or client uuid accepted (bytes).
pub const MAX_ID_LEN: usize = 128;
/// Longest keep-alive text accepted. It lives in the socket attachment, which
/// the runtime caps at 2 KiB, so it has to be bounded well below that.
pub const MAX_KEEP_ALIVE_LEN: usize = 256;
/// A text frame larger than this closes the sender with 1009.
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// Client messages kept per session while its host is away: bytes ...
pub const MAX_QUEUED_BYTES: usize = 256 * 1024;
/// ... and messages.
pub const MAX_QUEUED_MESSAGES: usize = 4096;

/// A WebSocket close the relay initiates: code plus reason text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: &'static str,
}

pub const CLOSE_TAKEN_OVER: Close = Close { code: 4001, reason: "taken over" };
pub const CLOSE_REPLACED: Close = Close { code: 4002, reason: "replaced" };
pub const CLOSE_SESSION_FULL: Close = Close { code: 4003, reason: "session full" };
pub const CLOSE_SESSION_CLOSED: Close = Close { code: 4004, reason: "session closed" };
pub const CLOSE_BINARY: Close = Close { code: 1003, reason: "binary frames are not supported" };
pub const CLOSE_TOO_BIG: Close = Close { code: 1009, reason: "message too big (limit 1 MiB)" };
pub const CLOSE_HOST_UNAVAILABLE: Close = Close { code: 1013, reason: "host unavailable" };
pub const CLOSE_RATE_LIMITED: Close = Close { code: 1008, reason: "rate limit exceeded" };
/// Section 7: a resume socket whose heartbeat stopped.
pub const CLOSE_NO_HEARTBEAT: Close = Close { code: 4005, reason: "no heartbeat" };
/// A client's message could not be stored for the absent host.
pub const CLOSE_STORAGE_FAILED: Close = Close { code: 1011, reason: "storage error: message not kept" };
/// The queue kept for the host could not be read; it is kept for the next take-over.
pub const CLOSE_REPLAY_FAILED: Close =
    Close { code: 1011, reason: "storage error: reconnect to receive queued messages" };

/// The reason the relay gives with one of its close codes.
pub fn close_reason(code: u16) -> &'static str {
    [
        CLOSE_TAKEN_OVER,
        CLOSE_REPLACED,
        CLOSE_SESSION_FULL,
        CLOSE_SESSION_CLOSED,
        CLOSE_BINARY,
        CLOSE_TOO_BIG,
        CLOSE_HOST_UNAVAILABLE,
        CLOSE_RATE_LIMITED,
        CLOSE_STORAGE_FAILED,
    ]
    .iter()
    .find(|c| c.code == code)
    .map_or("", |c| c.reason)
}

/// HTTP answers with a fixed body.
pub mod http {
    pub const SESSION_NOT_FOUND: &str = "Session not found";
    pub const SESSION_EXISTS: &str = "Session already exists";
    pub const COULD_NOT_CONNECT: &str = "Could not connect to session (not found or invalid secret)";
    pub const UPGRADE_REQUIRED: &str =
        "Upgrade required: this endpoint only accepts WebSocket connections (send Upgrade: websocket)";
    pub const NOT_FOUND: &str = "Not found";
    pub const METHOD_NOT_ALLOWED: &str = "Method not allowed: use GET with Upgrade: websocket";
}

/// The lines of the heartbeat and resume extension (docs/PROTOCOL.md section
/// 7). Every one starts with U+0001, which no game text does.
pub mod ext {
    /// The first character of every line of the extension.
    pub const MARK: char = '\u{1}';
    /// What a socket sends to learn that its connection lives ...
    pub const PING: &str = "\u{1}ping";
    /// ... and what the relay (the runtime, without waking it) answers.
    pub const PONG: &str = "\u{1}pong";
    /// A resume socket silent this long is dead (its heartbeat stopped).
    pub const DEAD_AFTER_MS: f64 = 30_000.0;

    /// `resume=1[&have=<n>]` on a socket path.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct ResumeRequest {
        /// The number of the last relay frame the socket received.
        pub have: u64,
    }

    pub fn is_ext(text: &str) -> bool {
        text.starts_with(MARK)
    }

    /// `␁ack <n>`: every frame up to `n` received (either way).
    pub fn ack(n: u64) -> String {
        format!("\u{1}ack {n}")
    }

    /// `␁resume <m>`: the relay handled the socket's frames up to `m`. After a
    /// reset of the relay's object, `reset` says frames after `m` may have
    /// been handled already (the last second before the reset).
    pub fn resume(m: u64, reset: bool) -> String {
        if reset {
            format!("\u{1}resume {m} reset")
        } else {
            format!("\u{1}resume {m}")
        }
    }

    /// `␁gap <a> <b>`: the relay's frames `a..=b` are lost for good.
    pub fn gap(from: u64, to: u64) -> String {
        format!("\u{1}gap {from} {to}")
    }

    /// The number of a socket's `␁ack <n>`, if that is what the text is.
    pub fn parse_ack(text: &str) -> Option<u64> {
        text.strip_prefix("\u{1}ack ")?.parse().ok()
    }
}

/// Frames the relay sends. Functions rather than `format!` at call sites so the
/// spelling is in one place.
pub mod say {
    pub const INVALID: &str = "invalid";
    pub const MASTER_LEFT: &str = "!master-left";
    pub const NO_SLOTS: &str = "error: no slots available, max clients reached";

    pub fn session(sid: &str) -> String {
        format!("session: {sid}")
    }
    pub fn secret(secret: &str) -> String {
        format!("secret: {secret}")
    }
    pub fn connected(n: u32) -> String {
        format!("connected: {n}")
    }
    pub fn disconnected(n: u32) -> String {
        format!("disconnected: {n}")
    }
    /// A client's message as the host receives it; also the `0:` broadcast.
    pub fn from_client(n: u32, message: &str) -> String {
        use std::fmt::Write;
        // Sized up front: this is the per-message hot path.
        let mut line = String::with_capacity(message.len() + 12);
        let _ = write!(line, "{n}: ");
        line.push_str(message);
        line
    }
    pub fn unknown(n: &str) -> String {
        format!("unknown: {n}")
    }
    pub fn added_slave(slave: &str) -> String {
        format!("!added-slave: {slave}")
    }
    pub fn set_master(master: &str) -> String {
        format!("!set-master: {master}")
    }
    pub fn slave_left(slave: &str) -> String {
        format!("!slave-left: {slave}")
    }
    pub fn stats(json: &str) -> String {
        format!("!stats {json}")
    }
    pub fn version(version: &str) -> String {
        format!("!version {version}")
    }
}

/// True for a session id or client uuid the relay accepts.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A request parameter the relay refused; its `Display` is the 400 body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamError {
    /// Session id: from the `id` query parameter or the `/session/<sid>` path.
    SessionId {
        in_path: bool,
    },
    ClientUuid,
    Reconnect,
    KeepAlive,
    /// `resume=1` on a client path without `client=<uuid>` (section 7).
    ResumeNeedsClient,
    Resume,
    Have,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const RULE: &str = "must be 1 to 128 characters of A-Z a-z 0-9 - _ .";
        match self {
            ParamError::SessionId { in_path: false } => write!(f, "Invalid parameter id (session id): {RULE}"),
            ParamError::SessionId { in_path: true } => write!(f, "Invalid session id in path /session/<id>: {RULE}"),
            ParamError::ClientUuid => write!(f, "Invalid parameter client (client uuid): {RULE}"),
            ParamError::Reconnect => write!(f, "Invalid parameter reconnect: must be true or false"),
            ParamError::KeepAlive => {
                write!(f, "Invalid parameter keepAlive: must be at most {MAX_KEEP_ALIVE_LEN} bytes")
            }
            ParamError::ResumeNeedsClient => write!(f, "Invalid parameter resume: needs client=<uuid>"),
            ParamError::Resume => write!(f, "Invalid parameter resume: must be 1 or 0"),
            ParamError::Have => write!(f, "Invalid parameter have: must be a decimal number"),
        }
    }
}

/// `GET /session?...`: what a host asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostParams {
    pub id: Option<String>,
    pub secret: Option<String>,
    pub keep_alive: Option<String>,
    pub reconnect: bool,
    /// Section 7: the socket opted in to acknowledged resume.
    pub resume: Option<ext::ResumeRequest>,
}

/// `GET /session/<sid>?...`: what a client asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientParams {
    pub uuid: Option<String>,
    pub keep_alive: Option<String>,
    pub resume: Option<ext::ResumeRequest>,
}

/// Reads `resume` and `have` (section 7) from a request's pairs.
fn resume_params(resume: Option<String>, have: Option<String>) -> Result<Option<ext::ResumeRequest>, ParamError> {
    let on = match resume.as_deref() {
        None | Some("0") | Some("false") => false,
        Some("1") | Some("true") | Some("") => true,
        Some(_) => return Err(ParamError::Resume),
    };
    let have = match have {
        Some(v) => v.parse::<u64>().map_err(|_| ParamError::Have)?,
        None => 0,
    };
    Ok(on.then_some(ext::ResumeRequest { have }))
}

fn keep_alive_param(value: String) -> Result<Option<String>, ParamError> {
    // An empty keepAlive would mean sending empty frames forever; treat it as absent.
    if value.is_empty() {
        Ok(None)
    } else if value.len() > MAX_KEEP_ALIVE_LEN {
        Err(ParamError::KeepAlive)
    } else {
        Ok(Some(value))
    }
}

impl HostParams {
    /// Reads decoded query pairs. The first occurrence of a parameter wins;
    /// unknown parameters are ignored so clients can add their own.
    pub fn from_query<I>(pairs: I) -> Result<Self, ParamError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut params = HostParams { reconnect: true, ..Default::default() };
        let (mut seen_reconnect, mut seen_keep_alive) = (false, false);
        let (mut resume, mut have) = (None, None);
        for (key, value) in pairs {
            match key.as_str() {
                "resume" if resume.is_none() => resume = Some(value),
                "have" if have.is_none() => have = Some(value),
                "id" if params.id.is_none() => {
                    if !is_valid_id(&value) {
                        return Err(ParamError::SessionId { in_path: false });
                    }
                    params.id = Some(value);
                }
                "secret" if params.secret.is_none() => params.secret = Some(value),
                "keepAlive" if !seen_keep_alive => {
                    seen_keep_alive = true;
                    params.keep_alive = keep_alive_param(value)?;
                }
                "reconnect" if !seen_reconnect => {
                    seen_reconnect = true;
                    params.reconnect = match value.as_str() {
                        "true" | "" => true,
                        "false" => false,
                        _ => return Err(ParamError::Reconnect),
                    };
                }
                _ => {}
            }
        }
        params.resume = resume_params(resume, have)?;
        Ok(params)
    }
}

impl ClientParams {
    pub fn from_query<I>(pairs: I) -> Result<Self, ParamError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut params = ClientParams::default();
        let mut seen_keep_alive = false;
        let (mut resume, mut have) = (None, None);
        for (key, value) in pairs {
            match key.as_str() {
                "resume" if resume.is_none() => resume = Some(value),
                "have" if have.is_none() => have = Some(value),
                "client" if params.uuid.is_none() => {
                    if !is_valid_id(&value) {
                        return Err(ParamError::ClientUuid);
                    }
                    params.uuid = Some(value);
                }
                "keepAlive" if !seen_keep_alive => {
                    seen_keep_alive = true;
                    params.keep_alive = keep_alive_param(value)?;
                }
                _ => {}
            }
        }
        params.resume = resume_params(resume, have)?;
        if params.resume.is_some() && params.uuid.is_none() {
            return Err(ParamError::ResumeNeedsClient);
        }
        Ok(params)
    }
}

/// Where a request to the relay goes, decided from the path alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    Host,
    Client { session_id: &'a str },
    NotFound,
}

pub fn route(path: &str) -> Result<Route<'_>, ParamError> {
    if path == "/session" {
        return Ok(Route::Host);
    }
    match path.strip_prefix("/session/") {
        Some(sid) if is_valid_id(sid) => Ok(Route::Client { session_id: sid }),
        Some(_) => Err(ParamError::SessionId { in_path: true }),
        None => Ok(Route::NotFound),
    }
}

/// Options of `/join-session`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct JoinOptions {
    pub role: JoinRole,
    pub private: bool,
    pub target: Option<String>,
    pub ghost_mode: bool,
    pub steam_user_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum JoinRole {
    #[default]
    Either,
    Master,
    Slave,
}

/// A host command (a frame starting with `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCommand {
    JoinSession(JoinOptions),
    CloseSession,
    LeaveSession,
    Stats,
    Version,
}

/// What one host frame means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostFrame<'a> {
    /// `<n>: <message>` with n ≥ 1. `client` keeps the digits as sent, so an
    /// `unknown:` answer echoes them unchanged.
    ToClient {
        client: &'a str,
        message: &'a str,
    },
    /// `0: <message>`: to the linked hosts.
    ToLinkedHosts {
        message: &'a str,
    },
    Command(HostCommand),
    Invalid,
}

/// The client id a `<n>` prefix names, if it is in range at all.
pub fn client_number(digits: &str) -> Option<u32> {
    digits.parse::<u32>().ok()
}

pub fn parse_host_frame(frame: &str) -> HostFrame<'_> {
    if frame.starts_with('/') {
        return match parse_command(frame) {
            Some(command) => HostFrame::Command(command),
            None => HostFrame::Invalid,
        };
    }
    let digits_end = frame.bytes().take_while(u8::is_ascii_digit).count();
    if digits_end == 0 || !frame[digits_end..].starts_with(": ") {
        return HostFrame::Invalid;
    }
    let (client, message) = (&frame[..digits_end], &frame[digits_end + 2..]);
    if client.bytes().all(|b| b == b'0') {
        HostFrame::ToLinkedHosts { message }
    } else {
        HostFrame::ToClient { client, message }
    }
}

fn parse_command(frame: &str) -> Option<HostCommand> {
    let mut words = frame.split(' ');
    let command = match words.next()? {
        "/close-session" => HostCommand::CloseSession,
        "/leave-session" => HostCommand::LeaveSession,
        "/stats" => HostCommand::Stats,
        "/version" => HostCommand::Version,
        "/join-session" => return parse_join_options(words).map(HostCommand::JoinSession),
        _ => return None,
    };
    // The other commands take no arguments.
    words.all(str::is_empty).then_some(command)
}

fn parse_join_options<'a>(words: impl Iterator<Item = &'a str>) -> Option<JoinOptions> {
    let mut options = JoinOptions::default();
    let (mut seen_role, mut seen_ghost) = (false, false);
    for word in words.filter(|w| !w.is_empty()) {
        match word.split_once('=') {
            None => match word {
                "master" | "slave" if !seen_role => {
                    seen_role = true;
                    options.role = if word == "master" { JoinRole::Master } else { JoinRole::Slave };
                }
                "private" if !options.private => options.private = true,
                _ => return None,
            },
            Some(("id", sid)) if options.target.is_none() && is_valid_id(sid) => options.target = Some(sid.to_string()),
            Some(("ghostMode", value)) if !seen_ghost => {
                seen_ghost = true;
                options.ghost_mode = match value {
                    "true" => true,
                    "false" => false,
                    _ => return None,
                };
            }
            Some(("steamUserId", steam_id)) if options.steam_user_id.is_none() && is_valid_steam_id(steam_id) => {
                options.steam_user_id = Some(steam_id.to_string())
            }
            _ => return None,
        }
    }
    // `private` qualifies a master; `id=` makes the session a slave of that one.
    if options.private && options.role != JoinRole::Master {
        return None;
    }
    if options.target.is_some() {
        if options.role == JoinRole::Master {
            return None;
        }
        options.role = JoinRole::Slave;
    }
    Some(options)
}

/// Steam ids are 64-bit decimal numbers.
fn is_valid_steam_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn ids_accept_the_documented_alphabet_only() {
        assert!(is_valid_id("abc-DEF_123.x"));
        assert!(is_valid_id(&"a".repeat(128)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id(&"a".repeat(129)));
        for bad in ["a b", "a/b", "ä", "a%20", "a+b", "a:b", "<x>"] {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn relay_frames_split_at_the_first_colon_space() {
        assert_eq!(
            parse_host_frame("3: hello: world\nline two"),
            HostFrame::ToClient { client: "3", message: "hello: world\nline two" }
        );
        assert_eq!(parse_host_frame("12: "), HostFrame::ToClient { client: "12", message: "" });
        assert_eq!(parse_host_frame("0: all"), HostFrame::ToLinkedHosts { message: "all" });
        assert_eq!(parse_host_frame("00: all"), HostFrame::ToLinkedHosts { message: "all" });
    }

    #[test]
    fn malformed_frames_are_invalid() {
        for frame in ["hello", "5:x", "-1: x", "/nonsense", "", " 1: x", "1 : x", "a: x", "/stats now", "1:"] {
            assert_eq!(parse_host_frame(frame), HostFrame::Invalid, "{frame:?}");
        }
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parse_host_frame("/stats"), HostFrame::Command(HostCommand::Stats));
        assert_eq!(parse_host_frame("/version"), HostFrame::Command(HostCommand::Version));
        assert_eq!(parse_host_frame("/close-session"), HostFrame::Command(HostCommand::CloseSession));
        assert_eq!(parse_host_frame("/leave-session"), HostFrame::Command(HostCommand::LeaveSession));
        assert_eq!(
            parse_host_frame("/join-session"),
            HostFrame::Command(HostCommand::JoinSession(JoinOptions::default()))
        );
    }

    #[test]
    fn join_options_in_any_order() {
        let HostFrame::Command(HostCommand::JoinSession(o)) =
            parse_host_frame("/join-session ghostMode=true private master steamUserId=7656119")
        else {
            panic!()
        };
        assert_eq!(o.role, JoinRole::Master);
        assert!(o.private && o.ghost_mode);
        assert_eq!(o.steam_user_id.as_deref(), Some("7656119"));

        let HostFrame::Command(HostCommand::JoinSession(o)) = parse_host_frame("/join-session id=foo") else {
            panic!()
        };
        assert_eq!((o.role, o.target.as_deref()), (JoinRole::Slave, Some("foo")));
    }

    #[test]
    fn contradictory_join_options_are_invalid() {
        for frame in [
            "/join-session master slave",
            "/join-session private",
            "/join-session slave private",
            "/join-session master id=foo",
            "/join-session ghostMode=maybe",
            "/join-session id=",
            "/join-session id=a/b",
            "/join-session steamUserId=abc",
            "/join-session bogus",
            "/join-sessionx",
        ] {
            assert_eq!(parse_host_frame(frame), HostFrame::Invalid, "{frame}");
        }
    }

    #[test]
    fn host_params_defaults_and_errors() {
        let p = HostParams::from_query(pairs(&[])).unwrap();
        assert_eq!(p, HostParams { reconnect: true, ..Default::default() });
        let p = HostParams::from_query(pairs(&[
            ("id", "s1"),
            ("secret", "x"),
            ("keepAlive", "ping"),
            ("reconnect", "false"),
        ]))
        .unwrap();
        assert_eq!(p.id.as_deref(), Some("s1"));
        assert_eq!(p.keep_alive.as_deref(), Some("ping"));
        assert!(!p.reconnect);
        assert_eq!(HostParams::from_query(pairs(&[("id", "")])), Err(ParamError::SessionId { in_path: false }));
        assert_eq!(HostParams::from_query(pairs(&[("reconnect", "no")])), Err(ParamError::Reconnect));
        let long = "k".repeat(MAX_KEEP_ALIVE_LEN + 1);
        assert_eq!(HostParams::from_query(pairs(&[("keepAlive", &long)])), Err(ParamError::KeepAlive));
    }

    #[test]
    fn client_params_validate_the_uuid() {
        assert_eq!(ClientParams::from_query(pairs(&[("client", "a b")])), Err(ParamError::ClientUuid));
        let p = ClientParams::from_query(pairs(&[("client", "u-1"), ("keepAlive", "k")])).unwrap();
        assert_eq!((p.uuid.as_deref(), p.keep_alive.as_deref()), (Some("u-1"), Some("k")));
    }

    #[test]
    fn error_bodies_name_the_parameter() {
        assert!(ParamError::SessionId { in_path: false }.to_string().contains("id"));
        assert!(ParamError::ClientUuid.to_string().contains("client"));
        assert!(ParamError::Reconnect.to_string().contains("reconnect"));
    }

    #[test]
    fn routes() {
        assert_eq!(route("/session"), Ok(Route::Host));
        assert_eq!(route("/session/abc"), Ok(Route::Client { session_id: "abc" }));
        assert_eq!(route("/session/"), Err(ParamError::SessionId { in_path: true }));
        assert_eq!(route("/session/a/b"), Err(ParamError::SessionId { in_path: true }));
        assert_eq!(route("/sessions"), Ok(Route::NotFound));
        assert_eq!(route("/"), Ok(Route::NotFound));
    }

    #[test]
    fn outgoing_lines() {
        assert_eq!(say::from_client(3, "a\nb"), "3: a\nb");
        assert_eq!(say::connected(1), "connected: 1");
        assert_eq!(say::unknown("07"), "unknown: 07");
        assert_eq!(say::stats("{}"), "!stats {}");
    }
}

/// Property tests: the parser takes any text without panicking, and what it
/// accepts means exactly what was sent.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

        #[test]
        fn any_frame_parses_without_panic(frame in "\\PC*") {
            let _ = parse_host_frame(&frame);
        }

        #[test]
        fn relay_frames_round_trip(n in 1u32.., message in "(?s).*") {
            let frame = format!("{n}: {message}");
            let n_text = n.to_string();
            prop_assert_eq!(parse_host_frame(&frame), HostFrame::ToClient { client: &n_text, message: &message });
        }

        #[test]
        fn command_like_garbage_is_invalid_or_a_command(rest in "[ -~]{0,40}") {
            let frame = format!("/{rest}");
            match parse_host_frame(&frame) {
                HostFrame::Invalid | HostFrame::Command(_) => {}
                other => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn join_options_never_contradict(words in proptest::collection::vec(
            prop_oneof!["master", "slave", "private", "ghostMode=true", "ghostMode=false", "id=s-1", "steamUserId=7", "x=y", ""], 0..6)) {
            let frame = format!("/join-session {}", words.join(" "));
            if let HostFrame::Command(HostCommand::JoinSession(o)) = parse_host_frame(&frame) {
                prop_assert!(!o.private || o.role == JoinRole::Master);
                prop_assert!(o.target.is_none() || o.role == JoinRole::Slave);
            }
        }

        #[test]
        fn any_query_parses_without_panic(pairs in proptest::collection::vec(("[a-zA-Z]{0,10}", "\\PC{0,300}"), 0..8)) {
            let _ = HostParams::from_query(pairs.clone());
            let _ = ClientParams::from_query(pairs);
        }
    }
}
