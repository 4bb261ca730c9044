//! What flows from the engine over time or in bulk: logs, stats, image pulls
//! and imports, and the host ports containers publish.

use std::collections::HashMap;
use std::sync::Mutex;

use app::api::{LogLine, Protocol, PullProgress, StatsSample};
use bollard::container::LogOutput;
use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, LogsOptionsBuilder, StatsOptionsBuilder,
};
use futures::{Stream, StreamExt};

use super::engine::{Engine, EngineError, LABEL_APP};

/// Up to `tail` lines of a container's output, then (with `follow`) new
/// lines as they come.
pub fn logs(
    engine: &Engine,
    id: &str,
    tail: u32,
    follow: bool,
) -> Result<impl Stream<Item = Result<LogLine, EngineError>> + Send + 'static, EngineError> {
    let options = LogsOptionsBuilder::new()
        .follow(follow)
        .stdout(true)
        .stderr(true)
        .tail(&tail.to_string())
        .build();
    Ok(engine
        .docker()?
        .logs(id, Some(options))
        .map(|chunk| chunk.map_err(EngineError::from))
        .flat_map(|chunk| {
            let lines: Vec<Result<LogLine, EngineError>> = match chunk {
                Ok(output) => split_lines(output).into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(lines)
        }))
}

fn split_lines(output: LogOutput) -> Vec<LogLine> {
    let (stream, bytes) = match output {
        LogOutput::StdErr { message } => ("stderr", message),
        LogOutput::StdOut { message } | LogOutput::Console { message } => ("stdout", message),
        LogOutput::StdIn { message } => ("stdin", message),
    };
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(|l| LogLine {
            stream: stream.to_string(),
            text: l.to_string(),
        })
        .collect()
}

/// Resource samples, about one a second (`stream`) or just one.
pub fn stats(
    engine: &Engine,
    id: &str,
    stream: bool,
) -> Result<impl Stream<Item = Result<StatsSample, EngineError>> + Send + 'static, EngineError> {
    let options = StatsOptionsBuilder::new()
        .stream(stream)
        .one_shot(false)
        .build();
    Ok(engine
        .docker()?
        .stats(id, Some(options))
        .map(|s| s.map(sample).map_err(EngineError::from)))
}

/// One sample from the engine's raw numbers. CPU use is the container's share
/// of the system's CPU time since the previous reading, scaled to CPUs.
pub fn sample(s: ContainerStatsResponse) -> StatsSample {
    let cpu = s.cpu_stats.unwrap_or_default();
    let pre = s.precpu_stats.unwrap_or_default();
    let total = |c: &bollard::models::ContainerCpuStats| {
        c.cpu_usage
            .as_ref()
            .and_then(|u| u.total_usage)
            .unwrap_or(0)
    };
    let cpu_delta = total(&cpu).saturating_sub(total(&pre)) as f64;
    let system_delta = cpu
        .system_cpu_usage
        .unwrap_or(0)
        .saturating_sub(pre.system_cpu_usage.unwrap_or(0)) as f64;
    let cpus = f64::from(cpu.online_cpus.unwrap_or(1).max(1));
    let cpu_percent = if system_delta > 0.0 {
        (cpu_delta / system_delta) * cpus * 100.0
    } else {
        0.0
    };
    let memory = s.memory_stats.unwrap_or_default();
    // Page cache is reclaimable; `docker stats` leaves it out too.
    let cache = memory
        .stats
        .as_ref()
        .and_then(|m| {
            m.get("inactive_file")
                .or(m.get("total_inactive_file"))
                .copied()
        })
        .unwrap_or(0);
    let (mut rx, mut tx) = (0, 0);
    for n in s.networks.unwrap_or_default().values() {
        rx += n.rx_bytes.unwrap_or(0);
        tx += n.tx_bytes.unwrap_or(0);
    }
    let (mut read, mut write) = (0, 0);
    for e in s
        .blkio_stats
        .and_then(|b| b.io_service_bytes_recursive)
        .unwrap_or_default()
    {
        match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => read += e.value.unwrap_or(0),
            Some("write") => write += e.value.unwrap_or(0),
            _ => {}
        }
    }
    StatsSample {
        at: s.read.unwrap_or_default(),
        cpu_percent: (cpu_percent * 100.0).round() / 100.0,
        memory_bytes: memory.usage.unwrap_or(0).saturating_sub(cache),
        memory_limit_bytes: memory.limit.unwrap_or(0),
        net_rx_bytes: rx,
        net_tx_bytes: tx,
        block_read_bytes: read,
        block_write_bytes: write,
        pids: s.pids_stats.and_then(|p| p.current).unwrap_or(0),
    }
}

/// A host port a running container publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedPort {
    pub port: u16,
    /// `tcp`, `udp` or `sctp`, as Docker says.
    pub protocol: String,
    /// The host address it is bound to (`0.0.0.0` when Docker names none).
    pub address: String,
    pub container: String,
    /// The berth app the container belongs to, if any.
    pub app: Option<String>,
}

