//! Delivery through a running container's root (`docker::in_root`) against the real engine: the
//! same layout the archive API writes (the two take turns on one directory), owners and modes,
//! no way out of the container through its links, and a refusal wherever the archive API's rules
//! would differ (a tmpfs) or the process is not the container's.

mod common;

use certdock::docker::{self, BollardActions, DockerActions, Upload, in_root};
use common::ContainerSpec;

fn files(cert: &str, key: &str) -> Vec<(String, Vec<u8>, u32)> {
    vec![
        ("cert.pem".to_owned(), cert.as_bytes().to_vec(), 0o644),
        ("key.pem".to_owned(), key.as_bytes().to_vec(), 0o600),
    ]
}

fn upload<'a>(
    id: &'a str,
    dir: &'a str,
    files: &'a [(String, Vec<u8>, u32)],
    v: &'a str,
) -> Upload<'a> {
    Upload {
        container_id: id,
        dir,
        files,
        uid: 1000,
        gid: 1001,
        version: v,
        first: false,
    }
}

async fn pid(docker: &docker::Docker, id: &str) -> u32 {
    docker::ops::upload_target(docker, id)
        .await
        .expect("inspect")
        .and_then(|t| t.pid)
        .expect("the container runs")
}

async fn shows(c: &common::TestContainer, docker: &docker::Docker, dir: &str) -> String {
    let script = format!(
        "cat {dir}/cert.pem {dir}/key.pem; echo; readlink {dir}/..data; cat {dir}/..data/.version; \
         stat -L -c '%a %u:%g' {dir}/cert.pem {dir}/key.pem"
    );
    let (code, out) = c.exec(docker, &["sh", "-c", &script]).await;
    assert_eq!(code, 0, "{out}");
    out
}

#[tokio::test]
async fn a_running_container_gets_the_set_through_its_root_in_turn_with_the_archive_api() {
    let docker = common::docker().await;
    let c = ContainerSpec::default().run(&docker).await;
    let pid = pid(&docker, &c.id).await;
    let dir = "/run/certdock/deep";

    let v1 = files("CERT-1", "KEY-1");
    in_root::write(pid, &upload(&c.id, dir, &v1, "v1")).expect("through the root");
    assert_eq!(
        shows(&c, &docker, dir).await,
        "CERT-1KEY-1\n..certdock-a\nv1\n644 1000:1001\n600 1000:1001\n"
    );
    let made = c
        .exec(&docker, &["stat", "-c", "%a %u:%g", "/run/certdock", dir])
        .await;
    assert_eq!(
        made,
        (0, "755 0:0\n755 0:0\n".to_owned()),
        "missing parents as the archive makes them"
    );

    let v2 = files("CERT-2", "KEY-2");
    in_root::write(pid, &upload(&c.id, dir, &v2, "v2")).expect("through the root");
    assert!(
        shows(&c, &docker, dir)
            .await
            .starts_with("CERT-2KEY-2\n..certdock-b\nv2\n")
    );

    // The archive API reads what this path wrote, and the other way round.
    let v3 = files("CERT-3", "KEY-3");
    docker::upload_files(&docker, &c.id, dir, &v3, 1000, 1001, "v3")
        .await
        .expect("archive upload");
    assert!(
        shows(&c, &docker, dir)
            .await
            .starts_with("CERT-3KEY-3\n..certdock-a\nv3\n")
    );
    let v4 = files("CERT-4", "KEY-4");
    in_root::write(pid, &upload(&c.id, dir, &v4, "v4")).expect("through the root");
    assert_eq!(
        shows(&c, &docker, dir).await,
        "CERT-4KEY-4\n..certdock-b\nv4\n644 1000:1001\n600 1000:1001\n"
    );
    // One old version kept, nothing else left behind (no temporary links).
    let (_, listing) = c.exec(&docker, &["ls", "-A", dir]).await;
    let mut names: Vec<&str> = listing.split_whitespace().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "..certdock-a",
            "..certdock-b",
            "..data",
            "cert.pem",
            "key.pem"
        ]
    );
}

#[tokio::test]
async fn links_in_the_container_resolve_inside_it_never_on_the_host() {
    let docker = common::docker().await;
    let host = tempfile::tempdir().expect("tempdir");
    let host_path = host.path().to_str().expect("utf-8").to_owned();
    let c = ContainerSpec::default().run(&docker).await;
    // The same absolute path exists inside; one link names it, one climbs to it with `..`.
    let script = format!(
        "mkdir -p {host_path} && ln -s {host_path} /run/abs && \
         ln -s ../../../../../../../..{host_path} /run/rel"
    );
    assert_eq!(c.exec(&docker, &["sh", "-c", &script]).await.0, 0);
    let pid = pid(&docker, &c.id).await;

    for (dir, cert) in [("/run/abs", "CERT-ABS"), ("/run/rel/sub", "CERT-REL")] {
        let set = files(cert, "KEY");
        in_root::write(pid, &upload(&c.id, dir, &set, "v1")).expect("through the root");
    }
    let inside = format!("cat {host_path}/cert.pem {host_path}/sub/cert.pem");
    assert_eq!(
        c.exec(&docker, &["sh", "-c", &inside]).await,
        (0, "CERT-ABSCERT-REL".to_owned())
    );
    let on_host: Vec<_> = std::fs::read_dir(host.path()).expect("read").collect();
    assert!(on_host.is_empty(), "written on the host: {on_host:?}");

    // A magic link (`/proc/self/root`) is refused outright, not followed.
    assert_eq!(
        c.exec(&docker, &["ln", "-s", "/proc/self/root/tmp", "/run/magic"])
            .await
            .0,
        0
    );
    let set = files("CERT", "KEY");
    let declined = in_root::write(pid, &upload(&c.id, "/run/magic", &set, "v1"))
        .expect_err("a /proc link crosses into procfs");
    assert!(declined.0.contains("/run/magic"), "{declined}");
}

