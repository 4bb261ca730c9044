//! API tokens: signed JWTs (HS256 only, key derived from master.key) whose id
//! (`jti`) is checked against the `api_tokens` table on every use, so that a
//! revocation takes effect at once. The token value is shown once at creation
//! and never stored.

pub mod routes;

use app::api::{CreateToken, CreatedToken, Scope, TokenInfo};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use crate::crypto::Keys;
use crate::http::error::ApiError;
use crate::startup::AppState;
use crate::store::{now, rfc3339};

const ISSUER: &str = "berth";
const ALGORITHM: Algorithm = Algorithm::HS256;
pub const DEFAULT_DAYS: u32 = 90;
pub const MAX_DAYS: u32 = 3650;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    jti: String,
    scopes: Vec<Scope>,
    iat: i64,
    exp: i64,
}

pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenSigner {
    pub fn new(keys: &Keys) -> Self {
        let key = keys.derive("berth api-token jwt v1");
        // One algorithm, fixed here: a token naming any other (including
        // `none`) fails validation.
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.leeway = 0;
        TokenSigner {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            validation,
        }
    }

    fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(
            &Header::new(ALGORITHM),
            claims,
            &self.encoding,
        )?)
    }

    fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|d| d.claims)
    }
}

/// The highest scope in a list (scopes are cumulative).
fn effective(scopes: &[Scope]) -> Option<Scope> {
    scopes.iter().copied().max()
}

fn join(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn split(scopes: &str) -> Vec<Scope> {
    scopes.split(',').filter_map(Scope::parse).collect()
}

pub struct ValidatedRequest {
    name: String,
    scopes: Vec<Scope>,
    days: u32,
}

pub fn validate(req: CreateToken) -> Result<ValidatedRequest, ApiError> {
    let name = req.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::invalid("name", "name must be 1 to 64 characters"));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(ApiError::invalid(
            "name",
            "name must not contain control characters",
        ));
    }
    let mut scopes = req.scopes;
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(ApiError::invalid("scopes", "give at least one scope"));
    }
    let days = req.expires_in_days.unwrap_or(DEFAULT_DAYS);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(ApiError::invalid(
            "expires_in_days",
            format!("expires_in_days must be between 1 and {MAX_DAYS}"),
        ));
    }
    Ok(ValidatedRequest { name, scopes, days })
}

pub async fn create(state: &AppState, req: ValidatedRequest) -> anyhow::Result<CreatedToken> {
    let id = uuid::Uuid::new_v4().to_string();
    let iat = now();
    let exp = iat + i64::from(req.days) * 86_400;
    let token = state.tokens.sign(&Claims {
        iss: ISSUER.into(),
        jti: id.clone(),
        scopes: req.scopes.clone(),
        iat,
        exp,
    })?;
    let scopes = join(&req.scopes);
    sqlx::query!(
        "INSERT INTO api_tokens (id, name, scopes, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        id,
        req.name,
        scopes,
        iat,
        exp
    )
    .execute(&state.db)
    .await?;
    Ok(CreatedToken {
        id,
        token,
        name: req.name,
        scopes: req.scopes,
        expires_at: rfc3339(exp),
    })
}

pub async fn list(db: &SqlitePool) -> anyhow::Result<Vec<TokenInfo>> {
    let now = now();
    let rows = sqlx::query!(
        "SELECT id, name, scopes, created_at, expires_at, revoked_at, last_used_at \
         FROM api_tokens ORDER BY created_at DESC, id"
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| TokenInfo {
            status: if r.revoked_at.is_some() {
                "revoked"
            } else if r.expires_at <= now {
                "expired"
            } else {
                "active"
            }
            .into(),
            id: r.id,
            name: r.name,
            scopes: split(&r.scopes),
            created_at: rfc3339(r.created_at),
            expires_at: rfc3339(r.expires_at),
            revoked_at: r.revoked_at.map(rfc3339),
            last_used_at: r.last_used_at.map(rfc3339),
        })
        .collect())
}

/// Revokes a token; returns its name, or None when no live token has that id.
pub async fn revoke(db: &SqlitePool, id: &str) -> anyhow::Result<Option<String>> {
    let at = now();
    let row = sqlx::query!(
        "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING name",
        at,
        id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| r.name))
}

