//! Session ids and secrets. Randomness is passed in, so the formats are tested
//! natively; the Worker feeds these from `crypto.getRandomValues`.

use subtle::ConstantTimeEq;

/// Bytes of randomness in a session secret: 256 bits, twice the minimum.
pub const SECRET_BYTES: usize = 32;

/// Formats 16 random bytes as an RFC 4122 version 4 UUID.
pub fn uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex(&bytes);
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
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
    use crate::protocol::is_valid_id;

    #[test]
    fn uuid_has_version_and_variant_bits() {
        let id = uuid_v4([0xff; 16]);
        assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let id = uuid_v4([0; 16]);
        assert_eq!(id, "00000000-0000-4000-8000-000000000000");
        assert!(is_valid_id(&id));
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
