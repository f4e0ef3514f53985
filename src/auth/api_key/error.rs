//! Why a key was refused: the reason the log gives, and the one refusal the client sees.

use crate::auth::keystore::Restriction;
use crate::reject::{Rejection, Stage};

/// Why a key was refused (for the log; the client sees `invalid_api_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    Malformed,
    UnknownId,
    WrongSecret,
    Restricted(Restriction),
    /// The verification queue is full: 503, try again.
    Overloaded,
    /// The verification itself failed (its task panicked or was cancelled): a fault, 500,
    /// never cached as a verdict on the key.
    Fault,
    /// The store could not be re-read for longer than `max_store_age`: 503, no key is
    /// trusted from a copy that may miss a revocation.
    Stale,
}

impl KeyError {
    pub fn reason(self) -> &'static str {
        match self {
            KeyError::Malformed => "malformed key",
            KeyError::UnknownId => "unknown key id",
            KeyError::WrongSecret => "wrong secret",
            KeyError::Restricted(Restriction::Disabled) => "key disabled",
            KeyError::Restricted(Restriction::Expired) => "key expired",
            KeyError::Restricted(Restriction::NotYetValid) => "key not yet valid",
            KeyError::Restricted(Restriction::Address) => "client address not allowed",
            KeyError::Overloaded => "verification queue full",
            KeyError::Fault => "verification failed inside moat",
            KeyError::Stale => "key store not re-read within max_store_age",
        }
    }
}

/// Every key failure is the same 401 to the client (the log says which); a full queue is
/// 503 and a fault 500, never a verdict on the key.
impl From<KeyError> for Rejection {
    fn from(error: KeyError) -> Rejection {
        match error {
            KeyError::Overloaded => Rejection::Overloaded,
            KeyError::Fault => Rejection::Internal(Stage::Authenticate),
            KeyError::Stale => Rejection::KeyStoreStale,
            KeyError::Malformed
            | KeyError::UnknownId
            | KeyError::WrongSecret
            | KeyError::Restricted(_) => Rejection::InvalidApiKey,
        }
    }
}