/// Host ports published by running containers.
pub async fn published_ports(engine: &Engine) -> Result<Vec<PublishedPort>, EngineError> {
    let list = engine
        .docker()?
        .list_containers(Some(ListContainersOptionsBuilder::new().all(false).build()))
        .await?;
    let mut out = Vec::new();
    for c in list {
        let name = c
            .names
            .as_ref()
            .and_then(|n| n.first())
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default();
        let app = c.labels.as_ref().and_then(|l| l.get(LABEL_APP).cloned());
        for p in c.ports.unwrap_or_default() {
            if let Some(public) = p.public_port {
                out.push(PublishedPort {
                    port: public,
                    protocol: p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into()),
                    address: p.ip.unwrap_or_else(|| "0.0.0.0".into()),
                    container: name.clone(),
                    app: app.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// Whether something on this host already listens on the port. Only a bind
/// that fails with "address in use" counts; other failures say nothing.
pub fn host_port_taken(bind: Option<&str>, port: u16, protocol: Protocol) -> bool {
    let ip: std::net::IpAddr = bind
        .and_then(|b| b.parse().ok())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let addr = std::net::SocketAddr::new(ip, port);
    let result = match protocol {
        Protocol::Tcp => std::net::TcpListener::bind(addr).map(drop),
        Protocol::Udp => std::net::UdpSocket::bind(addr).map(drop),
    };
    matches!(result, Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
}

/// Image pulls running in the background, polled by id.
#[derive(Default)]
pub struct Pulls {
    pulls: Mutex<HashMap<String, PullProgress>>,
}

/// How many finished pulls are kept for polling.
const KEEP_PULLS: usize = 32;

impl Pulls {
    pub fn get(&self, id: &str) -> Option<PullProgress> {
        self.pulls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut PullProgress)) {
        if let Some(p) = self
            .pulls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(id)
        {
            f(p);
        }
    }

    /// Starts pulling `image`; progress is read with `get`.
    pub fn start(
        self: &std::sync::Arc<Self>,
        engine: &Engine,
        image: &str,
    ) -> Result<PullProgress, EngineError> {
        let docker = engine.docker()?;
        let id = crate::crypto::random_hex(8);
        let progress = PullProgress {
            id: id.clone(),
            image: image.to_string(),
            status: "running".into(),
            layers: Vec::new(),
            error: None,
        };
        {
            let mut pulls = self.pulls.lock().unwrap_or_else(|p| p.into_inner());
            if pulls.len() >= KEEP_PULLS {
                let done: Vec<String> = pulls
                    .iter()
                    .filter(|(_, p)| p.status != "running")
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in done {
                    pulls.remove(&k);
                }
            }
            pulls.insert(id.clone(), progress.clone());
        }
        let this = self.clone();
        let image = image.to_string();
        tokio::spawn(async move {
            let options = bollard::query_parameters::CreateImageOptionsBuilder::new()
                .from_image(&image)
                .build();
            let mut stream = Box::pin(docker.create_image(Some(options), None, None));
            let mut layers: Vec<(String, String)> = Vec::new();
            while let Some(item) = stream.next().await {
                match item {
                    Ok(info) => {
                        let key = info.id.unwrap_or_default();
                        let line = match (info.status, info.progress_detail) {
                            (Some(s), Some(d)) if d.total.unwrap_or(0) > 0 => format!(
                                "{s} {}/{} bytes",
                                d.current.unwrap_or(0),
                                d.total.unwrap_or(0)
                            ),
                            (Some(s), _) => s,
                            _ => continue,
                        };
                        match layers.iter_mut().find(|(k, _)| *k == key) {
                            Some(entry) => entry.1 = line,
                            None => layers.push((key, line)),
                        }
                        let shown = layers
                            .iter()
                            .map(|(k, l)| {
                                if k.is_empty() {
                                    l.clone()
                                } else {
                                    format!("{k}: {l}")
                                }
                            })
                            .collect();
                        this.update(&id, |p| p.layers = shown);
                    }
                    Err(e) => {
                        let message = pull_error(EngineError::from(e));
                        this.update(&id, |p| {
                            p.status = "failed".into();
                            p.error = Some(message);
                        });
                        return;
                    }
                }
            }
            this.update(&id, |p| p.status = "done".into());
        });
        Ok(progress)
    }
}

/// Says plainly when the cause is that no registry can be reached.
fn pull_error(e: EngineError) -> String {
    let text = e.to_string();
    let unreachable = [
        "dial tcp",
        "no such host",
        "i/o timeout",
        "connection refused",
        "network is unreachable",
        "TLS handshake timeout",
        "Temporary failure in name resolution",
    ];
    if unreachable.iter().any(|u| text.contains(u)) {
        format!(
            "no registry can be reached from the Docker engine ({text}); on a host without \
             registry access, `docker save` the image elsewhere and import it"
        )
    } else {
        text
    }
}
