//! Session ids and secrets. Secret randomness is passed in, so the format is
//! tested natively; the Worker feeds it from `crypto.getRandomValues`.

use subtle::ConstantTimeEq;

/// Bytes of randomness in a session secret: 256 bits, twice the minimum.
pub const SECRET_BYTES: usize = 32;

/// A new relay-made session id: a random (v4) UUID from the `uuid` crate,
/// lowercase and hyphenated. Its randomness is the platform CSPRNG
/// (`crypto.getRandomValues` in the Worker, the OS natively).
pub fn new_session_id() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// A secret as lowercase hex, safe to put in a query string unescaped.
pub fn secret(bytes: [u8; SECRET_BYTES]) -> String {
    hex(&bytes)
}

/// Compares a presented secret with the stored one in time independent of
/// where they differ. Only the (public) length can leak.
pub fn secrets_match(presented: &str, stored: &str) -> bool {
    presented.as_bytes().ct_eq(stored.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::is_valid_id;

    #[test]
    fn session_ids_are_distinct_v4_uuids() {
        let id = new_session_id();
        assert!(is_valid_id(&id));
        let parsed = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(id.len(), 36);
        assert_eq!(id, id.to_ascii_lowercase());
        assert_ne!(new_session_id(), id);
    }

    #[test]
    fn secrets_are_hex_of_256_bits() {
        let s = secret([0xab; SECRET_BYTES]);
        assert_eq!(s.len(), 64);
        assert!(s.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn secret_comparison() {
        assert!(secrets_match("abc", "abc"));
        assert!(!secrets_match("abd", "abc"));
        assert!(!secrets_match("ab", "abc"));
        assert!(!secrets_match("", "abc"));
    }
}
