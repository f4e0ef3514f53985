//! Credential extraction for stage 3: where a request carries its bearer token and its API
//! key, read exactly one way. A credential sent twice is refused outright, since proxies and
//! servers disagree on which copy counts.

use std::borrow::Cow;

use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::Caller;
use super::api_key::KeyLocation;
use crate::reject::Rejection;

/// The API key where `location` says: exactly one value, or refused.
pub(super) fn api_key<'r>(
    caller: &Caller<'r>,
    location: &KeyLocation,
) -> Result<Option<Cow<'r, str>>, Rejection> {
    let values: Vec<Cow<'r, str>> = match location {
        KeyLocation::Header(name) => caller
            .headers
            .get_all(name)
            .iter()
            .map(|v| {
                v.to_str()
                    .map(Cow::Borrowed)
                    .map_err(|_| Rejection::InvalidApiKey)
            })
            .collect::<Result<_, _>>()?,
        KeyLocation::Query(name) => form_urlencoded::parse(caller.query.unwrap_or("").as_bytes())
            .filter(|(key, _)| key == name)
            .map(|(_, value)| Cow::Owned(value.into_owned()))
            .collect(),
        KeyLocation::Cookie(name) => crate::validate::params::cookies(caller.headers)
            .into_iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| Cow::Borrowed(value))
            .collect(),
    };
    match values.len() {
        0 => Ok(None),
        1 => Ok(values.into_iter().next()),
        _ => Err(Rejection::InvalidApiKey),
    }
}

/// The bearer token, if the request carries one: exactly one `Authorization` header, scheme
/// `Bearer` in any case. Another scheme (Basic) counts as no bearer token; two headers are
/// refused outright, since proxies and servers disagree on which one counts.
pub(super) fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, Rejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Rejection::InvalidToken);
    }
    let value = value.to_str().map_err(|_| Rejection::InvalidToken)?;
    let Some((scheme, token)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Rejection::InvalidToken);
    }
    Ok(Some(token))
}
