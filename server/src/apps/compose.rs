//! docker-compose.yml → berth apps. The file is walked by hand as a YAML
//! value so that every key berth does not support is reported with its path,
//! never silently dropped; all problems come back at once.

use std::collections::{BTreeMap, BTreeSet};

use app::api::{AppSpec, HealthCheck, PortSpec, Protocol, RestartPolicy, VolumeSpec};
use serde_yaml_ng::{Mapping, Value};

const MAX_SERVICES: usize = 100;

/// One compose service as a berth app, with the apps it depends on.
pub struct ComposeApp {
    pub service: String,
    pub spec: AppSpec,
    pub depends_on: Vec<String>,
}

/// Everything wrong with a compose file: each problem with its path.
#[derive(Debug, Clone, PartialEq)]
pub struct ComposeError {
    pub problems: Vec<(String, String)>,
}

impl std::fmt::Display for ComposeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .problems
            .iter()
            .map(|(p, m)| format!("{p}: {m}"))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

const BUILD: &str = "berth does not build images: build it elsewhere, `docker save` it and import \
                     it (POST /api/v1/images/import), then refer to it with `image:`";
const UNSUPPORTED: &str = "not supported by berth";

/// Collects problems while walking the file.
#[derive(Default)]
struct Problems(Vec<(String, String)>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push((path.into(), message.into()));
    }
}

/// Parses `yaml` as the stack `stack`; apps come in dependency order.
pub fn parse(stack: &str, yaml: &str) -> Result<Vec<ComposeApp>, ComposeError> {
    let fail = |path: &str, m: String| ComposeError {
        problems: vec![(path.to_string(), m)],
    };
    let doc: Value = serde_yaml_ng::from_str(yaml)
        .map_err(|e| fail("compose", format!("not valid YAML: {e}")))?;
    let Value::Mapping(top) = doc else {
        return Err(fail("compose", "expected a mapping with `services`".into()));
    };
    let mut p = Problems::default();
    let mut services = None;
    let mut networks = Mapping::new();
    let mut volumes = Mapping::new();
    for (k, v) in &top {
        match key(k) {
            "services" => services = v.as_mapping().cloned(),
            "networks" => networks = v.as_mapping().cloned().unwrap_or_default(),
            "volumes" => volumes = v.as_mapping().cloned().unwrap_or_default(),
            "name" | "version" => {}
            other if other.starts_with("x-") => {}
            other => p.add(other, UNSUPPORTED),
        }
    }
    let Some(services) = services.filter(|s| !s.is_empty()) else {
        return Err(fail("services", "the file defines no services".into()));
    };
    if services.len() > MAX_SERVICES {
        return Err(fail("services", format!("at most {MAX_SERVICES} services")));
    }
    let networks = top_level_networks(stack, &networks, &mut p);
    let volumes = top_level_volumes(stack, &volumes, &mut p);

    let mut apps = Vec::new();
    for (name, body) in &services {
        let service = key(name).to_string();
        let path = format!("services.{service}");
        let app_name = format!("{stack}-{service}");
        if !is_dns_label(&service) || !is_dns_label(&app_name) {
            p.add(
                &path,
                format!("`{app_name}` must be a lowercase DNS label of at most 63 characters"),
            );
            continue;
        }
        let Some(body) = body.as_mapping() else {
            p.add(&path, "expected a mapping");
            continue;
        };
        let (spec, depends_on) = service_spec(
            &path, &app_name, &service, body, &networks, &volumes, &mut p,
        );
        apps.push(ComposeApp {
            service,
            spec,
            depends_on,
        });
    }
    let known: BTreeSet<String> = apps.iter().map(|a| a.service.clone()).collect();
    for app in &apps {
        for dep in &app.depends_on {
            if !known.contains(dep) {
                p.add(
                    format!("services.{}.depends_on", app.service),
                    format!("no service named `{dep}`"),
                );
            }
        }
    }
    if !p.0.is_empty() {
        return Err(ComposeError { problems: p.0 });
    }
    order(stack, apps)
}

