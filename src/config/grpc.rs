//! `grpc:` — the model's gRPC services: where their definition comes from (`.proto` files
//! compiled in-process, or a `FileDescriptorSet` from `protoc`/`buf`), where the model's
//! gRPC port is, and the bound on one message.

use std::collections::BTreeMap;
use std::path::PathBuf;

use http::Uri;
use serde::{Deserialize, Deserializer};

use super::de::parse_upstream_url;
use super::sections::UpstreamConfig;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    /// `.proto` files, compiled when the snapshot is built (no `protoc` needed).
    #[serde(default)]
    pub protos: Vec<PathBuf>,
    /// Where `import`s of `protos` are looked up; the directory of each proto when empty.
    #[serde(default)]
    pub includes: Vec<PathBuf>,
    /// A serialized `google.protobuf.FileDescriptorSet` (`protoc --include_imports -o`,
    /// `buf build -o`), instead of `protos`.
    #[serde(default)]
    pub descriptor_set: Option<PathBuf>,
    /// The model's gRPC port as an `http://host:port` URL (spoken over h2c).
    #[serde(default, deserialize_with = "optional_upstream_url")]
    pub upstream: Option<Uri>,
    /// The model's gRPC port on `upstream.url`'s host, instead of `upstream`.
    #[serde(default)]
    pub port: Option<u16>,
    /// The largest message either way, read from its 5-byte length prefix before any of it
    /// is held (gRPC's own default receive limit).
    #[serde(default = "four_mib")]
    pub max_message_bytes: u64,
    /// Settings per method, by `package.Service/Method`.
    #[serde(default)]
    pub methods: BTreeMap<String, MethodConfig>,
    /// Rules per method, by `package.Service/Method`: a JSON Schema (2020-12) each request
    /// message's proto3 JSON must satisfy (proto field names, 64-bit integers as numbers).
    #[serde(default)]
    pub rules: BTreeMap<String, serde_json::Value>,
    /// `buf.validate` annotations in the definitions, which moat does not enforce: a load
    /// error (`refuse`, the default) or served without them (`ignore`).
    #[serde(default)]
    pub protovalidate: Protovalidate,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protovalidate {
    #[default]
    Refuse,
    Ignore,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodConfig {
    /// Fields the method's input type does not declare: refused (the default), or let
    /// through for a service that evolves faster than the proto moat has.
    #[serde(default)]
    pub unknown_fields: UnknownFields,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownFields {
    #[default]
    Refuse,
    Allow,
}

fn four_mib() -> u64 {
    4 * 1024 * 1024
}

fn optional_upstream_url<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Uri>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_upstream_url(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

impl GrpcConfig {
    /// A config of `protos` with every other setting at its default (port 1), for unit
    /// tests elsewhere.
    #[cfg(test)]
    pub fn for_tests(protos: Vec<PathBuf>) -> GrpcConfig {
        GrpcConfig {
            protos,
            includes: Vec::new(),
            descriptor_set: None,
            upstream: None,
            port: Some(1),
            max_message_bytes: 1024,
            methods: BTreeMap::new(),
            rules: BTreeMap::new(),
            protovalidate: Protovalidate::Refuse,
        }
    }

    /// The problems serde cannot see: one source of definitions, one upstream address.
    pub(super) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match (self.protos.is_empty(), &self.descriptor_set) {
            (false, None) | (true, Some(_)) => {}
            _ => problems.push(
                "`grpc` needs exactly one of `protos` (.proto files) and `descriptor_set` \
                 (a FileDescriptorSet file)"
                    .to_owned(),
            ),
        }
        if self.descriptor_set.is_some() && !self.includes.is_empty() {
            problems.push(
                "`grpc.includes` applies to `protos` only: a descriptor set carries its imports"
                    .to_owned(),
            );
        }
        match (&self.upstream, self.port) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => problems.push(
                "`grpc` needs exactly one of `upstream` (http://host:port of the model's gRPC \
                 port) and `port` (on `upstream.url`'s host)"
                    .to_owned(),
            ),
        }
        if self.max_message_bytes == 0 {
            problems.push("`grpc.max_message_bytes` must be greater than 0".to_owned());
        }
        problems
    }

    /// The model's gRPC address: `upstream`, else `upstream.url`'s host at `port`.
    pub fn upstream_uri(&self, upstream: &UpstreamConfig) -> Result<Uri, String> {
        if let Some(uri) = &self.upstream {
            return Ok(uri.clone());
        }
        let host = upstream.url.host().unwrap_or("127.0.0.1");
        let port = self.port.unwrap_or(0);
        let host = match host.contains(':') && !host.starts_with('[') {
            true => format!("[{host}]"),
            false => host.to_owned(),
        };
        format!("http://{host}:{port}")
            .parse()
            .map_err(|error| format!("`grpc.port`: no address on `upstream.url`'s host ({error})"))
    }

    /// Every file the definitions are read from, for the watcher.
    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        self.protos.iter().chain(&self.descriptor_set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> GrpcConfig {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn one_source_and_one_address_are_required() {
        let both = parse("{protos: [a.proto], descriptor_set: a.pb, port: 8081}");
        assert_eq!(both.problems().len(), 1, "{:?}", both.problems());
        let neither = parse("{port: 8081}");
        assert!(neither.problems()[0].contains("exactly one of `protos`"));
        let no_address = parse("{protos: [a.proto]}");
        assert!(no_address.problems()[0].contains("exactly one of `upstream`"));
        let good = parse("{protos: [a.proto], port: 8081}");
        assert!(good.problems().is_empty());
        assert_eq!(good.max_message_bytes, 4 * 1024 * 1024);
    }

    #[test]
    fn the_port_goes_on_the_upstream_host() {
        let upstream: UpstreamConfig =
            serde_saphyr::from_str("url: http://127.0.0.1:8080/prefix").unwrap();
        let config = parse("{protos: [a.proto], port: 8081}");
        assert_eq!(
            config.upstream_uri(&upstream).unwrap(),
            "http://127.0.0.1:8081"
        );
        let config = parse("{protos: [a.proto], upstream: 'http://[::1]:9000'}");
        assert_eq!(
            config.upstream_uri(&upstream).unwrap(),
            "http://[::1]:9000/"
        );
        assert!(serde_saphyr::from_str::<GrpcConfig>("{upstream: 'https://x:1'}").is_err());
    }
}
