//! The Redis Cluster harness itself (`support::redis_cluster`), which the
//! cluster tests of SPEC §16 stand on: a real 6-node cluster forms in a few
//! seconds with 3 masters that each serve slots; a key lands on the master
//! the harness names for its slot; a planned failover and a crash swap the
//! roles it reports; a slot moved by hand or by `redis-cli --cluster
//! reshard` takes its keys along.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use deadpool_redis::redis;

use crate::support::redis_cluster::{RedisCluster, RedisClusterOptions, SLOTS, key_slot};

fn exists(cluster: &RedisCluster, port: u16, key: &str) -> redis::RedisResult<bool> {
    cluster.query(port, redis::cmd("EXISTS").arg(key))
}

#[test]
fn a_cluster_forms_with_three_masters_and_keys_land_on_their_slot_master() {
    let started = Instant::now();
    let cluster = RedisCluster::start();
    eprintln!("6-node Redis Cluster ready in {:?}", started.elapsed());

    assert_eq!(cluster.nodes().len(), 6);
    assert!(cluster.nodes().iter().all(|n| n.starts_with("127.0.0.1:")));
    assert!(
        cluster
            .seed_urls()
            .iter()
            .all(|u| u.starts_with("redis://127.0.0.1:"))
    );
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "masters: {masters:?}");
    assert_eq!(cluster.replicas().len(), 3);
    let mut served = 0u32;
    for &master in &masters {
        let slots = cluster.slots_of(master);
        assert!(!slots.is_empty(), "{master} serves no slot");
        served += slots
            .iter()
            .map(|&(a, b)| u32::from(b - a) + 1)
            .sum::<u32>();
        let replica = cluster
            .replica_of(master)
            .expect("each master has a replica");
        assert!(!masters.contains(&replica));
    }
    assert_eq!(served, u32::from(SLOTS));

    // The subject's hash tag puts a session and its user's index together.
    let session = "tg:{u:ada}:s:0190f5c2";
    assert_eq!(cluster.slot_of(session), cluster.slot_of("tg:{u:ada}:idx"));
    for key in [session, "tg:throttle:10.0.0.1", "{}x", "a{b}c{d}", "plain"] {
        assert_eq!(key_slot(key), cluster.slot_of(key), "slot of {key}");
    }

    // Written through redis-cli -c (a client that follows MOVED) at a node
    // that does not serve the slot: the key is on the master named for it.
    let slot = cluster.slot_of(session);
    let owner = cluster.master_of_slot(slot);
    let elsewhere = *masters
        .iter()
        .find(|&&m| m != owner)
        .expect("another master");
    let output = Command::new("redis-cli")
        .args(["-c", "-p", &elsewhere.to_string(), "SET", session, "v1"])
        .output()
        .expect("run redis-cli");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "OK");
    assert!(exists(&cluster, owner, session).unwrap());
    let moved = exists(&cluster, elsewhere, session).unwrap_err();
    assert_eq!(moved.redirect_node().map(|(_, s)| s), Some(slot));
    let value: String = cluster.route(redis::cmd("GET").arg(session)).unwrap();
    assert_eq!(value, "v1");
    assert_eq!(cluster.keys("tg:*"), vec![session.to_owned()]);
    assert_eq!(cluster.pttl(session), -1);

    cluster.flushall();
    assert!(cluster.keys("*").is_empty());
}

#[test]
fn a_planned_failover_and_a_crash_swap_the_roles() {
    let mut cluster = RedisCluster::start();
    let key = "tg:{u:grace}:idx";
    let slot = cluster.slot_of(key);
    let () = cluster
        .route(redis::cmd("SET").arg(key).arg("before"))
        .unwrap();

    // CLUSTER FAILOVER: the replica takes over, the old master follows it.
    let old = cluster.master_of_slot(slot);
    let replica = cluster.replica_of(old).expect("a replica");
    let started = Instant::now();
    let promoted = cluster.failover(old);
    eprintln!("CLUSTER FAILOVER settled in {:?}", started.elapsed());
    assert_eq!(promoted, replica);
    assert_eq!(cluster.master_of_slot(slot), promoted);
    assert!(cluster.masters().contains(&promoted));
    assert!(!cluster.masters().contains(&old));
    assert_eq!(cluster.replica_of(promoted), Some(old));
    // Nothing written before is lost in a planned failover.
    let value: String = cluster.route(redis::cmd("GET").arg(key)).unwrap();
    assert_eq!(value, "before");

    // A crash: the old master, now the replica, takes the slots back.
    cluster.kill(promoted);
    assert!(!cluster.is_running(promoted));
    let started = Instant::now();
    let next = cluster.wait_for_failover_of(promoted);
    eprintln!("killed master replaced in {:?}", started.elapsed());
    assert_eq!(next, old);
    assert_eq!(cluster.master_of_slot(slot), old);
    assert_eq!(cluster.masters().len(), 3);

    // Back, empty, as a replica of its successor.
    cluster.restart(promoted);
    assert!(cluster.is_running(promoted));
    assert_eq!(cluster.replica_of(old), Some(promoted));
    assert_eq!(cluster.masters().len(), 3);
    assert_eq!(cluster.replicas().len(), 3);
}

