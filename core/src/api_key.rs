//! API keys for server-to-server use: scoped, shown once, stored as a hash.
//!
//! A key reads `pk_<id>.<secret>`. The id finds the stored row; only the SHA-256 of the
//! secret is stored (the secret has 256 bits of entropy, so a slow hash adds nothing). A
//! request made with a key acts as an agent of the key's team named after the key, with the
//! role and permissions its scopes grant, and only with the methods its scopes allow.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ids::base32;
use crate::token::{AgentRole, Principal};

/// What every key starts with, so a key is recognisable (and findable by secret scanners).
pub const KEY_PREFIX: &str = "pk_";
/// The prefix of a key's id (its public part).
pub const ID_PREFIX: &str = "k_";
/// Names are for people reading the admin page and the conversation log.
pub const MAX_NAME_CHARS: usize = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read conversations, history, search, reports and settings (GET).
    Read,
    /// Change things: send messages, close, assign, tag (every method but GET).
    Write,
    /// Act as an admin of the team (settings, agents, webhooks).
    Admin,
    /// Export the team's data.
    Export,
    /// See visitors' personal data unmasked.
    PersonalData,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::Read,
        Scope::Write,
        Scope::Admin,
        Scope::Export,
        Scope::PersonalData,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
            Scope::Export => "export",
            Scope::PersonalData => "personal_data",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

/// Why a key cannot be created as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRequestError {
    EmptyName,
    NameTooLong,
    NoScopes,
    UnknownScope(String),
}

/// A validated request for a new key: its name and scopes, sorted and without repeats.
pub fn validate_request(
    name: &str,
    scopes: &[String],
) -> Result<(String, Vec<Scope>), KeyRequestError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(KeyRequestError::EmptyName);
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(KeyRequestError::NameTooLong);
    }
    let mut parsed = Vec::with_capacity(scopes.len());
    for s in scopes {
        parsed
            .push(Scope::parse(s.trim()).ok_or_else(|| KeyRequestError::UnknownScope(s.clone()))?);
    }
    parsed.sort();
    parsed.dedup();
    if parsed.is_empty() {
        return Err(KeyRequestError::NoScopes);
    }
    Ok((name.to_string(), parsed))
}

/// A new key: the whole key is shown once; the id and hash are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintedKey {
    pub id: String,
    pub key: String,
    pub secret_hash: String,
}

/// Makes a key from 16 random bytes (the id) and 32 random bytes (the secret).
pub fn mint(id_random: &[u8; 16], secret_random: &[u8; 32]) -> MintedKey {
    let id = format!("{ID_PREFIX}{}", base32(id_random));
    let secret = URL_SAFE_NO_PAD.encode(secret_random);
    MintedKey {
        key: format!("{KEY_PREFIX}{id}.{secret}"),
        secret_hash: hash_secret(&secret),
        id,
    }
}

/// Whether a bearer credential is an API key (rather than a signed token).
pub fn is_api_key(credential: &str) -> bool {
    credential.starts_with(KEY_PREFIX)
}

/// Splits a presented key into its id and secret; `None` if it is not shaped like a key.
pub fn parse(credential: &str) -> Option<(&str, &str)> {
    let rest = credential.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('.')?;
    let well_formed = id.starts_with(ID_PREFIX)
        && id.len() <= 40
        && id[ID_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
        && (20..=100).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then_some((id, secret))
}

/// The stored form of a secret: lowercase hex SHA-256.
pub fn hash_secret(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a presented secret matches the stored hash (compared in constant time).
pub fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    hash_secret(secret)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

/// Reads stored scopes (a JSON array of names), ignoring names this version does not know.
pub fn stored_scopes(json: &str) -> Vec<Scope> {
    crate::json::from_str::<Vec<String>>(json)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| Scope::parse(s))
        .collect()
}

/// Whether a key with `scopes` may make a request with this method.
pub fn allows_method(scopes: &[Scope], method_reads: bool) -> bool {
    if method_reads {
        scopes.contains(&Scope::Read) || scopes.contains(&Scope::Write)
    } else {
        scopes.contains(&Scope::Write)
    }
}

/// Who a request made with a key acts as.
pub fn principal(id: &str, team: &str, name: &str, scopes: &[Scope]) -> Principal {
    Principal::Agent {
        id: id.to_string(),
        team: team.to_string(),
        name: name.to_string(),
        role: if scopes.contains(&Scope::Admin) {
            AgentRole::Admin
        } else {
            AgentRole::Agent
        },
        view_pii: scopes.contains(&Scope::PersonalData),
        export: scopes.contains(&Scope::Export),
        sid: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_key_parses_back_and_matches_only_its_hash() {
        let minted = mint(&[7; 16], &[9; 32]);
        assert!(is_api_key(&minted.key));
        let (id, secret) = parse(&minted.key).expect("well formed");
        assert_eq!(id, minted.id);
        assert!(secret_matches(secret, &minted.secret_hash));
        let other = mint(&[7; 16], &[8; 32]);
        assert!(!secret_matches(secret, &other.secret_hash));
        assert!(
            !minted.secret_hash.contains(secret),
            "only the hash is stored"
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in [
            "",
            "pk_",
            "pk_k_abc",
            "pk_x_abc.aaaaaaaaaaaaaaaaaaaaaaaa",
            "pk_k_ab/c.aaaaaaaaaaaaaaaaaaaaaaaa",
            "pk_k_abc.short",
            "pk_k_abc.aaaaaaaaaaaaaaaaaaaaaa=a",
            "eyJhbGciOi.token",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn scopes_decide_methods_role_and_permissions() {
        let read = [Scope::Read];
        assert!(allows_method(&read, true));
        assert!(!allows_method(&read, false));
        let write = [Scope::Write];
        assert!(allows_method(&write, true) && allows_method(&write, false));
        match principal("k_1", "t_1", "CRM", &[Scope::Write]) {
            Principal::Agent {
                role,
                view_pii,
                export,
                sid,
                ..
            } => {
                assert_eq!(role, AgentRole::Agent);
                assert!(!view_pii && !export && sid.is_none());
            }
            other => panic!("{other:?}"),
        }
        let all = principal("k_1", "t_1", "CRM", &Scope::ALL);
        assert!(all.sees_pii() && all.can_export());
        // `admin` includes both, as the admin role does for a person: an admin reaches the
        // visitors' data anyway (webhooks, the bot's endpoint, agent accounts).
        let admin = principal("k_1", "t_1", "Ops", &[Scope::Read, Scope::Admin]);
        assert!(admin.sees_pii() && admin.can_export());
        assert!(matches!(
            all,
            Principal::Agent {
                role: AgentRole::Admin,
                ..
            }
        ));
    }

    #[test]
    fn requests_are_validated() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            validate_request(" Bot ", &s(&["write", "read", "write"])),
            Ok(("Bot".into(), vec![Scope::Read, Scope::Write]))
        );
        assert_eq!(
            validate_request("  ", &s(&["read"])),
            Err(KeyRequestError::EmptyName)
        );
        assert_eq!(validate_request("x", &[]), Err(KeyRequestError::NoScopes));
        assert_eq!(
            validate_request("x", &s(&["root"])),
            Err(KeyRequestError::UnknownScope("root".into()))
        );
        assert_eq!(
            validate_request(&"n".repeat(81), &s(&["read"])),
            Err(KeyRequestError::NameTooLong)
        );
        assert_eq!(
            stored_scopes(r#"["read","future_scope","export"]"#),
            vec![Scope::Read, Scope::Export]
        );
    }
}
