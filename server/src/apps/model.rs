//! Validation of an app's description and the isolation policy. Everything
//! here is pure: an `AppSpec` either comes out normalised or the first
//! problem comes back naming its field, before anything touches the engine.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use app::api::{Allowance, AppSpec};

use crate::http::error::ApiError;

/// Upper bounds that keep a typo from asking the engine for absurd values.
const MAX_MEMORY_MB: u64 = 1024 * 1024;
const MIN_MEMORY_MB: u64 = 6; // Docker's own minimum.
const MAX_PIDS: i64 = 1_000_000;
const MAX_ARGV_ITEMS: usize = 256;
const MAX_ARG_LEN: usize = 4096;
const MAX_ENV: usize = 512;
const MAX_ENV_VALUE: usize = 32 * 1024;
const MAX_LIST: usize = 64;

/// Labels whose keys start with this are berth's own.
pub const LABEL_PREFIX: &str = "berth.";

/// Host paths whose mount gives a container the host itself.
const DOCKER_SOCKETS: &[&str] = &["/var/run/docker.sock", "/run/docker.sock"];
const HOST_SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var",
    "/var/lib/docker",
];

/// A lowercase DNS label: what app and stack names must be, so that they are
/// safe as container names, network aliases and (later) host names.
pub fn check_dns_label(field: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            "must be 1 to 63 characters of a-z, 0-9 and '-', not starting or ending with '-'",
        ))
    }
}

/// Checks a Docker image reference: `[host[:port]/]path[:tag][@algo:hex]`.
pub fn check_image_ref(field: &str, reference: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::invalid(
            field,
            format!("not an image reference: {why}"),
        ))
    };
    if reference.is_empty() || reference.len() > 255 {
        return bad("expected 1 to 255 characters");
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (reference, None),
    };
    if let Some(d) = digest {
        let Some((algo, hex)) = d.split_once(':') else {
            return bad("a digest looks like sha256:<hex>");
        };
        let algo_ok = !algo.is_empty()
            && algo
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
        if !algo_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad("a digest looks like sha256:<hex>");
        }
    }
    // A tag follows the last ':' that comes after the last '/'.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            return bad("a tag is 1 to 128 of A-Z, a-z, 0-9, '_', '.' and '-'");
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // The first component is a registry host when it has a '.' or ':' or is localhost.
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let host = parts.remove(0);
        let (h, port) = match host.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        };
        let host_ok = !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
            && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
        if !host_ok {
            return bad("the registry host is not valid");
        }
    }
    for part in parts {
        if !path_component_ok(part) {
            return bad("path components are lowercase letters and digits, separated by '.', '_', '__' or '-'");
        }
    }
    Ok(())
}

fn path_component_ok(part: &str) -> bool {
    let bytes = part.as_bytes();
    if bytes.is_empty()
        || !bytes[0].is_ascii_alphanumeric()
        || !bytes[bytes.len() - 1].is_ascii_alphanumeric()
    {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            i += 1;
            continue;
        }
        // Separators: '.', '_', '__', or one or more '-'; never two kinds in a row.
        let run = bytes[i..].iter().take_while(|c| **c == b).count();
        let ok = match b {
            b'.' => run == 1,
            b'_' => run <= 2,
            b'-' => true,
            _ => false,
        };
        if !ok {
            return false;
        }
        i += run;
        if i < bytes.len() && !bytes[i].is_ascii_alphanumeric() {
            return false;
        }
    }
    true
}

/// Environment variable names as POSIX shells and most programs accept them.
pub fn check_env_name(field: &str, name: &str) -> Result<(), ApiError> {
    let mut bytes = name.bytes();
    let ok = name.len() <= 256
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            "an environment variable name is a letter or '_' followed by letters, digits and '_'",
        ))
    }
}

fn check_argv(field: &str, argv: &[String], allow_empty: bool) -> Result<(), ApiError> {
    if argv.is_empty() && !allow_empty {
        return Err(ApiError::invalid(field, "needs at least one item"));
    }
    if argv.len() > MAX_ARGV_ITEMS {
        return Err(ApiError::invalid(
            field,
            format!("at most {MAX_ARGV_ITEMS} items"),
        ));
    }
    for (i, arg) in argv.iter().enumerate() {
        if arg.len() > MAX_ARG_LEN {
            return Err(ApiError::invalid(format!("{field}[{i}]"), "too long"));
        }
        // Each item reaches the program as one argument; a newline or NUL in
        // one is almost always an attempt to smuggle a second command.
        if arg.contains(['\n', '\r', '\0']) {
            return Err(ApiError::invalid(
                format!("{field}[{i}]"),
                "must not contain newlines or NUL; give each argument as its own list item",
            ));
        }
    }
    Ok(())
}