#[test]
fn a_slot_moved_by_hand_or_by_redis_cli_takes_its_keys() {
    let cluster = RedisCluster::start();
    let keys = ["tg:{u:linus}:s:1", "tg:{u:linus}:s:2", "tg:{u:linus}:idx"];
    for key in keys {
        let () = cluster
            .route(redis::cmd("SET").arg(key).arg(key).arg("PX").arg(60_000))
            .unwrap();
    }
    let slot = cluster.slot_of(keys[0]);
    let from = cluster.master_of_slot(slot);
    let to = *cluster
        .masters()
        .iter()
        .find(|&&m| m != from)
        .expect("another master");

    // Moved while a client keeps writing keys of the slot (following
    // MOVED and ASK): every write lands, and ends up on the target.
    let stop = AtomicBool::new(false);
    let written = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut written = Vec::new();
            while !stop.load(Ordering::Relaxed) || written.len() < 50 {
                let key = format!("tg:{{u:linus}}:w:{}", written.len());
                let () = cluster
                    .route(redis::cmd("SET").arg(&key).arg(1))
                    .unwrap_or_else(|e| panic!("SET {key} during the migration: {e}"));
                written.push(key);
            }
            written
        });
        cluster.migrate_slot(slot, to);
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("the writer")
    });
    assert_eq!(cluster.master_of_slot(slot), to);
    for key in &written {
        assert!(exists(&cluster, to, key).unwrap(), "{key} on {to}");
    }
    for key in keys {
        assert!(exists(&cluster, to, key).unwrap(), "{key} moved along");
        assert!(
            exists(&cluster, from, key).is_err(),
            "{from} redirects {key}"
        );
        let value: String = cluster.route(redis::cmd("GET").arg(key)).unwrap();
        assert_eq!(value, key);
        assert!(cluster.pttl(key) > 0, "{key} keeps its TTL");
    }

    // redis-cli --cluster reshard: its choice of slots, keys and all.
    let moved = cluster.reshard(to, from, 2);
    assert_eq!(moved.len(), 2, "moved {moved:?}");
    for slot in moved {
        assert_eq!(cluster.master_of_slot(slot), from);
    }
    let mut served = 0u32;
    for master in cluster.masters() {
        for (a, b) in cluster.slots_of(master) {
            served += u32::from(b - a) + 1;
        }
    }
    assert_eq!(served, u32::from(SLOTS));
    assert_eq!(cluster.keys("tg:{u:linus}:*").len(), 3 + written.len());
}

#[test]
fn fewer_than_three_masters_with_a_password_are_joined_by_hand() {
    let cluster = RedisClusterOptions::default()
        .masters(2)
        .replicas_per_master(1)
        .password("cluster-harness-password")
        .start();
    assert_eq!(cluster.masters().len(), 2);
    assert_eq!(cluster.replicas().len(), 2);
    assert!(cluster.seed_urls()[0].starts_with("redis://:cluster-harness-password@"));
    let key = "tg:{u:ada}:idx";
    let () = cluster.route(redis::cmd("SET").arg(key).arg("v")).unwrap();
    let owner = cluster.master_of_slot(cluster.slot_of(key));
    assert!(exists(&cluster, owner, key).unwrap());
    // Without the password a node refuses.
    let refused = redis::Client::open(format!("redis://127.0.0.1:{owner}"))
        .unwrap()
        .get_connection()
        .and_then(|mut c| redis::cmd("GET").arg(key).query::<Option<String>>(&mut c));
    assert!(refused.is_err());
    let promoted = cluster.failover(owner);
    assert_eq!(cluster.master_of_slot(cluster.slot_of(key)), promoted);
}
