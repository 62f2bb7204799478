//! Identifier minting and validation. The caller supplies the random bytes (from
//! WebCrypto in the Worker), so ids stay unguessable while this crate stays pure.

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Lowercase base32 (RFC 4648 alphabet, no padding).
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Kinds of server-minted ids, each with its own prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Conversation,
    Visitor,
    Agent,
    Site,
    Team,
    Epoch,
    Trace,
    File,
}

impl IdKind {
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::Conversation => "c_",
            IdKind::Visitor => "v_",
            IdKind::Agent => "a_",
            IdKind::Site => "s_",
            IdKind::Team => "t_",
            IdKind::Epoch => "e_",
            IdKind::Trace => "r_",
            IdKind::File => "f_",
        }
    }
}

/// Mints an id of `kind` from 16 random bytes (128 bits: unguessable).
pub fn mint(kind: IdKind, random: &[u8; 16]) -> String {
    format!("{}{}", kind.prefix(), base32(random))
}

/// Whether `id` has the shape of an id minted with [`mint`] for `kind`.
pub fn is_valid(kind: IdKind, id: &str) -> bool {
    match id.strip_prefix(kind.prefix()) {
        Some(rest) => rest.len() == 26 && rest.bytes().all(|b| ALPHABET.contains(&b)),
        None => false,
    }
}

/// Client message ids are chosen by clients: bounded and from a safe alphabet.
pub fn is_valid_client_msg_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= crate::limits::MAX_CLIENT_MSG_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648_vectors() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "my");
        assert_eq!(base32(b"fo"), "mzxq");
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
    }

    #[test]
    fn minted_ids_validate() {
        let id = mint(IdKind::Conversation, &[7u8; 16]);
        assert!(is_valid(IdKind::Conversation, &id));
        assert!(!is_valid(IdKind::Visitor, &id));
        assert!(!is_valid(IdKind::Conversation, "c_short"));
        assert!(!is_valid(
            IdKind::Conversation,
            "c_../../etc/passwd000000000"
        ));
    }

    #[test]
    fn client_msg_ids() {
        assert!(is_valid_client_msg_id("m-1700000000-abc"));
        assert!(!is_valid_client_msg_id(""));
        assert!(!is_valid_client_msg_id("has space"));
        assert!(!is_valid_client_msg_id(&"x".repeat(65)));
    }
}
