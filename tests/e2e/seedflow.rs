//! The original service's k6 load test, shortened: virtual users ramped up
//! and held through nginx on three replicas, each looping ping → login →
//! authenticate → refresh → logout with the access token from before the
//! refresh, on its own keep-alive connection (`support::load::seedflow`).
//! Not one request may fail. The full size (1,000 VUs, 30 s) is
//! `scripts/bench --seedflow`.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::load::{SeedflowOptions, Step, seedflow};
use crate::{EXCLUSIVE, options, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_load_test_shortened_fails_nothing_through_nginx() {
    // It counts failed requests: alone on the cores.
    let _exclusive = EXCLUSIVE.write().await;
    let cluster = start(options());
    let run = SeedflowOptions {
        vus: 50,
        ramp: Duration::from_secs(2),
        hold: Duration::from_secs(2),
        think_max: Duration::from_millis(200),
        request_timeout: Duration::from_secs(5),
    };
    let report = seedflow(cluster.addr(), run.clone()).await;
    eprintln!("{report}");

    assert_eq!(report.failed(), 0, "{report}");
    // Every VU got through at least one whole iteration: each step ran at
    // least once per VU, and all of them as often as the others.
    for step in Step::ALL {
        assert!(
            report.step(step).count >= run.vus as u64,
            "{step:?} ran {} times for {} VUs: {report}",
            report.step(step).count,
            run.vus
        );
        assert_eq!(report.step(step).count, report.iterations, "{report}");
    }
    assert!(
        report.elapsed < Duration::from_secs(15),
        "took {:?}: {report}",
        report.elapsed
    );

    // Through nginx to every replica: the public /authenticate was answered
    // by all three.
    let ports: BTreeSet<u16> = cluster
        .nginx()
        .access_log()
        .iter()
        .filter(|l| l.uri == "/authenticate")
        .filter_map(|l| l.upstream_ports().last().copied())
        .collect();
    let all: BTreeSet<u16> = (0..cluster.replica_count())
        .map(|i| cluster.replica_port(i))
        .collect();
    assert_eq!(ports, all, "replicas that answered /authenticate");
}