fn key(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Top-level networks: compose name → engine name.
fn top_level_networks(stack: &str, defs: &Mapping, p: &mut Problems) -> BTreeMap<String, String> {
    let mut out = BTreeMap::from([("default".to_string(), format!("{stack}_default"))]);
    for (k, v) in defs {
        let name = key(k).to_string();
        let path = format!("networks.{name}");
        let (external, given) = external_and_name(&path, v, &["driver"], p);
        if let Some(driver) = v.get("driver").and_then(Value::as_str) {
            if driver != "bridge" {
                p.add(
                    format!("{path}.driver"),
                    "only the bridge driver is supported",
                );
            }
        }
        let engine = if external {
            given.unwrap_or_else(|| name.clone())
        } else {
            format!("{stack}_{name}")
        };
        out.insert(name, engine);
    }
    out
}

fn top_level_volumes(stack: &str, defs: &Mapping, p: &mut Problems) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in defs {
        let name = key(k).to_string();
        let path = format!("volumes.{name}");
        let (external, given) = external_and_name(&path, v, &[], p);
        let engine = if external {
            given.unwrap_or_else(|| name.clone())
        } else {
            format!("{stack}_{name}")
        };
        out.insert(name, engine);
    }
    out
}

/// Reads `external` and `name` of a network or volume definition, reporting
/// any other key not in `also`.
fn external_and_name(
    path: &str,
    v: &Value,
    also: &[&str],
    p: &mut Problems,
) -> (bool, Option<String>) {
    let Some(map) = v.as_mapping() else {
        return (false, None);
    };
    let mut external = false;
    let mut name = None;
    for (k, v) in map {
        match key(k) {
            "external" => external = v.as_bool().unwrap_or(false),
            "name" => name = v.as_str().map(str::to_string),
            other if also.contains(&other) => {}
            other => p.add(format!("{path}.{other}"), UNSUPPORTED),
        }
    }
    (external, name)
}

fn service_spec(
    path: &str,
    app_name: &str,
    service: &str,
    body: &Mapping,
    networks: &BTreeMap<String, String>,
    volumes: &BTreeMap<String, String>,
    p: &mut Problems,
) -> (AppSpec, Vec<String>) {
    let mut spec = AppSpec {
        name: app_name.to_string(),
        aliases: vec![service.to_string()],
        ..Default::default()
    };
    let mut depends_on = Vec::new();
    let mut joined = Vec::new();
    for (k, v) in body {
        let k = key(k);
        let at = format!("{path}.{k}");
        match k {
            "image" => match v.as_str() {
                Some(s) => spec.image = s.to_string(),
                None => p.add(&at, "expected a string"),
            },
            "command" => spec.command = argv(&at, v, p),
            "entrypoint" => spec.entrypoint = Some(argv(&at, v, p)),
            "environment" => spec.env = key_values(&at, v, p, true),
            "labels" => spec.labels = key_values(&at, v, p, false),
            "ports" => spec.ports = list(&at, v, p, port),
            "volumes" => {
                spec.volumes = list(&at, v, p, |at, item, p| volume(at, item, volumes, p));
            }
            "depends_on" => depends_on = dependencies(&at, v, p),
            "healthcheck" => spec.health_check = healthcheck(&at, v, p),
            "restart" => match v.as_str().map(|s| s.split(':').next().unwrap_or(s)) {
                Some("no") => spec.restart = RestartPolicy::No,
                Some("always") => spec.restart = RestartPolicy::Always,
                Some("unless-stopped") => spec.restart = RestartPolicy::UnlessStopped,
                Some("on-failure") => spec.restart = RestartPolicy::OnFailure,
                _ => p.add(&at, "one of no, always, unless-stopped, on-failure[:N]"),
            },
            "deploy" => deploy(&at, v, &mut spec, p),
            "networks" => joined = service_networks(&at, v, &mut spec, p),
            "privileged" => spec.privileged = v.as_bool().unwrap_or(false),
            "cap_add" => spec.cap_add = list(&at, v, p, string),
            "network_mode" => match v.as_str() {
                Some("host") => spec.host_network = true,
                Some("bridge") => {}
                _ => p.add(&at, "only `host` and `bridge` are supported"),
            },
            "pid" | "ipc" => match v.as_str() {
                Some("host") if k == "pid" => spec.host_pid = true,
                Some("host") => spec.host_ipc = true,
                _ => p.add(&at, "only `host` is supported"),
            },
            "container_name" => p.add(
                &at,
                "berth names each container after its app (`<stack>-<service>`)",
            ),
            "build" => p.add(&at, BUILD),
            _ => p.add(&at, UNSUPPORTED),
        }
    }
    if spec.image.is_empty() && !body.contains_key("build") {
        p.add(format!("{path}.image"), "every service needs an image");
    }
    if !spec.host_network {
        if joined.is_empty() {
            joined.push("default".to_string());
        }
        for n in joined {
            match networks.get(&n) {
                Some(engine) => spec.networks.push(engine.clone()),
                None => p.add(
                    format!("{path}.networks"),
                    format!("network `{n}` is not defined at the top level"),
                ),
            }
        }
    }
    (spec, depends_on)
}

