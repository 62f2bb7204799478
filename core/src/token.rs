//! Signed bearer tokens (HMAC-SHA256 over a JSON claim set). The server mints them for
//! visitors and agents; whoever presents one is who it names, and nothing else.
//!
//! Wire form: `p1.<base64url(claims)>.<base64url(mac)>`, the MAC covering `p1.<claims>`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::ErrorCode;
use crate::protocol::{display_name, Participant, Role, MAX_DISPLAY_NAME_CHARS};

const PREFIX: &str = "p1";
/// Shortest secret accepted for signing: 32 bytes.
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentRole {
    Owner,
    Admin,
    Agent,
}

impl AgentRole {
    pub fn parse(s: &str) -> Option<AgentRole> {
        match s {
            "owner" => Some(AgentRole::Owner),
            "admin" => Some(AgentRole::Admin),
            "agent" => Some(AgentRole::Agent),
            _ => None,
        }
    }
}

crate::tagged_enum! {
    tag = "kind";
    /// Who a verified token speaks for.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub enum Principal {
        Visitor {
            id: String,
            site: String,
        },
        Agent {
            id: String,
            team: String,
            name: String,
            role: AgentRole,
            /// May see visitors' personal data unmasked.
            #[serde(default)]
            view_pii: bool,
            /// May export the team's data.
            #[serde(default)]
            export: bool,
            /// The sign-in session; ending it ends the token.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            sid: Option<String>,
        },
    }
}

impl Principal {
    /// Whether this principal is an API key acting as an agent of its team, not a person.
    pub fn is_api_key(&self) -> bool {
        matches!(self, Principal::Agent { id, .. } if id.starts_with(crate::api_key::ID_PREFIX))
    }

    /// Whether this principal reads personal data in visitors' messages unmasked.
    pub fn sees_pii(&self) -> bool {
        match self {
            Principal::Visitor { .. } => true,
            Principal::Agent { role, view_pii, .. } => {
                *view_pii || matches!(role, AgentRole::Owner | AgentRole::Admin)
            }
        }
    }

    /// Whether this principal may export the team's data.
    pub fn can_export(&self) -> bool {
        match self {
            Principal::Visitor { .. } => false,
            Principal::Agent { role, export, .. } => {
                *export || matches!(role, AgentRole::Owner | AgentRole::Admin)
            }
        }
    }

    pub fn role(&self) -> Role {
        match self {
            Principal::Visitor { .. } => Role::Visitor,
            Principal::Agent { .. } => Role::Agent,
        }
    }

    /// The agent session this principal signed in with, if any.
    pub fn session(&self) -> Option<&str> {
        match self {
            Principal::Agent { sid, .. } => sid.as_deref(),
            Principal::Visitor { .. } => None,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Principal::Visitor { id, .. } | Principal::Agent { id, .. } => id,
        }
    }

