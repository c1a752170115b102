//! JWT claims, token decoding and the extractors that guard routes by role.

mod hs256;

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Deserializer, Serialize};
use thiserror::Error;

use crate::{
    config::Config,
    domain::{AuthUser, MasterId, Role, UserId},
    service::error::AppError,
    service::policy::{self, Permit, UseCase},
};

#[derive(Debug, Error, PartialEq)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// What a token says about its bearer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// A number or a decimal string on input; minted as a string (RFC 7519's StringOrURI), which
    /// strict libraries such as PyJWT require.
    #[serde(
        deserialize_with = "id_from_string_or_number",
        serialize_with = "id_as_string"
    )]
    pub sub: i64,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_id: Option<i64>,
    pub exp: u64,
}

fn id_as_string<S: serde::Serializer>(id: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

fn id_from_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(i64),
        Text(String),
    }
    match Id::deserialize(d)? {
        Id::Number(n) => Ok(n),
        Id::Text(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom("sub must be a decimal user id")),
    }
}

/// How far ahead of this server's clock a token's issuer may be.
const MAX_CLOCK_AHEAD_SECS: u64 = 60;
/// 9999-12-31T23:59:59Z: a later `exp` is a mistake or a trick, and has no date to show.
const LAST_EXP: u64 = 253_402_300_799;

/// A token that checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub user: AuthUser,
    /// Its `exp`, in ms since the epoch.
    pub expires_at_ms: i64,
}

/// Signs and checks tokens with one HS256 secret.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    audience: Option<String>,
    issuer: Option<String>,
}

impl JwtKeys {
    /// The keys that sign and check tokens as the configuration says.
    pub fn from_config(config: &Config) -> Self {
        Self::checking(
            config.jwt_secret.expose(),
            config.jwt_audience.as_deref(),
            config.jwt_issuer.as_deref(),
        )
    }

    /// Keys that check no audience or issuer: a token may carry either and is accepted.
    pub fn new(secret: &str) -> Self {
        Self::checking(secret, None, None)
    }

    /// Keys that, for each of `audience` and `issuer` that is set, require the claim and check it.
    pub fn checking(secret: &str, audience: Option<&str>, issuer: Option<&str>) -> Self {
        hs256::install();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        match audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        JwtKeys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            audience: audience.map(str::to_string),
            issuer: issuer.map(str::to_string),
        }
    }

    pub fn decode(&self, token: &str) -> Result<AuthUser, AuthError> {
        self.verify(token).map(|verified| verified.user)
    }

    /// Checks a token: whom it names, and until when.
    pub fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        /// The claims, and when the token says it was issued.
        #[derive(Deserialize)]
        struct Checked {
            #[serde(flatten)]
            claims: Claims,
            #[serde(default)]
            iat: Option<u64>,
        }
        let Checked { claims, iat } =
            jsonwebtoken::decode::<Checked>(token, &self.decoding, &self.validation)
                .map_err(|e| match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::ImmatureSignature => {
                        AuthError::Invalid("not valid yet (nbf)".into())
                    }
                    ErrorKind::Json(inner) => AuthError::Invalid(inner.to_string()),
                    ErrorKind::MissingRequiredClaim(claim) => {
                        AuthError::Invalid(format!("missing claim {claim}"))
                    }
                    ErrorKind::InvalidAlgorithm => {
                        AuthError::Invalid("algorithm must be HS256".into())
                    }
                    ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
                    ErrorKind::InvalidAudience => AuthError::Invalid("wrong audience (aud)".into()),
                    ErrorKind::InvalidIssuer => AuthError::Invalid("wrong issuer (iss)".into()),
                    _ => AuthError::Invalid("malformed token".into()),
                })?
                .claims;
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        if iat.is_some_and(|iat| iat > now + MAX_CLOCK_AHEAD_SECS) {
            return Err(AuthError::Invalid("issued in the future (iat)".into()));
        }
        if claims.exp > LAST_EXP {
            return Err(AuthError::Invalid("exp is past the year 9999".into()));
        }
        match (claims.role, claims.master_id) {
            (Role::Master, None) => {
                return Err(AuthError::Invalid("a master token needs master_id".into()));
            }
            (_, Some(id)) if id <= 0 => {
                return Err(AuthError::Invalid("master_id must be a positive id".into()));
            }
            _ => {}
        }
        Ok(Verified {
            user: AuthUser {
                user_id: UserId(claims.sub),
                role: claims.role,
                master_id: claims.master_id.map(MasterId),
            },
            expires_at_ms: i64::try_from(claims.exp)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000),
        })
    }

    /// Signs `claims`, adding the audience and issuer these keys check.
    pub fn encode(&self, claims: &Claims) -> String {
        #[derive(Serialize)]
        struct Minted<'a> {
            #[serde(flatten)]
            claims: &'a Claims,
            #[serde(skip_serializing_if = "Option::is_none")]
            aud: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            iss: Option<&'a str>,
        }
        let minted = Minted {
            claims,
            aud: self.audience.as_deref(),
            iss: self.issuer.as_deref(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &minted, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// Mints a token valid for `ttl_secs` from now.
    pub fn mint(&self, user_id: i64, role: Role, master_id: Option<i64>, ttl_secs: u64) -> String {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        self.encode(&Claims {
            sub: user_id,
            role,
            master_id,
            exp: now + ttl_secs,
        })
    }
}

/// The bearer token of an `Authorization` header, if any.
pub fn bearer_token(headers: &header::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl From<AuthError> for AppError {
    fn from(e: AuthError) -> Self {
        AppError::Unauthorized(e.to_string())
    }
}

fn authenticate(req: &HttpRequest) -> Result<AuthUser, AppError> {
    let keys = req
        .app_data::<web::Data<JwtKeys>>()
        .ok_or_else(|| AppError::Internal("the JWT keys are not registered".into()))?;
    let token = bearer_token(req.headers()).ok_or(AuthError::Missing)?;
    Ok(keys.decode(token)?)
}

impl FromRequest for AuthUser {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

/// A caller the policy lets do `U`: 401 without a valid token, 403 for a role that may not,
/// both before the body is read.
pub struct Permitted<U>(pub Permit<U>);

impl<U: UseCase> FromRequest for Permitted<U> {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).and_then(|user| Ok(Permitted(policy::permit::<U>(user)?))))
    }
}
