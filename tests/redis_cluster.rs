//! Limits, quotas and a key store on a Redis Cluster of three primaries, started from
//! Debian's `redis-server` with `cluster-enabled yes`: two moat replicas admit together
//! exactly a key's burst and quota, each key's counters in one slot (its hash tag), and a
//! key minted and revoked with `moat keys --store redis+cluster://…` reaches a replica
//! through the cluster's pub/sub.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod support;

use std::time::Instant;

use support::{
    Moat, RedisCluster, Upstream, config, eventually, fixture, metric, moat_keys,
    moat_keys_at as keys,
};

#[test]
fn limits_and_quotas_on_a_cluster_admit_exactly_the_limit_across_replicas() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let bursty = moat_keys(
        &store,
        &[
            "new",
            "--id",
            "bursty",
            "--scopes",
            "predict",
            "--rate-limit",
            "1/4",
        ],
    );
    let metered = moat_keys(
        &store,
        &[
            "new", "--id", "metered", "--scopes", "predict", "--quota", "6/day",
        ],
    );
    let upstream = Upstream::start();
    let text = config(
        &upstream.url(),
        &format!(
            "openapi:\n  file: {}\nauth:\n  schemes:\n    api_key: {{type: api_key, store: {}}}\npolicy:\n  default: [{{api_key: []}}]\n  client_rate_limit: {{per_second: 100, burst: 100}}\nlimits:\n  store:\n    redis:\n      url: ${{REDIS_URL}}\n      timeout: 500ms\n",
            fixture("model.yaml"),
            store.display()
        ),
    );
    let url = cluster.url();
    let env = [("REDIS_URL", url.as_str())];
    let replicas = [
        Moat::start_with_env(&text, &env),
        Moat::start_with_env(&text, &env),
    ];

    let started = Instant::now();
    let admitted = (0..10)
        .filter(|i| support::predict_with_key(&replicas[i % 2], &bursty).status == 200)
        .count() as u64;
    let refilled = started.elapsed().as_secs();
    assert!(
        (4..=4 + refilled).contains(&admitted),
        "{admitted} admitted from a shared burst of 4"
    );

    let statuses: Vec<u16> = (0..9)
        .map(|i| support::predict_with_key(&replicas[i % 2], &metered).status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 429, 429, 429]);
    for replica in &replicas {
        let admits = metric(
            replica,
            r#"moat_limit_decisions_total{source="redis",decision="admit"}"#,
        );
        assert!(admits > 0, "no decision came from the cluster");
        assert_eq!(metric(replica, "moat_limit_store_errors_total{"), 0);
    }
    // The quota's counter lives on the node that owns the slot of `{metered}`.
    let slot = cluster.cli(cluster.ports[0], &["CLUSTER", "KEYSLOT", "{metered}"]);
    let found: Vec<String> = cluster
        .ports
        .iter()
        .map(|port| cluster.cli(*port, &["--scan", "--pattern", "moat:quota:{metered}:*"]))
        .filter(|keys| !keys.trim().is_empty())
        .collect();
    assert_eq!(found.len(), 1, "slot {slot}: {found:?}");
}

#[test]
fn a_key_store_on_a_cluster_pushes_new_and_revoked_keys_to_the_replicas() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let url = cluster.url();
    let first = keys(&url, &["new", "--id", "first", "--scopes", "predict"]);
    let upstream = Upstream::start();
    let text = config(
        &upstream.url(),
        &format!(
            "openapi:\n  file: {}\nauth:\n  schemes:\n    api_key:\n      type: api_key\n      store:\n        redis:\n          url: ${{REDIS_URL}}\npolicy:\n  default: [{{api_key: []}}]\n",
            fixture("model.yaml"),
        ),
    );
    let env = [("REDIS_URL", url.as_str())];
    let replicas = [
        Moat::start_with_env(&text, &env),
        Moat::start_with_env(&text, &env),
    ];
    for moat in &replicas {
        assert_eq!(support::predict_with_key(moat, &first).status, 200);
    }
    let second = keys(&url, &["new", "--id", "second", "--scopes", "predict"]);
    assert!(eventually(|| replicas
        .iter()
        .all(|m| support::predict_with_key(m, &second).status == 200)));
    keys(&url, &["revoke", "first"]);
    assert!(eventually(|| replicas
        .iter()
        .all(|m| support::predict_with_key(m, &first).status == 401)));
    let listed = keys(&url, &["list"]);
    assert!(
        listed.contains("second") && listed.contains("disabled"),
        "{listed}"
    );
}