/// Docker network names: the engine's own rule.
fn check_network_name(field: &str, name: &str) -> Result<(), ApiError> {
    let mut bytes = name.bytes();
    let ok = name.len() <= 128
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok && !matches!(name, "host" | "none") {
        Ok(())
    } else if matches!(name, "host" | "none") {
        Err(ApiError::invalid(
            field,
            "use `host_network` for the host's network; `none` is not supported",
        ))
    } else {
        Err(ApiError::invalid(
            field,
            "a network name is letters, digits, '_', '.' and '-', starting with a letter or digit",
        ))
    }
}

/// Named volumes follow Docker's rule for names.
pub fn is_volume_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    s.len() >= 2
        && s.len() <= 128
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// An absolute path with no `.`/`..` parts, so that prefix checks mean what
/// they say.
fn clean_absolute(field: &str, path: &str) -> Result<PathBuf, ApiError> {
    let p = Path::new(path);
    let clean = p.is_absolute()
        && !path.contains(['\0', '\n', ':', ','])
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if clean {
        Ok(p.components().collect())
    } else {
        Err(ApiError::invalid(
            field,
            "must be an absolute path without '.', '..', ':' or ','",
        ))
    }
}

/// What the engine-independent checks need to know about the host.
pub struct Policy<'a> {
    /// Host directories under which bind mounts are allowed.
    pub bind_roots: &'a [PathBuf],
}

/// Validates `spec` and returns it normalised (sorted allowances, cleaned
/// paths). `name` is the app's name when it comes from the URL.
pub fn validate(mut spec: AppSpec, policy: &Policy) -> Result<AppSpec, ApiError> {
    check_dns_label("name", &spec.name)?;
    check_image_ref("image", &spec.image)?;
    check_argv("command", &spec.command, true)?;
    if let Some(ep) = &spec.entrypoint {
        check_argv("entrypoint", ep, true)?;
    }
    if spec.env.len() > MAX_ENV {
        return Err(ApiError::invalid(
            "env",
            format!("at most {MAX_ENV} variables"),
        ));
    }
    for (k, v) in &spec.env {
        check_env_name(&format!("env.{k}"), k)?;
        if v.len() > MAX_ENV_VALUE || v.contains('\0') {
            return Err(ApiError::invalid(
                format!("env.{k}"),
                "values are at most 32 KiB and contain no NUL",
            ));
        }
    }
    check_ports(&spec)?;
    check_volumes(&mut spec, policy)?;
    if spec.networks.len() > MAX_LIST {
        return Err(ApiError::invalid("networks", format!("at most {MAX_LIST}")));
    }
    let mut seen = BTreeSet::new();
    for (i, n) in spec.networks.iter().enumerate() {
        check_network_name(&format!("networks[{i}]"), n)?;
        if !seen.insert(n) {
            return Err(ApiError::invalid(format!("networks[{i}]"), "listed twice"));
        }
    }
    if spec.update_order == app::api::UpdateOrder::StartFirst
        && (spec.ports.iter().any(|p| p.host.is_some()) || spec.host_network)
    {
        return Err(ApiError::invalid(
            "update_order",
            "start-first runs two containers at once, and host ports (or the host's network) cannot be held by both: use stop-first",
        ));
    }
    if spec.secret_groups.len() > MAX_LIST {
        return Err(ApiError::invalid(
            "secret_groups",
            format!("at most {MAX_LIST}"),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, g) in spec.secret_groups.iter().enumerate() {
        let field = format!("secret_groups[{i}]");
        check_dns_label(&field, g)?;
        if !seen.insert(g) {
            return Err(ApiError::invalid(field, "listed twice"));
        }
    }
    if spec.host_network && !spec.networks.is_empty() {
        return Err(ApiError::invalid(
            "networks",
            "an app on the host's network cannot join other networks",
        ));
    }
    for (i, a) in spec.aliases.iter().enumerate() {
        check_dns_label(&format!("aliases[{i}]"), a)?;
    }
    check_limits(&spec)?;
    if let Some(hc) = &spec.health_check {
        check_argv("health_check.test", &hc.test, false)?;
        let within = |field: &str, v: Option<u32>, lo: u32, hi: u32| match v {
            Some(v) if !(lo..=hi).contains(&v) => Err(ApiError::invalid(
                format!("health_check.{field}"),
                format!("must be between {lo} and {hi}"),
            )),
            _ => Ok(()),
        };
        within("interval_s", hc.interval_s, 1, 3600)?;
        within("timeout_s", hc.timeout_s, 1, 3600)?;
        within("retries", hc.retries, 1, 100)?;
        within("start_period_s", hc.start_period_s, 0, 3600)?;
    }
    if spec.labels.len() > MAX_ENV {
        return Err(ApiError::invalid(
            "labels",
            format!("at most {MAX_ENV} labels"),
        ));
    }
    for (k, v) in &spec.labels {
        let field = format!("labels.{k}");
        if k.starts_with(LABEL_PREFIX) {
            return Err(ApiError::invalid(
                &field,
                "keys starting with `berth.` are reserved",
            ));
        }
        let key_ok = !k.is_empty()
            && k.len() <= 256
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b));
        if !key_ok || v.len() > 4096 || v.contains('\0') {
            return Err(ApiError::invalid(
                &field,
                "label keys are letters, digits, '_', '.', '-' and '/'; values at most 4 KiB",
            ));
        }
    }
    for (i, cap) in spec.cap_add.iter().enumerate() {
        let ok = !cap.is_empty()
            && cap.len() <= 64
            && cap.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
        if !ok {
            return Err(ApiError::invalid(
                format!("cap_add[{i}]"),
                "a capability name such as NET_ADMIN",
            ));
        }
    }
    spec.allow.sort();
    spec.allow.dedup();
    check_policy(&spec)?;
    Ok(spec)
}

