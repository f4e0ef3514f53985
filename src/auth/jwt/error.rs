//! Why a token was refused: the reason the log gives, and the two refusals a client can
//! tell apart (invalid or expired).

use crate::reject::Rejection;

/// Why a token was refused: for the log only; the client learns `invalid_token` or
/// `token_expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    TooLarge,
    Malformed,
    AlgorithmNotAllowed,
    CriticalHeader,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    BadClaims,
}

impl JwtError {
    pub fn reason(self) -> &'static str {
        match self {
            JwtError::TooLarge => "token larger than 8 KiB",
            JwtError::Malformed => "malformed token",
            JwtError::AlgorithmNotAllowed => "algorithm not allowed",
            JwtError::CriticalHeader => "crit header",
            JwtError::UnknownKey => "unknown key",
            JwtError::BadSignature => "bad signature",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not yet valid",
            JwtError::IssuedInFuture => "issued in the future",
            JwtError::BadClaims => "missing or invalid claims",
        }
    }
}

/// The client learns only "invalid" or "expired"; the reason goes to the log.
impl From<JwtError> for Rejection {
    fn from(error: JwtError) -> Rejection {
        match error {
            JwtError::Expired => Rejection::TokenExpired,
            JwtError::TooLarge
            | JwtError::Malformed
            | JwtError::AlgorithmNotAllowed
            | JwtError::CriticalHeader
            | JwtError::UnknownKey
            | JwtError::BadSignature
            | JwtError::NotYetValid
            | JwtError::IssuedInFuture
            | JwtError::BadClaims => Rejection::InvalidToken,
        }
    }
}
