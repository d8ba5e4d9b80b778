//! `upload_first` (one archive call, no stat) against the real engine: a fresh container gets the
//! whole layout, and where a delivery already exists (a lost ledger) the new set replaces it with
//! no key beside the wrong certificate.

mod common;

use certdock::docker;
use certdock::docker::Upload;
use common::ContainerSpec;

fn files(cert: &str, key: &str) -> Vec<(String, Vec<u8>, u32)> {
    vec![
        ("cert.pem".to_owned(), cert.as_bytes().to_vec(), 0o644),
        ("key.pem".to_owned(), key.as_bytes().to_vec(), 0o600),
    ]
}

#[tokio::test]
async fn a_first_upload_into_a_created_container_is_read_at_start() {
    let docker = common::docker().await;
    let container = ContainerSpec::default().create(&docker).await;
    let files = files("CERT-1", "KEY-1");
    docker::upload_first(
        &docker,
        &Upload {
            container_id: &container.id,
            dir: "/run/certdock",
            files: &files,
            uid: 1000,
            gid: 1001,
            version: "v1",
            first: true,
        },
    )
    .await
    .expect("upload into a created container");
    container.start(&docker).await;

    let cat = container
        .exec(
            &docker,
            &["cat", "/run/certdock/cert.pem", "/run/certdock/key.pem"],
        )
        .await;
    assert_eq!(cat, (0, "CERT-1KEY-1".to_owned()));
    let key = container
        .exec(
            &docker,
            &["stat", "-L", "-c", "%a %u:%g", "/run/certdock/key.pem"],
        )
        .await;
    assert_eq!(key, (0, "600 1000:1001\n".to_owned()));
    let data = container
        .exec(&docker, &["readlink", "/run/certdock/..data"])
        .await;
    assert_eq!(data, (0, "..certdock-a\n".to_owned()));
}

#[tokio::test]
async fn a_first_upload_over_an_earlier_delivery_replaces_the_whole_set() {
    let docker = common::docker().await;
    let container = ContainerSpec::default().run(&docker).await;
    let dir = "/run/certdock";
    // Two earlier deliveries: slot a holds v1, slot b (live) holds v2.
    for (cert, key, version) in [("CERT-1", "KEY-1", "v1"), ("CERT-2", "KEY-2", "v2")] {
        docker::upload_files(
            &docker,
            &container.id,
            dir,
            &files(cert, key),
            0,
            0,
            version,
        )
        .await
        .expect("upload");
    }
    docker::upload_first(
        &docker,
        &Upload {
            container_id: &container.id,
            dir,
            files: &files("CERT-3", "KEY-3"),
            uid: 0,
            gid: 0,
            version: "v3",
            first: true,
        },
    )
    .await
    .expect("first upload over an earlier one");
    let cat = container
        .exec(
            &docker,
            &[
                "cat",
                "/run/certdock/cert.pem",
                "/run/certdock/key.pem",
                "/run/certdock/..data/.version",
            ],
        )
        .await;
    assert_eq!(cat, (0, "CERT-3KEY-3v3\n".to_owned()));

    // Slot a was live once more: the ordinary path now swaps to b.
    docker::upload_files(
        &docker,
        &container.id,
        dir,
        &files("CERT-4", "KEY-4"),
        0,
        0,
        "v4",
    )
    .await
    .expect("upload after a first upload");
    let cat = container
        .exec(
            &docker,
            &["cat", "/run/certdock/cert.pem", "/run/certdock/key.pem"],
        )
        .await;
    assert_eq!(cat, (0, "CERT-4KEY-4".to_owned()));
    let data = container
        .exec(&docker, &["readlink", "/run/certdock/..data"])
        .await;
    assert_eq!(data, (0, "..certdock-b\n".to_owned()));
}
