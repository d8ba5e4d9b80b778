//! Group 3 — the controller against the real Docker engine:
//!  * latency: Docker `create`/`start` event → files delivered, one container at a time, for
//!    `volume` delivery (the moment `OUT/certs/NAME/cert.pem` appears) and `container` delivery
//!    (the timestamp of certdock's own `"message":"delivered"` log line), and for container
//!    delivery Docker's `State.StartedAt` → the moment the container's own entrypoint found
//!    `cert.pem` readable (it polls every 1 ms and prints the clock);
//!  * burst: N labelled containers (`traefik.hosts`, volume) created and started back to back →
//!    time from the last start until every certificate is on disk, until `traefik/certdock.yml`
//!    names all of them, and how many times that YAML was written (each is a Traefik reload);
//!  * resync: a fresh certdock started beside the N running containers → time until all served;
//!  * RSS of the `certdock run` process with N managed certificates (group 4's real figure).
//!
//! Containers run the local test image (`tests/images/build.sh`), carry `io.certdock.test=1`
//! and a label prefix of their own (so no other certdock acts on them), and are removed at the
//! end. Run: `scripts/bench.sh controller` (needs Docker; `BENCH_BURSTS=30,100,300`;
//! `BENCH_LATENCY=volume,container` picks the latency modes, each measured `BENCH_RUNS` times;
//! `BENCH_BURST_START=0` only creates the burst's containers: `BENCH_BURSTS=1000` fits then).

mod common;
#[path = "common/controller_run.rs"]
mod controller_run;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, StartContainerOptions,
};
use common::{Stats, machine, quantile, rss_kib, runs};
use controller_run::*;
use futures_util::StreamExt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const IMAGE: &str = "certdock-test/busybox:latest";
/// How many containers the latency figure is taken over, per delivery mode.
const LATENCY_SAMPLES: usize = 30;

/// The entrypoint of a container-delivery sample: waits for its certificate the way the README
/// tells an application to, then prints the moment it became readable (busybox `date` has no
/// nanoseconds; `adjtimex` reads the same host clock to the microsecond).
const WAIT_FOR_CERT: &str = "until [ -s /run/certdock/cert.pem ]; do usleep 1000; done; \
     adjtimex | grep time.tv; exec sleep 86400";

async fn create(docker: &Docker, name: &str, labels: HashMap<String, String>) -> String {
    create_with(docker, name, labels, vec!["sleep".into(), "86400".into()]).await
}

async fn create_with(
    docker: &Docker,
    name: &str,
    labels: HashMap<String, String>,
    cmd: Vec<String>,
) -> String {
    let mut labels = labels;
    labels.insert("io.certdock.test".into(), "1".into());
    labels.insert("io.certdock.bench".into(), "1".into());
    let body = ContainerCreateBody {
        image: Some(IMAGE.to_string()),
        // No fork loop: 300 of these must stay cheap for the machine being measured.
        cmd: Some(cmd),
        labels: Some(labels),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.to_string()),
                ..Default::default()
            }),
            body,
        )
        .await
        .expect("create container")
        .id
}

async fn start(docker: &Docker, id: &str) {
    docker
        .start_container(id, None::<StartContainerOptions>)
        .await
        .expect("start container");
}