fn check_ports(spec: &AppSpec) -> Result<(), ApiError> {
    if spec.ports.len() > MAX_LIST {
        return Err(ApiError::invalid("ports", format!("at most {MAX_LIST}")));
    }
    let mut published = BTreeSet::new();
    let mut exposed = BTreeSet::new();
    for (i, p) in spec.ports.iter().enumerate() {
        if p.container == 0 {
            return Err(ApiError::invalid(
                format!("ports[{i}].container"),
                "must be 1 to 65535",
            ));
        }
        if !exposed.insert((p.container, p.protocol, p.host)) {
            return Err(ApiError::invalid(format!("ports[{i}]"), "listed twice"));
        }
        if let Some(bind) = &p.bind {
            if bind.parse::<std::net::IpAddr>().is_err() {
                return Err(ApiError::invalid(
                    format!("ports[{i}].bind"),
                    "must be an IP address such as 127.0.0.1 or ::1",
                ));
            }
        }
        if let Some(host) = p.host {
            if host == 0 {
                return Err(ApiError::invalid(
                    format!("ports[{i}].host"),
                    "must be 1 to 65535",
                ));
            }
            if spec.host_network {
                return Err(ApiError::invalid(
                    format!("ports[{i}].host"),
                    "an app on the host's network uses host ports directly; publishing is not possible",
                ));
            }
            if !published.insert((host, p.protocol)) {
                return Err(ApiError::invalid(
                    format!("ports[{i}].host"),
                    format!(
                        "host port {host}/{} is published twice",
                        p.protocol.as_str()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_volumes(spec: &mut AppSpec, policy: &Policy) -> Result<(), ApiError> {
    if spec.volumes.len() > MAX_LIST {
        return Err(ApiError::invalid("volumes", format!("at most {MAX_LIST}")));
    }
    let mut targets = BTreeSet::new();
    for (i, v) in spec.volumes.iter_mut().enumerate() {
        let target = clean_absolute(&format!("volumes[{i}].target"), &v.target)?;
        if target == Path::new("/") {
            return Err(ApiError::invalid(
                format!("volumes[{i}].target"),
                "cannot mount over /",
            ));
        }
        v.target = target.to_string_lossy().into_owned();
        if !targets.insert(v.target.clone()) {
            return Err(ApiError::invalid(
                format!("volumes[{i}].target"),
                "mounted twice",
            ));
        }
        let field = format!("volumes[{i}].source");
        if v.source.starts_with('/') {
            let source = clean_absolute(&field, &v.source)?;
            v.source = source.to_string_lossy().into_owned();
            // Dangerous host paths are a policy question (allowances),
            // decided in `check_policy`; everything else must sit under a
            // root the admin configured.
            if bind_danger(&source).is_none()
                && !policy
                    .bind_roots
                    .iter()
                    .any(|root| source.starts_with(root))
            {
                let roots = if policy.bind_roots.is_empty() {
                    "none are configured; set `bind_roots` in the config file".to_string()
                } else {
                    policy
                        .bind_roots
                        .iter()
                        .map(|r| r.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(ApiError::invalid(
                    &field,
                    format!("bind mounts are allowed only under the admin's bind roots ({roots})"),
                ));
            }
        } else if !is_volume_name(&v.source) {
            return Err(ApiError::invalid(
                &field,
                "a volume name (letters, digits, '_', '.', '-') or an absolute host path",
            ));
        }
    }
    Ok(())
}

/// The path a bind mount really reaches on this host: symlinks resolved in
/// the part that exists (Docker creates the rest as directories).
fn resolve_on_host(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            return rest.iter().rev().fold(real, |acc, part| acc.join(part));
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Checks bind mounts again after resolving symlinks on this host, so that a
/// link under a bind root (which a container with that root mounted could
/// plant) cannot reach the Docker socket or the host's system directories.
/// Only meaningful when the engine runs on this host.
pub fn check_resolved_binds(spec: &AppSpec, policy: &Policy) -> Result<(), ApiError> {
    let roots: Vec<PathBuf> = policy
        .bind_roots
        .iter()
        .map(|r| resolve_on_host(r))
        .collect();
    for (i, v) in spec.volumes.iter().enumerate() {
        if !v.source.starts_with('/') {
            continue;
        }
        let field = format!("volumes[{i}].source");
        let real = resolve_on_host(Path::new(&v.source));
        match bind_danger(&real) {
            Some(a) if !spec.allow.contains(&a) => {
                return Err(ApiError::invalid(
                    &field,
                    format!(
                        "refused by policy: `{}` leads to `{}`, which needs the `{}` allowance",
                        v.source,
                        real.display(),
                        a.as_str()
                    ),
                ))
            }
            Some(_) => {}
            None if !roots.iter().any(|r| real.starts_with(r)) => {
                return Err(ApiError::invalid(
                    &field,
                    format!(
                        "`{}` leads to `{}`, outside the admin's bind roots",
                        v.source,
                        real.display()
                    ),
                ))
            }
            None => {}
        }
    }
    Ok(())
}

/// Which allowance a bind mount of `source` needs, if any.
fn bind_danger(source: &Path) -> Option<Allowance> {
    if DOCKER_SOCKETS.iter().any(|s| source == Path::new(s)) {
        return Some(Allowance::DockerSocket);
    }
    if HOST_SYSTEM_DIRS.iter().any(|d| source == Path::new(d))
        || source.starts_with("/var/lib/docker")
        || source.starts_with("/proc")
        || source.starts_with("/sys")
    {
        return Some(Allowance::HostRoot);
    }
    None
}

fn check_limits(spec: &AppSpec) -> Result<(), ApiError> {
    if let Some(m) = spec.limits.memory_mb {
        if !(MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&m) {
            return Err(ApiError::invalid(
                "limits.memory_mb",
                format!("must be between {MIN_MEMORY_MB} and {MAX_MEMORY_MB} MiB"),
            ));
        }
    }
    if let Some(c) = spec.limits.cpus {
        // The engine's own CPU count is checked before applying.
        if !c.is_finite() || !(0.01..=1024.0).contains(&c) {
            return Err(ApiError::invalid(
                "limits.cpus",
                "must be between 0.01 and the host's CPU count",
            ));
        }
    }
    if let Some(p) = spec.limits.pids {
        if !(1..=MAX_PIDS).contains(&p) {
            return Err(ApiError::invalid(
                "limits.pids",
                format!("must be between 1 and {MAX_PIDS}"),
            ));
        }
    }
    Ok(())
}

/// Every allowance the spec needs, with the field that needs it.
pub fn required_allowances(spec: &AppSpec) -> Vec<(Allowance, String)> {
    let mut needed = Vec::new();
    if spec.privileged {
        needed.push((Allowance::Privileged, "privileged".to_string()));
    }
    if !spec.cap_add.is_empty() {
        needed.push((Allowance::CapAdd, "cap_add".to_string()));
    }
    if spec.host_network {
        needed.push((Allowance::HostNetwork, "host_network".to_string()));
    }
    if spec.host_pid {
        needed.push((Allowance::HostPid, "host_pid".to_string()));
    }
    if spec.host_ipc {
        needed.push((Allowance::HostIpc, "host_ipc".to_string()));
    }
    for (i, v) in spec.volumes.iter().enumerate() {
        if v.source.starts_with('/') {
            if let Some(a) = bind_danger(Path::new(&v.source)) {
                needed.push((a, format!("volumes[{i}].source")));
            }
        }
    }
    needed
}

/// Refuses settings that weaken isolation unless the app allows them.
fn check_policy(spec: &AppSpec) -> Result<(), ApiError> {
    for (allowance, field) in required_allowances(spec) {
        if !spec.allow.contains(&allowance) {
            let what = match allowance {
                Allowance::Privileged => {
                    "privileged mode gives the container every device and capability of the host"
                }
                Allowance::CapAdd => {
                    "added capabilities widen what the container may do to the host"
                }
                Allowance::HostNetwork => {
                    "the host's network namespace bypasses the container's network isolation"
                }
                Allowance::HostPid => {
                    "the host's PID namespace lets the container see and signal host processes"
                }
                Allowance::HostIpc => "the host's IPC namespace shares memory with host processes",
                Allowance::DockerSocket => "the Docker socket gives the container root on the host",
                Allowance::HostRoot => "this host directory exposes the host's system files",
            };
            return Err(ApiError::Invalid {
                field: Some(field),
                message: format!(
                    "refused by policy: {what}. To allow it for this app, add \"{}\" to `allow` \
                     and send your password as `confirm_password`",
                    allowance.as_str()
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::api::{PortSpec, VolumeSpec};

    fn spec() -> AppSpec {
        AppSpec {
            name: "web".into(),
            image: "nginx:1.27".into(),
            ..Default::default()
        }
    }

    fn field_of(r: Result<AppSpec, ApiError>) -> String {
        match r {
            Err(ApiError::Invalid { field, .. }) => field.unwrap_or_default(),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    const NO_ROOTS: Policy = Policy { bind_roots: &[] };

    #[test]
    fn names_with_shell_metacharacters_are_refused() {
        for bad in [
            "x;id",
            "$(id)",
            "`id`",
            "a\nb",
            "Web",
            "-a",
            "a-",
            "",
            &"a".repeat(64),
            "a b",
            "a_b",
        ] {
            let s = AppSpec {
                name: bad.into(),
                ..spec()
            };
            assert_eq!(field_of(validate(s, &NO_ROOTS)), "name", "{bad:?}");
        }
        for good in ["a", "web-1", &"a".repeat(63)] {
            let s = AppSpec {
                name: good.to_string(),
                ..spec()
            };
            assert!(validate(s, &NO_ROOTS).is_ok(), "{good}");
        }
    }

    #[test]
    fn image_references() {
        for good in [
            "nginx",
            "nginx:1.27",
            "library/nginx:latest",
            "registry.example.com:5000/team/app:v1.2-rc_3",
            "localhost/app",
            "ghcr.io/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "my__app.x-y",
        ] {
            assert!(check_image_ref("image", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "a;b",
            "$(id)",
            "a b",
            "nginx:-x",
            "a//b",
            "a..b",
            "-a",
            "reg:99999/x",
            "x@sha256:zz",
        ] {
            assert!(check_image_ref("image", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn argv_items_cannot_hold_newlines() {
        let s = AppSpec {
            command: vec!["sh".into(), "-c\nid".into()],
            ..spec()
        };
        assert_eq!(field_of(validate(s, &NO_ROOTS)), "command[1]");
    }

    #[test]
    fn absurd_limits_are_refused() {
        let mut s = spec();
        s.limits.memory_mb = Some(10_000_000);
        assert_eq!(field_of(validate(s, &NO_ROOTS)), "limits.memory_mb");
        let mut s = spec();
        s.limits.cpus = Some(f64::NAN);
        assert_eq!(field_of(validate(s, &NO_ROOTS)), "limits.cpus");
        let mut s = spec();
        s.limits.pids = Some(0);
        assert_eq!(field_of(validate(s, &NO_ROOTS)), "limits.pids");
    }

    #[test]
    fn duplicate_host_ports_are_refused() {
        let p = |c, h| PortSpec {
            container: c,
            host: Some(h),
            bind: None,
            protocol: Default::default(),
        };
        let s = AppSpec {
            ports: vec![p(80, 8080), p(81, 8080)],
            ..spec()
        };
        assert_eq!(field_of(validate(s, &NO_ROOTS)), "ports[1].host");
    }

    #[test]
    fn bind_mounts_need_a_root_and_dangerous_ones_an_allowance() {
        let vol = |src: &str| VolumeSpec {
            source: src.into(),
            target: "/data".into(),
            read_only: false,
        };
        let roots = [PathBuf::from("/srv/apps")];
        let policy = Policy { bind_roots: &roots };
        let s = AppSpec {
            volumes: vec![vol("/srv/apps/web")],
            ..spec()
        };
        assert!(validate(s, &policy).is_ok());
        let s = AppSpec {
            volumes: vec![vol("/srv/apps/../../etc")],
            ..spec()
        };
        assert_eq!(field_of(validate(s, &policy)), "volumes[0].source");
        let s = AppSpec {
            volumes: vec![vol("/home/x")],
            ..spec()
        };
        assert_eq!(field_of(validate(s, &policy)), "volumes[0].source");
        let s = AppSpec {
            volumes: vec![vol("/var/run/docker.sock")],
            ..spec()
        };
        assert_eq!(field_of(validate(s, &policy)), "volumes[0].source");
        let s = AppSpec {
            volumes: vec![vol("/var/run/docker.sock")],
            allow: vec![Allowance::DockerSocket],
            ..spec()
        };
        assert!(validate(s, &policy).is_ok());
        let s = AppSpec {
            volumes: vec![vol("/")],
            ..spec()
        };
        assert_eq!(field_of(validate(s, &policy)), "volumes[0].source");
        let s = AppSpec {
            volumes: vec![vol("data")],
            ..spec()
        };
        assert!(validate(s, &NO_ROOTS).is_ok());
    }

    #[test]
    fn symlinks_under_a_bind_root_are_followed() {
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", root.path().join("escape")).unwrap();
        std::fs::create_dir(root.path().join("data")).unwrap();
        let roots = [root.path().to_path_buf()];
        let policy = Policy { bind_roots: &roots };
        let vol = |src: PathBuf| VolumeSpec {
            source: src.to_string_lossy().into_owned(),
            target: "/x".into(),
            read_only: false,
        };
        let s = AppSpec {
            volumes: vec![vol(root.path().join("data/new/dir"))],
            ..spec()
        };
        assert!(check_resolved_binds(&s, &policy).is_ok());
        let s = AppSpec {
            volumes: vec![vol(root.path().join("escape"))],
            ..spec()
        };
        assert!(
            validate(s.clone(), &policy).is_ok(),
            "the name alone looks harmless"
        );
        match check_resolved_binds(&s, &policy) {
            Err(ApiError::Invalid { field, message }) => {
                assert_eq!(field.as_deref(), Some("volumes[0].source"));
                assert!(message.contains("host_root"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn isolation_settings_need_their_allowance() {
        let s = AppSpec {
            privileged: true,
            ..spec()
        };
        assert_eq!(field_of(validate(s, &NO_ROOTS)), "privileged");
        let s = AppSpec {
            host_pid: true,
            ..spec()
        };
        assert_eq!(field_of(validate(s, &NO_ROOTS)), "host_pid");
        let s = AppSpec {
            cap_add: vec!["NET_ADMIN".into()],
            ..spec()
        };
        assert_eq!(field_of(validate(s, &NO_ROOTS)), "cap_add");
        let s = AppSpec {
            privileged: true,
            allow: vec![Allowance::Privileged],
            ..spec()
        };
        assert!(validate(s, &NO_ROOTS).is_ok());
    }

    #[test]
    fn reserved_labels_and_bad_env_names() {
        let mut s = spec();
        s.labels.insert("berth.app".into(), "x".into());
        assert_eq!(field_of(validate(s, &NO_ROOTS)), "labels.berth.app");
        let mut s = spec();
        s.env.insert("A=B".into(), "x".into());
        assert_eq!(field_of(validate(s, &NO_ROOTS)), "env.A=B");
    }
}