pub struct Authenticated {
    pub id: String,
    pub name: String,
    pub scope: Scope,
}

/// Checks a bearer token: signature, algorithm, issuer and expiry, then that
/// its id is still live in the store.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Authenticated, ApiError> {
    const REFUSED: ApiError = ApiError::Unauthorized("invalid, expired or revoked API token");
    let claims = state.tokens.verify(token).ok_or(REFUSED)?;
    let now = now();
    let row = sqlx::query!(
        "SELECT name, scopes, last_used_at FROM api_tokens \
         WHERE id = ? AND revoked_at IS NULL AND expires_at > ?",
        claims.jti,
        now
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or(REFUSED)?;
    let scope = effective(&split(&row.scopes)).ok_or(REFUSED)?;
    // Recording every use would turn each read into a write; once a minute
    // is precise enough for "last used".
    if row.last_used_at.is_none_or(|t| now - t >= 60) {
        sqlx::query!(
            "UPDATE api_tokens SET last_used_at = ? WHERE id = ?",
            now,
            claims.jti
        )
        .execute(&state.db)
        .await?;
    }
    Ok(Authenticated {
        id: claims.jti,
        name: row.name,
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn claims(exp: i64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            jti: "t1".into(),
            scopes: vec![Scope::Read],
            iat: now(),
            exp,
        }
    }

    #[test]
    fn a_signed_token_verifies_and_tampering_breaks_it() {
        let signer = TokenSigner::new(&Keys::for_tests());
        let token = signer.sign(&claims(now() + 60)).unwrap();
        assert_eq!(signer.verify(&token).unwrap().jti, "t1");

        // Swap the payload for one claiming the admin scope, keep the signature.
        let parts: Vec<&str> = token.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut payload: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        payload["scopes"] = serde_json::json!(["admin"]);
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(payload.to_string()),
            parts[2]
        );
        assert!(signer.verify(&forged).is_none());
    }

    #[test]
    fn expired_and_alg_none_tokens_are_refused() {
        let signer = TokenSigner::new(&Keys::for_tests());
        let expired = signer.sign(&claims(now() - 1)).unwrap();
        assert!(signer.verify(&expired).is_none());

        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64.encode(serde_json::to_string(&claims(now() + 60)).unwrap());
        assert!(signer.verify(&format!("{header}.{payload}.")).is_none());
    }

    #[test]
    fn another_key_or_algorithm_is_refused() {
        let signer = TokenSigner::new(&Keys::for_tests());
        let other = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims(now() + 60),
            &EncodingKey::from_secret(&Keys::for_tests().derive("berth api-token jwt v1")),
        )
        .unwrap();
        assert!(signer.verify(&other).is_none(), "HS512 with the right key");

        let stranger = TokenSigner::new(&Keys::for_tests_with([9; 32]));
        let foreign = stranger.sign(&claims(now() + 60)).unwrap();
        assert!(signer.verify(&foreign).is_none(), "HS256 with another key");
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |name: &str, scopes: Vec<Scope>, days: Option<u32>| match validate(CreateToken {
            name: name.into(),
            scopes,
            expires_in_days: days,
        }) {
            Err(ApiError::Invalid { field, .. }) => field.unwrap(),
            _ => panic!("expected invalid"),
        };
        assert_eq!(bad("", vec![Scope::Read], None), "name");
        assert_eq!(bad("ci", vec![], None), "scopes");
        assert_eq!(bad("ci", vec![Scope::Read], Some(0)), "expires_in_days");
        assert_eq!(
            bad("ci", vec![Scope::Read], Some(MAX_DAYS + 1)),
            "expires_in_days"
        );
        let ok = validate(CreateToken {
            name: " deploy ".into(),
            scopes: vec![Scope::Write, Scope::Read, Scope::Write],
            expires_in_days: None,
        })
        .unwrap();
        assert_eq!(ok.name, "deploy");
        assert_eq!(ok.scopes, vec![Scope::Read, Scope::Write]);
        assert_eq!(ok.days, DEFAULT_DAYS);
    }
}
