//! The real Docker engine for tests. No registry is reachable, so the test
//! image is made here: Debian's static busybox packed with `docker import`.
//! Everything a test creates carries its `Scratch` prefix and is removed when
//! the `Scratch` drops, even after a failed assertion.

use std::collections::HashMap;
use std::sync::OnceLock;

use bollard::query_parameters::{
    CreateImageOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptions,
    ListVolumesOptions, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;

/// The test image: busybox (sh, sleep, httpd, …) and nothing else.
pub const TEST_IMAGE: &str = "berth-test-busybox:1";
/// Label on everything tests create outside berth.
pub const TEST_LABEL: &str = "berth-test";

pub fn docker() -> Docker {
    Docker::connect_with_local_defaults().expect("docker socket")
}

/// Builds the test image once per test binary (on a thread of its own, so
/// that any test's runtime may call this).
pub fn test_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        std::thread::spawn(|| {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                // Importing over an existing tag would leave the old image dangling.
                if docker().inspect_image(TEST_IMAGE).await.is_err() {
                    build_image(TEST_IMAGE, true).await;
                }
            });
        })
        .join()
        .expect("test image builds");
    });
    TEST_IMAGE
}

/// A root filesystem tarball: busybox plus its applets as symlinks.
pub fn rootfs_tar(with_busybox: bool) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    for d in ["bin/", "tmp/", "etc/", "data/"] {
        builder
            .append_data(&mut dir.clone(), d, std::io::empty())
            .unwrap();
    }
    if with_busybox {
        let busybox = std::fs::read("/bin/busybox").expect(
            "/bin/busybox (Debian's busybox-static; scripts/install-deps.sh --test installs it)",
        );
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_size(busybox.len() as u64);
        builder
            .append_data(&mut h, "bin/busybox", &busybox[..])
            .unwrap();
        for applet in [
            "sh",
            "sleep",
            "echo",
            "cat",
            "httpd",
            "env",
            "sha256sum",
            "ls",
            "nslookup",
            "wget",
            "seq",
            "true",
            "false",
            "hostname",
            "kill",
        ] {
            let mut link = tar::Header::new_gnu();
            link.set_entry_type(tar::EntryType::Symlink);
            link.set_size(0);
            link.set_mode(0o777);
            builder
                .append_link(&mut link, format!("bin/{applet}"), "busybox")
                .unwrap();
        }
    } else {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(6);
        builder
            .append_data(&mut h, "etc/marker", &b"berth\n"[..])
            .unwrap();
    }
    builder.into_inner().unwrap()
}

/// `docker import` of `rootfs_tar` as `reference` (repo:tag).
pub async fn build_image(reference: &str, with_busybox: bool) {
    let docker = docker();
    let (repo, tag) = reference.split_once(':').unwrap();
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .changes(vec![
            format!("LABEL {TEST_LABEL}=1"),
            "ENV PATH=/bin".to_string(),
            "CMD [\"/bin/sh\"]".to_string(),
        ])
        .build();
    let body = bollard::body_full(rootfs_tar(with_busybox).into());
    let mut stream = Box::pin(docker.create_image(Some(options), Some(body), None));
    while let Some(item) = stream.next().await {
        item.expect("docker import");
    }
}

/// A unique prefix for one test's Docker objects, cleaned up on drop.
pub struct Scratch {
    pub prefix: String,
}

impl Scratch {
    pub fn new() -> Scratch {
        test_image();
        let prefix = format!("bt{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        Scratch { prefix }
    }

    pub fn name(&self, s: &str) -> String {
        format!("{}-{s}", self.prefix)
    }

    /// Containers whose name starts with the prefix.
    pub async fn containers(&self) -> Vec<bollard::models::ContainerSummary> {
        let filters = HashMap::from([("name".to_string(), vec![format!("^/{}", self.prefix)])]);
        docker()
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap()
    }
}

impl Scratch {
    /// Runs `sh -c script` in a throwaway container with `volume` (created,
    /// labelled, if missing) mounted at `mount`; returns its stdout.
    pub async fn run_with_volume(
        &self,
        image: &str,
        volume: &str,
        mount: &str,
        script: &str,
    ) -> String {
        let docker = docker();
        if docker.inspect_volume(volume).await.is_err() {
            docker
                .create_volume(bollard::models::VolumeCreateRequest {
                    name: Some(volume.to_string()),
                    labels: Some(HashMap::from([(TEST_LABEL.to_string(), "1".to_string())])),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        let name = self.name(&format!(
            "sh-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        ));
        let body = bollard::models::ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(vec!["sh".into(), "-c".into(), script.into()]),
            labels: Some(HashMap::from([(TEST_LABEL.to_string(), "1".to_string())])),
            host_config: Some(bollard::models::HostConfig {
                binds: Some(vec![format!("{volume}:{mount}")]),
                ..Default::default()
            }),
            ..Default::default()
        };
        docker
            .create_container(
                Some(
                    bollard::query_parameters::CreateContainerOptionsBuilder::new()
                        .name(&name)
                        .build(),
                ),
                body,
            )
            .await
            .unwrap();
        docker
            .start_container(
                &name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .unwrap();
        let mut wait = docker.wait_container(
            &name,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        while let Some(r) = wait.next().await {
            let r = r.unwrap_or_else(|e| panic!("{script}: {e}"));
            assert_eq!(r.status_code, 0, "{script}");
        }
        let mut logs = docker.logs(
            &name,
            Some(
                bollard::query_parameters::LogsOptionsBuilder::new()
                    .stdout(true)
                    .build(),
            ),
        );
        let mut out = String::new();
        while let Some(chunk) = logs.next().await {
            out.push_str(&chunk.unwrap().to_string());
        }
        docker
            .remove_container(
                &name,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await
            .unwrap();
        out
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(remove_prefixed(&prefix));
        })
        .join();
    }
}

/// Removes containers, volumes and networks named `<prefix>…` that berth or
/// a test created — never anything else.
async fn remove_prefixed(prefix: &str) {
    let docker = docker();
    let ours = |labels: Option<&HashMap<String, String>>| {
        labels.is_some_and(|l| {
            l.contains_key("berth.managed")
                || l.contains_key(TEST_LABEL)
                || l.contains_key("berth.backup.restored-from")
        })
    };
    let filters = HashMap::from([("name".to_string(), vec![format!("^/{prefix}")])]);
    if let Ok(list) = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
    {
        for c in list {
            if ours(c.labels.as_ref()) {
                let _ = docker
                    .remove_container(
                        c.id.as_deref().unwrap_or_default(),
                        Some(
                            RemoveContainerOptionsBuilder::new()
                                .force(true)
                                .v(true)
                                .build(),
                        ),
                    )
                    .await;
            }
        }
    }
    if let Ok(list) = docker.list_volumes(None::<ListVolumesOptions>).await {
        for v in list.volumes.unwrap_or_default() {
            if v.name.starts_with(prefix) && ours(Some(&v.labels)) {
                let _ = docker
                    .remove_volume(
                        &v.name,
                        None::<bollard::query_parameters::RemoveVolumeOptions>,
                    )
                    .await;
            }
        }
    }
    if let Ok(list) = docker.list_networks(None::<ListNetworksOptions>).await {
        for n in list {
            let name = n.name.clone().unwrap_or_default();
            if name.starts_with(prefix) && ours(n.labels.as_ref()) {
                let _ = docker.remove_network(&name).await;
            }
        }
    }
}
