//! Rate limits (README, Limits): each socket has a frame bucket and a byte
//! bucket, kept in its attachment so hibernation does not refill them.

use crate::record::SocketInfo;
use crate::settings::Settings;

/// What taking one frame of `len` bytes from a socket's buckets came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Within,
    /// Within, and a bucket just fell below half: the attachment's copy
    /// should be rewritten, so a wake-up does not refill it.
    WithinLow,
    Over,
}

/// Frames and bytes are both limited: a flood of small frames costs events,
/// a stream of large ones costs memory in every receiver's unsent backlog,
/// which the runtime does not let the relay see.
pub(super) fn take(info: &mut SocketInfo, settings: &Settings, now: f64, len: usize) -> Verdict {
    let limits = settings.limits(info.is_host());
    let (frames_before, bytes_before) = (info.bucket.tokens, info.byte_bucket.tokens);
    let within = info.bucket.take(now, limits.per_second, limits.burst)
        && info.byte_bucket.take_n(now, len as f64, limits.bytes_per_second, limits.bytes_burst);
    if !within {
        return Verdict::Over;
    }
    // The attachment's copy of the buckets only matters after hibernation,
    // and only once one runs low (an idle socket's buckets refill anyway),
    // so the relay path rarely rewrites it.
    let low = |before: f64, after: f64, burst: f64| after < burst / 2.0 && before >= burst / 2.0;
    if low(frames_before, info.bucket.tokens, limits.burst)
        || low(bytes_before, info.byte_bucket.tokens, limits.bytes_burst)
    {
        Verdict::WithinLow
    } else {
        Verdict::Within
    }
}
