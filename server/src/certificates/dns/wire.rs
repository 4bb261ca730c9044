//! DNS over berth's own sockets: one message out, one answer back (UDP,
//! falling back to TCP when the answer is truncated), and the two lookups
//! the certificate code needs. Queries go straight to an authoritative or
//! chosen server with recursion off, so no cache answers for it.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(5);

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Sends `msg` (signed with `signer` if given) and returns the answer.
pub async fn exchange(
    server: SocketAddr,
    mut msg: Message,
    signer: Option<&TSigner>,
) -> Result<Message, String> {
    let verifier = match signer {
        Some(s) => msg
            .finalize(s, unix_now())
            .map_err(|e| format!("cannot sign the update: {e}"))?,
        None => None,
    };
    let wire = msg.to_vec().map_err(|e| e.to_string())?;
    let mut reply = udp(server, &wire).await?;
    let mut parsed =
        Message::from_vec(&reply).map_err(|e| format!("unreadable DNS answer: {e}"))?;
    if parsed.truncation {
        reply = tcp(server, &wire).await?;
        parsed = Message::from_vec(&reply).map_err(|e| format!("unreadable DNS answer: {e}"))?;
    }
    if parsed.id != msg.id {
        return Err("the DNS answer does not match the question".into());
    }
    // BADSIG / BADKEY answers carry no MAC; report the rcode, not the MAC.
    if parsed.response_code == ResponseCode::NoError {
        if let Some(mut v) = verifier {
            v.verify(&reply)
                .map_err(|e| format!("the server's answer failed TSIG verification: {e}"))?;
        }
    }
    Ok(parsed)
}

async fn udp(server: SocketAddr, wire: &[u8]) -> Result<Vec<u8>, String> {
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(|e| e.to_string())?;
    sock.connect(server).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    // Two tries: a lost datagram should not fail an issuance.
    for _ in 0..2 {
        sock.send(wire)
            .await
            .map_err(|e| format!("{server}: {e}"))?;
        match tokio::time::timeout(TIMEOUT, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Ok(Err(e)) => return Err(format!("{server}: {e}")),
            Err(_) => continue,
        }
    }
    Err(format!("no answer from the DNS server {server}"))
}

async fn tcp(server: SocketAddr, wire: &[u8]) -> Result<Vec<u8>, String> {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(server).await?;
        let mut out = Vec::with_capacity(wire.len() + 2);
        out.extend_from_slice(&(wire.len() as u16).to_be_bytes());
        out.extend_from_slice(wire);
        s.write_all(&out).await?;
        let len = s.read_u16().await? as usize;
        let mut r = vec![0u8; len];
        s.read_exact(&mut r).await?;
        Ok::<_, std::io::Error>(r)
    };
    tokio::time::timeout(TIMEOUT, attempt)
        .await
        .map_err(|_| format!("no answer from the DNS server {server} over TCP"))?
        .map_err(|e| format!("{server}: {e}"))
}

pub fn fqdn(name: &str) -> Result<Name, String> {
    let text = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    Name::from_ascii(&text).map_err(|e| format!("{name}: {e}"))
}

async fn query(server: SocketAddr, name: &str, kind: RecordType) -> Result<Message, String> {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(fqdn(name)?, kind));
    exchange(server, msg, None).await
}

/// The TXT strings at `name` as `server` answers them.
pub async fn txt(server: SocketAddr, name: &str) -> Result<Vec<String>, String> {
    let answer = query(server, name, RecordType::TXT).await?;
    Ok(answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|part| String::from_utf8_lossy(part).to_string())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect())
}

/// A and AAAA addresses of `name` as `server` answers them.
pub async fn lookup_ip(server: SocketAddr, name: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for kind in [RecordType::A, RecordType::AAAA] {
        let answer = query(server, name, kind).await?;
        out.extend(answer.answers.iter().filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        }));
    }
    Ok(out)
}