fn list<T>(
    at: &str,
    v: &Value,
    p: &mut Problems,
    mut item: impl FnMut(&str, &Value, &mut Problems) -> Option<T>,
) -> Vec<T> {
    match v.as_sequence() {
        Some(seq) => seq
            .iter()
            .enumerate()
            .filter_map(|(i, x)| item(&format!("{at}[{i}]"), x, p))
            .collect(),
        None => {
            p.add(at, "expected a list");
            Vec::new()
        }
    }
}

/// A scalar as text (compose allows numbers and booleans where strings go).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn string(at: &str, v: &Value, p: &mut Problems) -> Option<String> {
    let s = scalar(v);
    if s.is_none() {
        p.add(at, "expected a string");
    }
    s
}

/// A list of strings, or a string split into words the way compose does
/// (quotes group, backslash escapes; no shell, no variables).
fn argv(at: &str, v: &Value, p: &mut Problems) -> Vec<String> {
    match v {
        Value::Sequence(_) => list(at, v, p, string),
        Value::String(s) => match split_words(s) {
            Some(words) => words,
            None => {
                p.add(at, "unbalanced quotes");
                Vec::new()
            }
        },
        _ => {
            p.add(at, "expected a list of strings or a string");
            Vec::new()
        }
    }
}

pub fn split_words(s: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => word.push(chars.next()?),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// `environment` and `labels`: a mapping, or a list of `KEY=VALUE`.
fn key_values(at: &str, v: &Value, p: &mut Problems, env: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let unset =
        "variables without a value are not supported (berth does not read the host's environment)";
    match v {
        Value::Mapping(map) => {
            for (k, val) in map {
                let k = key(k).to_string();
                match scalar(val) {
                    Some(s) => {
                        out.insert(k, s);
                    }
                    None if env => p.add(format!("{at}.{k}"), unset),
                    None => {
                        out.insert(k, String::new());
                    }
                }
            }
        }
        Value::Sequence(seq) => {
            for (i, item) in seq.iter().enumerate() {
                match item.as_str().and_then(|s| s.split_once('=')) {
                    Some((k, val)) => {
                        out.insert(k.to_string(), val.to_string());
                    }
                    None if env => p.add(format!("{at}[{i}]"), unset),
                    None => match item.as_str() {
                        Some(k) => {
                            out.insert(k.to_string(), String::new());
                        }
                        None => p.add(format!("{at}[{i}]"), "expected KEY=VALUE"),
                    },
                }
            }
        }
        _ => p.add(at, "expected a mapping or a list of KEY=VALUE"),
    }
    out
}

fn port_number(at: &str, s: &str, p: &mut Problems) -> Option<u16> {
    if s.contains('-') {
        p.add(at, "port ranges are not supported; list each port");
        return None;
    }
    match s.parse::<u16>() {
        Ok(n) if n > 0 => Some(n),
        _ => {
            p.add(at, format!("`{s}` is not a port"));
            None
        }
    }
}

/// Short syntax `[bind:][host:]container[/proto]` or the long mapping.
fn port(at: &str, v: &Value, p: &mut Problems) -> Option<PortSpec> {
    if let Some(map) = v.as_mapping() {
        let mut spec = PortSpec {
            container: 0,
            host: None,
            bind: None,
            protocol: Protocol::Tcp,
        };
        for (k, val) in map {
            let field = format!("{at}.{}", key(k));
            let text = scalar(val).unwrap_or_default();
            match key(k) {
                "target" => spec.container = port_number(&field, &text, p)?,
                "published" => spec.host = Some(port_number(&field, &text, p)?),
                "host_ip" => spec.bind = Some(text),
                "protocol" => spec.protocol = protocol(&field, &text, p)?,
                "mode" if matches!(text.as_str(), "host" | "ingress") => {}
                _ => p.add(field, UNSUPPORTED),
            }
        }
        if spec.container == 0 {
            p.add(at, "`target` is required");
            return None;
        }
        return Some(spec);
    }
    let text = scalar(v)?;
    let (rest, proto) = match text.rsplit_once('/') {
        Some((r, proto)) => (r.to_string(), protocol(at, proto, p)?),
        None => (text.clone(), Protocol::Tcp),
    };
    // An IPv6 bind address comes in brackets: [::1]:8080:80.
    let (bind, rest) = match rest.strip_prefix('[') {
        Some(r) => {
            let (ip, after) = r.split_once("]:")?;
            (Some(ip.to_string()), after.to_string())
        }
        None => (None, rest),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (bind, host, container) = match (bind, parts.as_slice()) {
        (None, [c]) => (None, None, *c),
        (b, [h, c]) => (b, Some(*h), *c),
        (None, [ip, h, c]) => (Some(ip.to_string()), Some(*h), *c),
        _ => {
            p.add(at, format!("`{text}` is not [ip:][host:]container[/proto]"));
            return None;
        }
    };
    let container = port_number(at, container, p)?;
    let host = match host {
        Some("") | None => None,
        Some(h) => Some(port_number(at, h, p)?),
    };
    Some(PortSpec {
        container,
        host,
        bind,
        protocol: proto,
    })
}

fn protocol(at: &str, s: &str, p: &mut Problems) -> Option<Protocol> {
    match s {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        _ => {
            p.add(at, "protocol is tcp or udp");
            None
        }
    }
}

/// Short `source:target[:ro|rw]` or the long mapping; named volumes get
/// their engine names.
fn volume(
    at: &str,
    v: &Value,
    named: &BTreeMap<String, String>,
    p: &mut Problems,
) -> Option<VolumeSpec> {
    let (source, target, read_only) = if let Some(map) = v.as_mapping() {
        let mut source = String::new();
        let mut target = String::new();
        let mut read_only = false;
        for (k, val) in map {
            let field = format!("{at}.{}", key(k));
            match key(k) {
                "type" if matches!(val.as_str(), Some("volume" | "bind")) => {}
                "source" => source = scalar(val).unwrap_or_default(),
                "target" => target = scalar(val).unwrap_or_default(),
                "read_only" => read_only = val.as_bool().unwrap_or(false),
                _ => p.add(field, UNSUPPORTED),
            }
        }
        (source, target, read_only)
    } else {
        let text = scalar(v)?;
        let parts: Vec<&str> = text.split(':').collect();
        match parts.as_slice() {
            [_] => {
                p.add(
                    at,
                    "anonymous volumes are not supported; name the volume (`name:/path`)",
                );
                return None;
            }
            [s, t] => (s.to_string(), t.to_string(), false),
            [s, t, mode] if matches!(*mode, "ro" | "rw") => {
                (s.to_string(), t.to_string(), *mode == "ro")
            }
            _ => {
                p.add(at, format!("`{text}` is not source:target[:ro|rw]"));
                return None;
            }
        }
    };
    if source.is_empty() || target.is_empty() {
        p.add(at, "needs a source and a target");
        return None;
    }
    if source.starts_with('.') || source.starts_with('~') {
        p.add(at, "relative paths need a project directory, which berth does not have; give an absolute path under a bind root");
        return None;
    }
    let source = if source.starts_with('/') {
        source
    } else {
        match named.get(&source) {
            Some(engine) => engine.clone(),
            None => {
                p.add(
                    at,
                    format!("volume `{source}` is not defined at the top level"),
                );
                return None;
            }
        }
    };
    Some(VolumeSpec {
        source,
        target,
        read_only,
    })
}

fn dependencies(at: &str, v: &Value, p: &mut Problems) -> Vec<String> {
    match v {
        Value::Sequence(_) => list(at, v, p, string),
        Value::Mapping(map) => {
            let mut out = Vec::new();
            for (k, cond) in map {
                let name = key(k).to_string();
                if let Some(c) = cond.get("condition").and_then(Value::as_str) {
                    let ok = [
                        "service_started",
                        "service_healthy",
                        "service_completed_successfully",
                    ];
                    if !ok.contains(&c) {
                        p.add(format!("{at}.{name}.condition"), "unknown condition");
                    }
                }
                out.push(name);
            }
            out
        }
        _ => {
            p.add(at, "expected a list or a mapping");
            Vec::new()
        }
    }
}

/// Compose durations: `1m30s`, `500ms`, `10s`; rounded up to whole seconds.
pub fn duration_secs(s: &str) -> Option<u32> {
    let mut total_ms: u64 = 0;
    let mut number = String::new();
    let mut unit = String::new();
    let mut flush = |number: &mut String, unit: &mut String| -> Option<()> {
        if number.is_empty() {
            return None;
        }
        let n: f64 = number.parse().ok()?;
        let ms = match unit.as_str() {
            "h" => n * 3_600_000.0,
            "m" => n * 60_000.0,
            "s" | "" => n * 1000.0,
            "ms" => n,
            "us" => n / 1000.0,
            _ => return None,
        };
        total_ms += ms as u64;
        number.clear();
        unit.clear();
        Some(())
    };
    for c in s.chars() {
        if c.is_ascii_digit() || c == '.' {
            if !unit.is_empty() {
                flush(&mut number, &mut unit)?;
            }
            number.push(c);
        } else {
            unit.push(c);
        }
    }
    flush(&mut number, &mut unit)?;
    Some((total_ms.div_ceil(1000)).max(1) as u32)
}

fn healthcheck(at: &str, v: &Value, p: &mut Problems) -> Option<HealthCheck> {
    let map = v.as_mapping()?;
    let mut hc = HealthCheck {
        test: Vec::new(),
        interval_s: None,
        timeout_s: None,
        retries: None,
        start_period_s: None,
    };
    let mut disabled = false;
    for (k, val) in map {
        let field = format!("{at}.{}", key(k));
        let seconds = |p: &mut Problems| {
            let d = val.as_str().and_then(duration_secs);
            if d.is_none() {
                p.add(&field, "a duration such as 30s or 1m30s");
            }
            d
        };
        match key(k) {
            "test" => match val {
                Value::Sequence(seq) => {
                    let words: Vec<String> = seq.iter().filter_map(scalar).collect();
                    match words.split_first() {
                        Some((first, rest)) if first == "CMD" => hc.test = rest.to_vec(),
                        Some((first, _)) if first == "NONE" => disabled = true,
                        _ => p.add(&field, "only exec-form health checks ([\"CMD\", …]) are supported; berth never runs a shell"),
                    }
                }
                Value::String(s) if s == "NONE" => disabled = true,
                _ => p.add(&field, "only exec-form health checks ([\"CMD\", …]) are supported; berth never runs a shell"),
            },
            "disable" => disabled = val.as_bool().unwrap_or(false),
            "interval" => hc.interval_s = seconds(p),
            "timeout" => hc.timeout_s = seconds(p),
            "start_period" => hc.start_period_s = seconds(p),
            "retries" => hc.retries = val.as_u64().map(|r| r as u32),
            _ => p.add(field, UNSUPPORTED),
        }
    }
    if disabled || hc.test.is_empty() {
        return None;
    }
    Some(hc)
}

/// `256M`, `1g`, `512m`, `1024k`, plain bytes → MiB, rounded up.
pub fn memory_mib(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (digits, factor) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1024u64),
        'm' => (&s[..s.len() - 1], 1024 * 1024),
        'g' => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    let n: f64 = digits.parse().ok()?;
    let bytes = (n * factor as f64).ceil() as u64;
    Some(bytes.div_ceil(1024 * 1024))
}

fn deploy(at: &str, v: &Value, spec: &mut AppSpec, p: &mut Problems) {
    let Some(map) = v.as_mapping() else {
        p.add(at, "expected a mapping");
        return;
    };
    for (k, val) in map {
        let field = format!("{at}.{}", key(k));
        if key(k) != "resources" {
            p.add(field, UNSUPPORTED);
            continue;
        }
        for (k, val) in val.as_mapping().into_iter().flatten() {
            let field = format!("{field}.{}", key(k));
            if key(k) != "limits" {
                p.add(field, UNSUPPORTED);
                continue;
            }
            for (k, val) in val.as_mapping().into_iter().flatten() {
                let field = format!("{field}.{}", key(k));
                let text = scalar(val).unwrap_or_default();
                match key(k) {
                    "memory" => match memory_mib(&text) {
                        Some(m) => spec.limits.memory_mb = Some(m),
                        None => p.add(field, "a size such as 256M or 1g"),
                    },
                    "cpus" => match text.parse::<f64>() {
                        Ok(c) => spec.limits.cpus = Some(c),
                        Err(_) => p.add(field, "a number such as 0.5"),
                    },
                    "pids" => match text.parse::<i64>() {
                        Ok(n) => spec.limits.pids = Some(n),
                        Err(_) => p.add(field, "a whole number"),
                    },
                    _ => p.add(field, UNSUPPORTED),
                }
            }
        }
    }
}

/// A service's networks (names as in the file) and their aliases.
fn service_networks(at: &str, v: &Value, spec: &mut AppSpec, p: &mut Problems) -> Vec<String> {
    match v {
        Value::Sequence(_) => list(at, v, p, string),
        Value::Mapping(map) => {
            let mut out = Vec::new();
            for (k, val) in map {
                let name = key(k).to_string();
                for (k2, aliases) in val.as_mapping().into_iter().flatten() {
                    let field = format!("{at}.{name}.{}", key(k2));
                    if key(k2) == "aliases" {
                        for a in list(&field, aliases, p, string) {
                            if !spec.aliases.contains(&a) {
                                spec.aliases.push(a);
                            }
                        }
                    } else {
                        p.add(field, UNSUPPORTED);
                    }
                }
                out.push(name);
            }
            out
        }
        _ => {
            p.add(at, "expected a list or a mapping");
            Vec::new()
        }
    }
}

/// Dependencies first; ties keep the file's order. A cycle is an error.
fn order(stack: &str, mut apps: Vec<ComposeApp>) -> Result<Vec<ComposeApp>, ComposeError> {
    let mut done: Vec<ComposeApp> = Vec::new();
    let mut placed: BTreeSet<String> = BTreeSet::new();
    while !apps.is_empty() {
        let ready = apps
            .iter()
            .position(|a| a.depends_on.iter().all(|d| placed.contains(d)));
        let Some(i) = ready else {
            let cycle: Vec<&str> = apps.iter().map(|a| a.service.as_str()).collect();
            return Err(ComposeError {
                problems: vec![(
                    "services".into(),
                    format!("depends_on forms a cycle among {}", cycle.join(", ")),
                )],
            });
        };
        let app = apps.remove(i);
        placed.insert(app.service.clone());
        done.push(app);
    }
    // Dependencies are reported as app names to the caller.
    for app in &mut done {
        app.depends_on = app
            .depends_on
            .iter()
            .map(|d| format!("{stack}-{d}"))
            .collect();
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORDPRESS: &str = r#"
version: "3.8"
services:
  web:
    image: wordpress:6
    command: ["apache2-foreground"]
    depends_on:
      db:
        condition: service_healthy
    environment:
      WORDPRESS_DB_HOST: db
      WORDPRESS_DB_PORT: 3306
    ports: ["127.0.0.1:8080:80", "8443:443/tcp"]
    volumes: ["wp:/var/www/html"]
    networks:
      back:
        aliases: [wordpress]
    restart: unless-stopped
    deploy:
      resources:
        limits: { memory: 512M, cpus: "0.5", pids: 200 }
  db:
    image: mariadb:11
    command: mariadbd --max-connections=50 "--character-set-server=utf8mb4"
    environment: ["MARIADB_DATABASE=wp"]
    volumes:
      - type: volume
        source: db
        target: /var/lib/mysql
    networks: [back]
    healthcheck:
      test: ["CMD", "healthcheck.sh", "--connect"]
      interval: 1m30s
      timeout: 500ms
      retries: 5
    restart: on-failure:3
networks:
  back: {}
volumes:
  wp: {}
  db: { external: true, name: shared-db }
x-notes: ignored
"#;

    fn problems(yaml: &str) -> Vec<(String, String)> {
        match parse("s", yaml) {
            Err(e) => e.problems,
            Ok(_) => panic!("expected problems"),
        }
    }

    #[test]
    fn a_realistic_file_becomes_ordered_apps() {
        let apps = parse("wp", WORDPRESS).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = apps.iter().map(|a| a.spec.name.as_str()).collect();
        assert_eq!(names, ["wp-db", "wp-web"]);
        let (db, web) = (&apps[0].spec, &apps[1].spec);
        assert_eq!(
            db.command,
            [
                "mariadbd",
                "--max-connections=50",
                "--character-set-server=utf8mb4"
            ]
        );
        assert_eq!(db.env["MARIADB_DATABASE"], "wp");
        assert_eq!(db.volumes[0].source, "shared-db");
        let hc = db.health_check.as_ref().unwrap();
        assert_eq!(
            (hc.test.clone(), hc.interval_s, hc.timeout_s, hc.retries),
            (
                vec!["healthcheck.sh".to_string(), "--connect".into()],
                Some(90),
                Some(1),
                Some(5)
            )
        );
        assert_eq!(db.restart, RestartPolicy::OnFailure);
        assert_eq!(web.env["WORDPRESS_DB_PORT"], "3306");
        assert_eq!(
            web.ports[0],
            PortSpec {
                container: 80,
                host: Some(8080),
                bind: Some("127.0.0.1".into()),
                protocol: Protocol::Tcp
            }
        );
        assert_eq!(web.ports[1].host, Some(8443));
        assert_eq!(web.volumes[0].source, "wp_wp");
        assert_eq!(web.networks, ["wp_back"]);
        assert_eq!(web.aliases, ["web", "wordpress"]);
        assert_eq!(
            (web.limits.memory_mb, web.limits.cpus, web.limits.pids),
            (Some(512), Some(0.5), Some(200))
        );
        assert_eq!(apps[1].depends_on, ["wp-db"]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let found = problems(
            "services:\n  app:\n    build: .\n    container_name: x\n    healthcheck:\n      test: curl -f http://x\n    ports: ['8000-8010:8000-8010']\n    volumes: ['./data:/data']\n    frobnicate: 1\n    depends_on: [nope]\nsecrets: {}\n",
        );
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        for expected in [
            "services.app.build",
            "services.app.container_name",
            "services.app.healthcheck.test",
            "services.app.ports[0]",
            "services.app.volumes[0]",
            "services.app.frobnicate",
            "services.app.depends_on",
            "secrets",
        ] {
            assert!(paths.contains(&expected), "{expected} in {paths:?}");
        }
        let build = &found
            .iter()
            .find(|(p, _)| p == "services.app.build")
            .unwrap()
            .1;
        assert!(build.contains("does not build images"));
    }

    #[test]
    fn cycles_and_shell_health_checks_are_refused() {
        let found = problems(
            "services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [a]}\n",
        );
        assert!(found[0].1.contains("cycle"), "{found:?}");
        let found = problems(
            "services:\n  a:\n    image: x\n    healthcheck: {test: [CMD-SHELL, 'curl x']}\n",
        );
        assert!(found[0].1.contains("exec-form"), "{found:?}");
        let found = problems("services:\n  a:\n    image: x\n    environment: [UNSET]\n");
        assert_eq!(found[0].0, "services.a.environment[0]");
        assert!(parse("s", "not: [valid").is_err());
        assert!(parse("s", "services: {}").is_err());
    }

    #[test]
    fn words_durations_and_sizes() {
        assert_eq!(
            split_words(r#"sh -c 'echo "hi there"' a\ b"#).unwrap(),
            ["sh", "-c", "echo \"hi there\"", "a b"]
        );
        assert_eq!(split_words("a 'b"), None);
        assert_eq!(duration_secs("1m30s"), Some(90));
        assert_eq!(duration_secs("500ms"), Some(1));
        assert_eq!(duration_secs("2h"), Some(7200));
        assert_eq!(duration_secs("x"), None);
        assert_eq!(memory_mib("256M"), Some(256));
        assert_eq!(memory_mib("1g"), Some(1024));
        assert_eq!(memory_mib("1024k"), Some(1));
        assert_eq!(memory_mib("1048576"), Some(1));
        assert_eq!(memory_mib("lots"), None);
    }

    #[test]
    fn host_mode_and_defaults() {
        let apps = parse("s", "services:\n  a:\n    image: x\n    network_mode: host\n  b:\n    image: x\n    ports: ['[::1]:9000:90/udp']\n").unwrap();
        assert!(apps[0].spec.host_network && apps[0].spec.networks.is_empty());
        assert_eq!(apps[1].spec.networks, ["s_default"]);
        assert_eq!(apps[1].spec.ports[0].bind.as_deref(), Some("::1"));
        assert_eq!(apps[1].spec.ports[0].protocol, Protocol::Udp);
    }
}