async fn remove_all(docker: &Docker, ids: &[String]) {
    futures_util::stream::iter(ids.iter().cloned())
        .for_each_concurrent(8, |id| async move {
            let _ = docker
                .remove_container(
                    &id,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await;
        })
        .await;
}

/// Polls until `done()` or the timeout; returns when it became true.
async fn wait_until(
    timeout: Duration,
    every: Duration,
    mut done: impl FnMut() -> bool,
) -> Option<SystemTime> {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return Some(SystemTime::now());
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

fn uniq() -> String {
    format!("{:08x}", rand::random::<u32>())
}

#[tokio::main]
async fn main() {
    let docker = certdock::docker::connect()
        .await
        .expect("connect to Docker");
    let status =
        Command::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/images/build.sh"))
            .status()
            .expect("tests/images/build.sh");
    assert!(status.success());
    println!("# group 3: controller — {}", machine());
    println!("certdock binary: {}", bin().display());
    let events = EventTimes::follow(&docker);
    let bursts: Vec<usize> = std::env::var("BENCH_BURSTS")
        .unwrap_or_else(|_| "30,100,300".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();

    let modes = std::env::var("BENCH_LATENCY").unwrap_or_else(|_| "volume,container".into());
    for delivery in modes.split(',').filter(|m| !m.is_empty()) {
        for _ in 0..runs() {
            latency(&docker, &events, delivery).await;
        }
    }
    for n in bursts {
        burst(&docker, &events, n).await;
    }
}

/// One container at a time: event → files delivered.
async fn latency(docker: &Docker, events: &EventTimes, delivery: &str) {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("cdb-{}", uniq());
    let run = Run::start(dir.path(), &prefix, "latency");
    run.wait_ready();
    let (mut from_create, mut from_start) = (Vec::new(), Vec::new());
    let mut readable = Vec::new();
    let mut ids = Vec::new();
    for i in 0..LATENCY_SAMPLES {
        let name = format!("lat-{}-{i}-{}", &delivery[..3], uniq());
        let labels = HashMap::from([
            (label(&prefix, "enable"), "true".to_string()),
            (label(&prefix, "name"), name.clone()),
            (label(&prefix, "delivery"), delivery.to_string()),
        ]);
        // Watch for the files from before the container exists: certdock may deliver at
        // `create`, before `start` returns.
        let cert = run.out.join("certs").join(&name).join("cert.pem");
        let watch = (delivery == "volume").then(|| {
            tokio::spawn(async move {
                wait_until(Duration::from_secs(20), Duration::from_millis(1), || {
                    cert.exists()
                })
                .await
            })
        });
        // What `docker run` does: create, then start at once.
        let id = if delivery == "container" {
            let cmd = vec!["sh".into(), "-c".into(), WAIT_FOR_CERT.into()];
            create_with(docker, &name, labels, cmd).await
        } else {
            create(docker, &name, labels).await
        };
        start(docker, &id).await;
        ids.push(id.clone());
        let delivered_at = if let Some(watch) = watch {
            watch.await.unwrap()
        } else {
            let mut at = None;
            let deadline = Instant::now() + Duration::from_secs(20);
            while at.is_none() && Instant::now() < deadline {
                at = run
                    .log_lines("delivered")
                    .iter()
                    .filter(|l| l.get("container").and_then(|c| c.as_str()) == Some(name.as_str()))
                    .filter_map(ts)
                    .min();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            at
        };
        let delivered_at = delivered_at
            .unwrap_or_else(|| panic!("{name} never served; see {}", run.log.display()));
        if delivery == "container" {
            let (started, seen) = started_and_readable(docker, &id).await;
            readable.push(ms_between(started, seen));
        }
        from_create.push(ms_between(events.get(&name, "create").await, delivered_at));
        from_start.push(ms_between(events.get(&name, "start").await, delivered_at));
        // Let the loop go idle between samples: this measures one event, not a burst.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "controller latency delivery={delivery} samples={LATENCY_SAMPLES} \
         create->delivered p50={:.1} ms p99={:.1} ms max={:.1} ms | start->delivered p50={:.1} ms p99={:.1} ms max={:.1} ms",
        quantile(&from_create, 0.5),
        quantile(&from_create, 0.99),
        quantile(&from_create, 1.0),
        quantile(&from_start, 0.5),
        quantile(&from_start, 0.99),
        quantile(&from_start, 1.0),
    );
    if !readable.is_empty() {
        println!(
            "controller latency delivery=container samples={LATENCY_SAMPLES} \
             StartedAt->cert.pem readable inside p50={:.1} ms p99={:.1} ms max={:.1} ms",
            quantile(&readable, 0.5),
            quantile(&readable, 0.99),
            quantile(&readable, 1.0),
        );
    }
    remove_all(docker, &ids).await;
    drop(run);
    drop(dir);
}

/// Docker's `State.StartedAt` of the container, and the moment its entrypoint
/// ([`WAIT_FOR_CERT`]) found `cert.pem` readable, from its output.
async fn started_and_readable(docker: &Docker, id: &str) -> (SystemTime, SystemTime) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new("docker").args(["logs", id]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |key: &str| -> Option<u64> {
            let line = text.lines().find(|l| l.contains(key))?;
            line.rsplit(':').next()?.trim().parse().ok()
        };
        if let (Some(sec), Some(usec)) = (field("time.tv_sec"), field("time.tv_usec")) {
            let seen = SystemTime::UNIX_EPOCH + Duration::from_micros(sec * 1_000_000 + usec);
            let inspect = docker
                .inspect_container(
                    id,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
                .expect("inspect");
            let started = inspect
                .state
                .and_then(|s| s.started_at)
                .and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok())
                .expect("StartedAt");
            let started = SystemTime::UNIX_EPOCH
                + Duration::from_nanos(started.unix_timestamp_nanos() as u64);
            return (started, seen);
        }
        assert!(Instant::now() < deadline, "{id} never saw its cert.pem");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// N containers started back to back; then a fresh certdock resyncing them.
async fn burst(docker: &Docker, events: &EventTimes, n: usize) {
    let runs = runs();
    // `BENCH_BURST_START=0`: containers are only created (a created container is managed too:
    // volume delivery serves it), so 1,000 of them fit a small machine without 1,000 shims.
    let started = std::env::var("BENCH_BURST_START").map_or(true, |v| v != "0");
    let event = if started { "start" } else { "create" };
    let (mut files, mut yaml, mut writes, mut resync, mut rss, mut hwm) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!("cdb-{}", uniq());
        let run = Run::start(dir.path(), &prefix, "burst");
        run.wait_ready();
        // The first YAML (CA only) is written shortly after start; let it land first.
        let yml = run.out.join("traefik/certdock.yml");
        wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
            yml.exists()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let writes_before = run.log_lines("wrote proxy configuration").len();

        let tag = uniq();
        let names: Vec<String> = (0..n).map(|i| format!("b{tag}-{i}")).collect();
        let mut ids = Vec::new();
        for name in &names {
            let labels = HashMap::from([
                (label(&prefix, "enable"), "true".to_string()),
                (label(&prefix, "name"), name.clone()),
                (label(&prefix, "delivery"), "volume".to_string()),
                (label(&prefix, "traefik.hosts"), "true".to_string()),
                (
                    format!("traefik.http.routers.{name}.rule"),
                    format!("Host(`{name}.bench.internal`)"),
                ),
            ]);
            let id = create(docker, name, labels).await;
            if started {
                start(docker, &id).await;
            }
            ids.push(id);
        }
        let last_start = events.get(names.last().unwrap(), event).await;
        let certs = run.out.join("certs");
        let all_files = wait_until(Duration::from_secs(120), Duration::from_millis(2), || {
            names
                .iter()
                .all(|n| certs.join(n).join("cert.pem").exists())
        })
        .await
        .expect("every certificate on disk");
        let all_yaml = wait_until(Duration::from_secs(120), Duration::from_millis(2), || {
            let text = std::fs::read_to_string(&yml).unwrap_or_default();
            names.iter().all(|n| text.contains(&format!("certs/{n}/")))
        })
        .await
        .expect("every certificate in certdock.yml");
        // Let any trailing write (burst cap, late plans) happen before counting.
        tokio::time::sleep(Duration::from_secs(6)).await;
        files.push(ms_between(last_start, all_files));
        yaml.push(ms_between(last_start, all_yaml));
        writes.push((run.log_lines("wrote proxy configuration").len() - writes_before) as f64);
        let (now, peak) = rss_kib(&run.pid());
        rss.push(now as f64 / 1024.0);
        hwm.push(peak as f64 / 1024.0);
        drop(run);

        // Startup resync: a fresh certdock (new state, new CA) beside N running containers.
        let dir2 = tempfile::tempdir().unwrap();
        let started = SystemTime::now();
        let mut run2 = Run::start(dir2.path(), &prefix, "resync");
        let certs2 = run2.out.join("certs");
        let served = wait_until(Duration::from_secs(120), Duration::from_millis(2), || {
            names
                .iter()
                .all(|n| certs2.join(n).join("cert.pem").exists())
        })
        .await
        .expect("every certificate after resync");
        resync.push(ms_between(started, served));
        run2.stop();
        let _ = &run2.dir;
        remove_all(docker, &ids).await;
    }
    println!(
        "controller burst N={n} ({event}d) runs={runs}: last {event} -> all files {} ms; -> all in certdock.yml {} ms; \
         certdock.yml writes {}; startup resync (fresh state) -> all files {} ms; RSS of run with N managed {} MiB (peak {} MiB)",
        Stats::of(&files).show(0),
        Stats::of(&yaml).show(0),
        Stats::of(&writes).show(0),
        Stats::of(&resync).show(0),
        Stats::of(&rss).show(1),
        Stats::of(&hwm).show(1),
    );
}
