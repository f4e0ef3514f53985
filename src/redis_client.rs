//! Redis as the limit store and the key store both reach it: one server
//! (`redis://`, `rediss://`), or a Redis Cluster (`redis+cluster://host:port,host:port`,
//! `rediss+cluster://…`: the seeds; the client learns the rest of the cluster from them).
//! The URL's own text never goes into a message: it may carry a password.

use std::path::Path;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::config::Secret;

/// Where Redis is, and how long one answer may take.
#[derive(Clone)]
pub struct Target {
    place: Place,
    timeout: Duration,
}

#[derive(Clone)]
enum Place {
    Single(redis::Client),
    Cluster {
        client: ClusterClient,
        /// One client per seed, for what a cluster connection does not do (`SUBSCRIBE`:
        /// a message published on any node reaches the subscribers of every node).
        seeds: Vec<redis::Client>,
    },
}

/// A connection to either kind.
#[derive(Clone)]
pub enum Connection {
    Managed(ConnectionManager),
    Multiplexed(MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

const NOT_A_URL: &str = "`url` is not a Redis URL: write redis://[user:password@]host:port[/db], \
     rediss://… for TLS, or redis+cluster://host:port,host:port for a Redis Cluster";

/// The target `url` names, trusting `ca_file` for TLS (else the system's roots); each
/// connection waits at most `timeout` for an answer (and at least 2 s to connect).
pub fn target(url: &Secret, ca_file: Option<&Path>, timeout: Duration) -> Result<Target, String> {
    if timeout.is_zero() {
        return Err("`timeout` must be more than 0".to_owned());
    }
    place(url, ca_file, timeout).map(|place| Target { place, timeout })
}

fn place(url: &Secret, ca_file: Option<&Path>, timeout: Duration) -> Result<Place, String> {
    let url = url.expose();
    let certificates = |ca_file: &Path| -> Result<redis::TlsCertificates, String> {
        let root_cert = crate::input::read(ca_file, crate::input::Kind::KeyMaterial)
            .map_err(|e| format!("ca_file: {e}"))?;
        Ok(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root_cert),
        })
    };
    if let Some(seeds) = cluster_seeds(url) {
        let seeds = seeds?;
        let tls = seeds
            .first()
            .is_some_and(|seed| seed.starts_with("rediss://"));
        if ca_file.is_some() && !tls {
            return Err("`ca_file` is for TLS: the `url` must start with rediss+cluster://".into());
        }
        let mut builder = ClusterClient::builder(seeds.clone())
            .connection_timeout(timeout.max(Duration::from_secs(2)))
            .response_timeout(timeout);
        if let Some(ca_file) = ca_file {
            builder = builder.certs(certificates(ca_file)?);
        }
        let client = builder.build().map_err(|_| NOT_A_URL.to_owned())?;
        let seeds = seeds
            .iter()
            .map(|seed| single(seed, ca_file.map(certificates).transpose()?))
            .collect::<Result<_, _>>()?;
        return Ok(Place::Cluster { client, seeds });
    }
    if ca_file.is_some() && !url.starts_with("rediss://") {
        return Err("`ca_file` is for TLS: the `url` must start with rediss://".into());
    }
    single(url, ca_file.map(certificates).transpose()?).map(Place::Single)
}

fn single(
    url: &str,
    certificates: Option<redis::TlsCertificates>,
) -> Result<redis::Client, String> {
    match certificates {
        None => redis::Client::open(url).map_err(|_| NOT_A_URL.to_owned()),
        Some(certificates) => redis::Client::build_with_tls(url, certificates).map_err(|_| {
            "`url` is not a rediss:// URL, or ca_file holds no PEM certificate".to_owned()
        }),
    }
}

/// `redis+cluster://[auth@]h1:p1,h2:p2[/]` → a `redis://[auth@]host:port` per seed; `None`
/// for a URL that does not name a cluster.
fn cluster_seeds(url: &str) -> Option<Result<Vec<String>, String>> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("redis+cluster://") {
        ("redis", rest)
    } else {
        ("rediss", url.strip_prefix("rediss+cluster://")?)
    };
    let rest = rest.trim_end_matches('/');
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), rest),
    };
    let seeds: Vec<String> = hosts
        .split(',')
        .filter(|host| !host.is_empty())
        .map(|host| format!("{scheme}://{auth}{host}"))
        .collect();
    Some(if seeds.is_empty() || hosts.contains('/') {
        Err(NOT_A_URL.to_owned())
    } else {
        Ok(seeds)
    })
}

