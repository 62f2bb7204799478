//! Stored password hashes. Hashing itself is PBKDF2-SHA256 run by the runtime's WebCrypto;
//! this module decodes what is stored and compares in constant time.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use subtle::ConstantTimeEq;

/// Iterations for new hashes: the most WebCrypto in Workers accepts, and OWASP's floor for
/// PBKDF2-SHA256 is above what Workers allow, so we use the runtime's ceiling.
pub const PBKDF2_ITERATIONS: u32 = 100_000;
/// Length of the derived key, in bytes.
pub const HASH_LEN: usize = 32;

/// A stored hash, as kept in the `agents` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHash {
    pub hash: Vec<u8>,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

impl StoredHash {
    /// Decodes the base64 columns; `None` for a row that cannot be a valid hash.
    pub fn decode(hash_b64: &str, salt_b64: &str, iterations: i64) -> Option<StoredHash> {
        let hash = STANDARD.decode(hash_b64).ok()?;
        let salt = STANDARD.decode(salt_b64).ok()?;
        let iterations = u32::try_from(iterations).ok()?;
        if hash.len() != HASH_LEN || salt.len() < 16 || iterations < PBKDF2_ITERATIONS {
            return None;
        }
        Some(StoredHash {
            hash,
            salt,
            iterations,
        })
    }

    /// Whether a freshly derived key equals the stored one, in constant time.
    pub fn matches(&self, derived: &[u8]) -> bool {
        derived.len() == self.hash.len() && bool::from(derived.ct_eq(&self.hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_compares() {
        let hash = STANDARD.encode([1u8; 32]);
        let salt = STANDARD.encode([2u8; 16]);
        let stored = StoredHash::decode(&hash, &salt, 100_000).unwrap();
        assert!(stored.matches(&[1u8; 32]));
        assert!(!stored.matches(&[1u8; 31]));
        assert!(!stored.matches(&[0u8; 32]));
    }

    #[test]
    fn refuses_weak_or_broken_rows() {
        let hash = STANDARD.encode([1u8; 32]);
        let salt = STANDARD.encode([2u8; 16]);
        assert!(StoredHash::decode(&hash, &salt, 1000).is_none());
        assert!(StoredHash::decode("not base64!", &salt, 100_000).is_none());
        assert!(StoredHash::decode(&hash, &STANDARD.encode([2u8; 4]), 100_000).is_none());
    }
}
