//! The config's scalar formats: durations, listen addresses, the upstream URL, and the
//! defaults serde's `default = "…"` attributes name.

use std::net::SocketAddr;
use std::time::Duration;

use http::Uri;
use serde::{Deserialize, Deserializer};

pub(super) fn yes() -> bool {
    true
}

pub(super) fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}

pub(super) fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}

pub(super) fn secs<const N: u64>() -> Duration {
    Duration::from_secs(N)
}

pub(super) fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration ({e}); write it like `30s`, `5m` or `250ms`"
        ))
    })
}

pub(super) fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

pub(super) fn socket_addr<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "`{text}` is not a listen address; write IP:PORT, e.g. `0.0.0.0:8080` or `[::1]:8080`"
        ))
    })
}

pub(super) fn upstream_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Uri, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_upstream_url(&text).map_err(serde::de::Error::custom)
}

pub(super) fn parse_upstream_url(text: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("`{text}` is not a URL ({e})"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "upstream `{text}` must be an http:// URL: the model runs beside moat and TLS to it \
             is not supported"
        ));
    }
    if uri
        .authority()
        .is_none_or(|a| a.port_u16().is_none() && a.host().is_empty())
    {
        return Err(format!("upstream `{text}` has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("upstream `{text}` must not have a query"));
    }
    Ok(uri)
}

pub(super) fn one_or_many<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}