impl Target {
    pub fn is_cluster(&self) -> bool {
        matches!(self.place, Place::Cluster { .. })
    }

    /// A new connection (a cluster one learns the slots from the seeds first).
    pub async fn connect(&self) -> redis::RedisResult<Connection> {
        match &self.place {
            Place::Single(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_response_timeout(Some(self.timeout))
                    .set_connection_timeout(Some(self.timeout.max(Duration::from_secs(2))));
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(Connection::Multiplexed)
            }
            Place::Cluster { client, .. } => {
                client.get_async_connection().await.map(Connection::Cluster)
            }
        }
    }

    /// A connection that reconnects by itself (the limit store's, one per proxy thread):
    /// to one server made at once and connected in the background; to a cluster, connected.
    pub async fn managed(&self) -> redis::RedisResult<Connection> {
        match &self.place {
            Place::Single(client) => {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_response_timeout(Some(self.timeout))
                    // A connect may take longer than one check waits: it goes on in the
                    // background while checks fall back.
                    .set_connection_timeout(Some(self.timeout.max(Duration::from_secs(2))))
                    .set_max_delay(Duration::from_secs(1));
                ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .map(Connection::Managed)
            }
            Place::Cluster { .. } => self.connect().await,
        }
    }

    /// A blocking connection, for `moat keys` and a store's first read.
    pub fn connect_blocking(&self) -> redis::RedisResult<Blocking> {
        match &self.place {
            Place::Single(client) => {
                let connection = client.get_connection_with_timeout(self.timeout)?;
                connection.set_read_timeout(Some(self.timeout))?;
                Ok(Blocking::Single(connection))
            }
            Place::Cluster { client, .. } => {
                Ok(Blocking::Cluster(Box::new(client.get_connection()?)))
            }
        }
    }

    /// The server to subscribe on: the one, or seed `attempt` (round robin) of a cluster.
    pub fn subscriber(&self, attempt: usize) -> &redis::Client {
        match &self.place {
            Place::Single(client) => client,
            Place::Cluster { seeds, .. } => &seeds[attempt % seeds.len()],
        }
    }
}

/// A blocking connection to either kind.
pub enum Blocking {
    Single(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Blocking {
    pub fn connection(&mut self) -> &mut dyn redis::ConnectionLike {
        match self {
            Blocking::Single(connection) => connection,
            Blocking::Cluster(connection) => &mut **connection,
        }
    }

    /// `commands` in one round trip (on a cluster, one per node they go to); their
    /// replies ignored, the first error returned.
    pub fn pipeline(&mut self, commands: impl IntoIterator<Item = Cmd>) -> redis::RedisResult<()> {
        match self {
            Blocking::Single(connection) => {
                let mut pipe = redis::pipe();
                commands.into_iter().for_each(|command| {
                    pipe.add_command(command).ignore();
                });
                pipe.query(connection)
            }
            Blocking::Cluster(connection) => {
                let mut pipe = redis::cluster::cluster_pipe();
                commands.into_iter().for_each(|command| {
                    pipe.add_command(command).ignore();
                });
                pipe.query(connection)
            }
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Managed(c) => c.req_packed_command(cmd),
            Connection::Multiplexed(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Multiplexed(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Managed(c) => c.get_db(),
            Connection::Multiplexed(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_url_names_its_seeds_with_their_credentials() {
        let seeds = cluster_seeds("redis+cluster://u:p@127.0.0.1:7000,127.0.0.1:7001/")
            .unwrap()
            .unwrap();
        assert_eq!(
            seeds,
            ["redis://u:p@127.0.0.1:7000", "redis://u:p@127.0.0.1:7001"]
        );
        assert_eq!(
            cluster_seeds("rediss+cluster://h:1").unwrap().unwrap(),
            ["rediss://h:1"]
        );
        assert!(cluster_seeds("redis://h:1").is_none());
        assert!(cluster_seeds("redis+cluster://").unwrap().is_err());
        assert!(
            cluster_seeds("redis+cluster://h:1/2").unwrap().is_err(),
            "a cluster has no db"
        );
        let secret = Secret::from("redis+cluster://127.0.0.1:7000,127.0.0.1:7001".to_owned());
        assert!(target(&secret, None, Duration::from_secs(1)).is_ok_and(|t| t.is_cluster()));
        let wrong = target(
            &Secret::from("http://x".to_owned()),
            None,
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert!(
            wrong.contains("redis+cluster://") && !wrong.contains("http://x"),
            "{wrong}"
        );
    }
}
