//! Credentials in a request, all in one place: where stage 3 reads its bearer token and
//! its API key — exactly one way; a credential sent twice is refused outright, since
//! proxies and servers disagree on which copy counts — and how admission strips every one
//! of them before the request goes on (unless `forward_credentials`).

use std::borrow::Cow;

use http::header::{AUTHORIZATION, COOKIE, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Uri};

use super::Caller;
use super::api_key::KeyLocation;
use crate::reject::Rejection;
use crate::validate::params::{cookie_pair, cookies};

/// The API key where `location` says: exactly one value, or refused. Read without
/// collecting: this runs on every request of a keyed operation.
pub(super) fn api_key<'r>(
    caller: &Caller<'r>,
    location: &KeyLocation,
) -> Result<Option<Cow<'r, str>>, Rejection> {
    match location {
        KeyLocation::Header(name) => exactly_one(caller.headers.get_all(name).iter().map(|v| {
            v.to_str()
                .map(Cow::Borrowed)
                .map_err(|_| Rejection::InvalidApiKey)
        })),
        KeyLocation::Query(name) => exactly_one(
            form_urlencoded::parse(caller.query.unwrap_or("").as_bytes())
                .filter(|(key, _)| key == name)
                .map(|(_, value)| Ok(value)),
        ),
        KeyLocation::Cookie(name) => exactly_one(
            cookies(caller.headers)
                .into_iter()
                .filter(|(key, _)| key == name)
                .map(|(_, value)| Ok(Cow::Borrowed(value))),
        ),
    }
}

/// The one value sent; `None` for none, refused when sent more than once (or unreadable).
fn exactly_one<'r>(
    mut values: impl Iterator<Item = Result<Cow<'r, str>, Rejection>>,
) -> Result<Option<Cow<'r, str>>, Rejection> {
    let first = values.next().transpose()?;
    match values.next() {
        None => Ok(first),
        Some(_) => Err(Rejection::InvalidApiKey),
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

/// Removes the credentials a request carries in its head — `Authorization`, and the API
/// keys of `credentials` in their headers and cookies — so neither the model nor anything
/// after admission sees them. (A key in the query leaves with [`without_query_credentials`].)
pub fn strip_credentials(headers: &mut HeaderMap, credentials: &[KeyLocation]) {
    headers.remove(AUTHORIZATION);
    for location in credentials {
        match location {
            KeyLocation::Header(name) => {
                headers.remove(name);
            }
            KeyLocation::Cookie(name) => strip_cookie(headers, name),
            KeyLocation::Query(_) => {}
        }
    }
}

/// Removes the cookie `name` from every `Cookie` header, keeping the others as sent.
fn strip_cookie(headers: &mut HeaderMap, name: &str) {
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .map(|value| without_cookie(value, name))
        .filter(|value| !value.trim().is_empty())
        .collect();
    headers.remove(COOKIE);
    for value in kept {
        if let Ok(value) = HeaderValue::from_str(value.trim_start()) {
            headers.append(COOKIE, value);
        }
    }
}

/// One `Cookie` header's value without the cookie `name`, the others as sent.
fn without_cookie(value: &str, name: &str) -> String {
    value
        .split(';')
        .filter(|pair| cookie_pair(pair).is_none_or(|(key, _)| key != name))
        .collect::<Vec<_>>()
        .join(";")
}

/// The URI without query parameters that carry API keys (every other byte of the query
/// stays), or `None` when there is nothing to remove.
pub fn without_query_credentials(uri: &Uri, credentials: &[KeyLocation]) -> Option<Uri> {
    let names = query_names(credentials);
    let query = uri.query().filter(|_| !names.is_empty())?;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !names.contains(&pair_name(pair).as_str()))
        .collect();
    if kept.len() == query.split('&').count() {
        return None;
    }
    let path_and_query = if kept.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(parts).ok()
}

/// The query parameters API keys travel in.
fn query_names(credentials: &[KeyLocation]) -> Vec<&str> {
    credentials
        .iter()
        .filter_map(|location| match location {
            KeyLocation::Query(name) => Some(name.as_str()),
            _ => None,
        })
        .collect()
}

/// The decoded name of a query's `name=value` pair.
fn pair_name(pair: &str) -> String {
    let raw_name = pair.split('=').next().unwrap_or_default();
    form_urlencoded::parse(raw_name.as_bytes())
        .next()
        .map(|(name, _)| name.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_query_header_and_cookie_are_stripped_and_the_rest_kept() {
        let credentials = [
            KeyLocation::Query("api_key".into()),
            KeyLocation::Cookie("k".into()),
            KeyLocation::Header(http::header::HeaderName::from_static("x-api-key")),
        ];
        let uri: Uri = "/v1/models?limit=5&api_key=secret&x=a%20b".parse().unwrap();
        let stripped = without_query_credentials(&uri, &credentials).unwrap();
        assert_eq!(
            stripped.path_and_query().unwrap().as_str(),
            "/v1/models?limit=5&x=a%20b"
        );
        let only: Uri = "/p?api%5Fkey=secret".parse().unwrap();
        let stripped = without_query_credentials(&only, &credentials).unwrap();
        assert_eq!(stripped.path_and_query().unwrap().as_str(), "/p");
        let none: Uri = "/p?a=1".parse().unwrap();
        assert!(without_query_credentials(&none, &credentials).is_none());
        let mut map = HeaderMap::new();
        for (name, value) in [
            ("cookie", "session=1; k=secret; theme=dark"),
            ("authorization", "Bearer abc"),
            ("x-api-key", "moat_a_b"),
            ("x-kept", "1"),
        ] {
            map.append(name, HeaderValue::from_static(value));
        }
        strip_credentials(&mut map, &credentials);
        assert_eq!(map["cookie"], "session=1; theme=dark");
        let names: Vec<&str> = map.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["cookie", "x-kept"]);
    }
}