#[tokio::test]
async fn a_tmpfs_a_foreign_process_or_a_stopped_container_is_declined() {
    let docker = common::docker().await;
    let set = files("CERT", "KEY");

    // Docker's archive API has its own rules for mounts; this path does not guess them.
    let tmpfs = ContainerSpec::default().tmpfs("/run").run(&docker).await;
    let tmpfs_pid = pid(&docker, &tmpfs.id).await;
    let declined = in_root::write(tmpfs_pid, &upload(&tmpfs.id, "/run/certdock", &set, "v1"))
        .expect_err("a tmpfs is another filesystem");
    assert!(declined.0.contains("/run"), "{declined}");
    let (_, listing) = tmpfs.exec(&docker, &["ls", "-A", "/run"]).await;
    assert_eq!(listing, "", "nothing written on the tmpfs");

    // A process that is not the container's, though the id is right.
    let other = ContainerSpec::default().run(&docker).await;
    let declined = in_root::write(
        std::process::id(),
        &upload(&other.id, "/run/certdock", &set, "v1"),
    )
    .expect_err("this test's own process is in no container's cgroup");
    assert!(declined.0.contains("cgroup"), "{declined}");
    let declined = in_root::write(tmpfs_pid, &upload(&other.id, "/run/certdock", &set, "v1"))
        .expect_err("another container's process");
    assert!(declined.0.contains("cgroup"), "{declined}");

    let created = ContainerSpec::default().create(&docker).await;
    assert_eq!(
        docker::ops::upload_target(&docker, &created.id)
            .await
            .expect("inspect")
            .and_then(|t| t.pid),
        None
    );
}

#[tokio::test]
async fn the_engines_actions_deliver_into_a_running_container_and_fall_back_for_a_volume() {
    let docker = common::docker().await;
    let actions = BollardActions::new(docker::connect);
    let set = files("CERT-1", "KEY-1");

    let plain = ContainerSpec::default().run(&docker).await;
    actions
        .upload(upload(&plain.id, "/run/certdock", &set, "v1"))
        .await
        .expect("delivered");
    // Written by this process, not extracted from a tar: tar keeps whole-second times.
    let (_, mtime) = plain
        .exec(
            &docker,
            &["stat", "-L", "-c", "%y", "/run/certdock/cert.pem"],
        )
        .await;
    assert!(!mtime.contains(".000000000"), "{mtime}");
    assert_eq!(
        shows(&plain, &docker, "/run/certdock").await,
        "CERT-1KEY-1\n..certdock-a\nv1\n644 1000:1001\n600 1000:1001\n"
    );

    // The archive API delivers where the root path declines (a volume), and into created
    // containers.
    let volume = ContainerSpec::default().volume("/srv").run(&docker).await;
    actions
        .upload(upload(&volume.id, "/srv/certdock", &set, "v1"))
        .await
        .expect("delivered by the archive API");
    let (code, out) = volume
        .exec(&docker, &["cat", "/srv/certdock/cert.pem"])
        .await;
    assert_eq!((code, out.as_str()), (0, "CERT-1"));
    let created = ContainerSpec::default().create(&docker).await;
    actions
        .upload(Upload {
            first: true,
            ..upload(&created.id, "/run/certdock", &set, "v1")
        })
        .await
        .expect("delivered into a created container");
    created.start(&docker).await;
    let (code, out) = created
        .exec(&docker, &["cat", "/run/certdock/cert.pem"])
        .await;
    assert_eq!((code, out.as_str()), (0, "CERT-1"));
}

#[tokio::test]
async fn a_directory_on_a_tmpfs_is_refused_by_either_path_with_the_reason() {
    let docker = common::docker().await;
    let set = files("CERT-1", "KEY-1");
    let tmpfs = ContainerSpec::default().tmpfs("/run").run(&docker).await;
    for actions in [
        BollardActions::new(docker::connect),
        BollardActions::new(docker::connect).archive_only(),
    ] {
        let err = actions
            .upload(upload(&tmpfs.id, "/run/certdock", &set, "v1"))
            .await
            .expect_err("a tmpfs hides what the archive API copies");
        let text = err.to_string();
        assert!(
            text.contains("/run/certdock") && text.contains("tmpfs mounted at /run"),
            "{text}"
        );
        assert!(!err.is_transient(), "{text}");
    }
    // Beside the tmpfs, the same container is served.
    actions_deliver(&docker, &tmpfs, "/etc/certdock").await;
}

async fn actions_deliver(docker: &docker::Docker, c: &common::TestContainer, dir: &str) {
    let set = files("CERT-2", "KEY-2");
    BollardActions::new(docker::connect)
        .upload(upload(&c.id, dir, &set, "v2"))
        .await
        .expect("delivered");
    let (code, out) = c.exec(docker, &["cat", &format!("{dir}/cert.pem")]).await;
    assert_eq!((code, out.as_str()), (0, "CERT-2"));
}