    pub fn participant(&self) -> Participant {
        match self {
            Principal::Visitor { id, .. } => Participant {
                id: id.clone(),
                role: Role::Visitor,
                name: None,
            },
            Principal::Agent { id, name, .. } => Participant {
                id: id.clone(),
                role: Role::Agent,
                name: Some(display_name(name, MAX_DISPLAY_NAME_CHARS)),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claims {
    #[serde(flatten)]
    pub principal: Principal,
    /// Issued at, Unix milliseconds.
    pub iat: i64,
    /// Expires at, Unix milliseconds.
    pub exp: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token secret is shorter than {MIN_SECRET_LEN} bytes")]
    WeakSecret,
    #[error("token is malformed")]
    Malformed,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
}

impl TokenError {
    pub fn code(&self) -> ErrorCode {
        match self {
            TokenError::WeakSecret => ErrorCode::Internal,
            TokenError::Malformed | TokenError::BadSignature => ErrorCode::TokenInvalid,
            TokenError::Expired => ErrorCode::TokenExpired,
        }
    }
}

fn mac_for(secret: &[u8], signed_part: &str) -> Result<Hmac<Sha256>, TokenError> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(TokenError::WeakSecret);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| TokenError::WeakSecret)?;
    mac.update(signed_part.as_bytes());
    Ok(mac)
}

/// Mints a token for `principal`, valid from `now_ms` for `ttl_ms`.
pub fn sign(
    secret: &[u8],
    principal: Principal,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<String, TokenError> {
    let claims = Claims {
        principal,
        iat: now_ms,
        exp: now_ms.saturating_add(ttl_ms),
    };
    let json = serde_json::to_vec(&claims).map_err(|_| TokenError::Malformed)?;
    let signed_part = format!("{PREFIX}.{}", URL_SAFE_NO_PAD.encode(json));
    let tag = mac_for(secret, &signed_part)?.finalize().into_bytes();
    Ok(format!("{signed_part}.{}", URL_SAFE_NO_PAD.encode(tag)))
}

/// 16 bytes derived from `secret` and `input` (HMAC-SHA256): stable ids nobody can guess.
pub fn derive_id(secret: &[u8], input: &str) -> Result<[u8; 16], TokenError> {
    let tag = mac_for(secret, input)?.finalize().into_bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&tag[..16]);
    Ok(out)
}

impl Claims {
    /// Reads the claims as `issue` writes them: the principal's fields beside the times.
    fn from_json(json: &str) -> serde_json::Result<Claims> {
        #[derive(Deserialize)]
        struct Times {
            iat: i64,
            exp: i64,
        }
        let Times { iat, exp } = crate::json::from_str(json)?;
        Ok(Claims {
            principal: Principal::from_json(json)?,
            iat,
            exp,
        })
    }
}

/// Verifies a token's signature (in constant time) and expiry.
pub fn verify(secret: &[u8], token: &str, now_ms: i64) -> Result<Claims, TokenError> {
    if token.len() > 2048 {
        return Err(TokenError::Malformed);
    }
    let (signed_part, tag_b64) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let (prefix, claims_b64) = signed_part.split_once('.').ok_or(TokenError::Malformed)?;
    if prefix != PREFIX {
        return Err(TokenError::Malformed);
    }
    let tag = URL_SAFE_NO_PAD
        .decode(tag_b64)
        .map_err(|_| TokenError::Malformed)?;
    mac_for(secret, signed_part)?
        .verify_slice(&tag)
        .map_err(|_| TokenError::BadSignature)?;
    let json = URL_SAFE_NO_PAD
        .decode(claims_b64)
        .map_err(|_| TokenError::Malformed)?;
    let json = String::from_utf8(json).map_err(|_| TokenError::Malformed)?;
    let claims = Claims::from_json(&json).map_err(|_| TokenError::Malformed)?;
    if now_ms >= claims.exp {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn visitor() -> Principal {
        Principal::Visitor {
            id: "v_a".into(),
            site: "s_b".into(),
        }
    }

    #[test]
    fn round_trip() {
        let t = sign(SECRET, visitor(), 1_000, 60_000).unwrap();
        let claims = verify(SECRET, &t, 2_000).unwrap();
        assert_eq!(claims.principal, visitor());
        assert_eq!(claims.exp, 61_000);
    }

    #[test]
    fn expired_forged_and_malformed_are_refused() {
        let t = sign(SECRET, visitor(), 1_000, 60_000).unwrap();
        assert_eq!(verify(SECRET, &t, 61_000), Err(TokenError::Expired));
        assert_eq!(
            verify(b"another-secret-another-secret-xx", &t, 2_000),
            Err(TokenError::BadSignature)
        );
        // Same signature, claims changed to another visitor.
        let (_, tag) = t.rsplit_once('.').unwrap();
        let forged_claims = URL_SAFE_NO_PAD
            .encode(br#"{"kind":"visitor","id":"v_other","site":"s_b","iat":1000,"exp":61000}"#);
        let forged = format!("p1.{forged_claims}.{tag}");
        assert_eq!(
            verify(SECRET, &forged, 2_000),
            Err(TokenError::BadSignature)
        );
        assert_eq!(verify(SECRET, "garbage", 2_000), Err(TokenError::Malformed));
        assert_eq!(verify(SECRET, "p2.a.b", 2_000), Err(TokenError::Malformed));
        assert_eq!(verify(SECRET, "", 2_000), Err(TokenError::Malformed));
    }

    #[test]
    fn weak_secret_is_refused() {
        assert_eq!(sign(b"short", visitor(), 0, 1), Err(TokenError::WeakSecret));
    }
}
