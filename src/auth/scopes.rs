//! The scopes a credential grants, shared like its names (`ids::Name`): the list and its
//! `X-Moat-Scopes` value are built once per verified credential, so admitting a request
//! copies a pointer, not a list of strings.

use std::sync::Arc;

use http::HeaderValue;

use crate::ids::shared_header;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Scopes(Option<Arc<List>>);

#[derive(PartialEq, Eq)]
struct List {
    scopes: Vec<String>,
    /// The scopes space-separated, as the model gets them; `None` if they cannot be a
    /// header value (then the header is not sent).
    header: Option<HeaderValue>,
}

impl Scopes {
    pub fn new(scopes: Vec<String>) -> Scopes {
        if scopes.is_empty() {
            return Scopes(None);
        }
        let header = shared_header(scopes.join(" ").into_bytes());
        Scopes(Some(Arc::new(List { scopes, header })))
    }

    /// `X-Moat-Scopes`: the scopes space-separated.
    pub fn header(&self) -> Option<&HeaderValue> {
        self.0.as_ref().and_then(|list| list.header.as_ref())
    }

    /// These and `more`'s, each once: shared as they are when `more` adds none (the common
    /// case of a token and a key granting the same scopes).
    pub fn union(&self, more: &Scopes) -> Scopes {
        if more.iter().all(|scope| self.contains(scope)) {
            return self.clone();
        }
        if self.is_empty() {
            return more.clone();
        }
        let mut scopes = self.to_vec();
        for scope in more.iter() {
            if !scopes.contains(scope) {
                scopes.push(scope.clone());
            }
        }
        Scopes::new(scopes)
    }
}

impl std::ops::Deref for Scopes {
    type Target = [String];

    fn deref(&self) -> &[String] {
        self.0.as_ref().map_or(&[], |list| &list.scopes)
    }
}

impl std::fmt::Debug for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl FromIterator<String> for Scopes {
    fn from_iter<I: IntoIterator<Item = String>>(scopes: I) -> Scopes {
        Scopes::new(scopes.into_iter().collect())
    }
}

impl<'de> serde::Deserialize<'de> for Scopes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Scopes, D::Error> {
        Vec::<String>::deserialize(deserializer).map(Scopes::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(list: &[&str]) -> Scopes {
        Scopes::new(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn a_union_that_adds_nothing_shares_the_list() {
        let token = scopes(&["predict", "read"]);
        let key = scopes(&["read"]);
        let joined = token.union(&key);
        assert!(Arc::ptr_eq(
            joined.0.as_ref().unwrap(),
            token.0.as_ref().unwrap()
        ));
        assert_eq!(key.union(&token)[..], ["read", "predict"]);
        assert_eq!(Scopes::default().union(&key)[..], ["read"]);
        assert_eq!(key.union(&token).header().unwrap(), "read predict");
    }

    #[test]
    fn scopes_that_cannot_be_a_header_are_kept_but_not_sent() {
        let odd = scopes(&["läsa"]);
        assert_eq!(odd[..], ["läsa"]);
        assert!(odd.header().is_none());
        assert!(Scopes::default().header().is_none());
    }
}
