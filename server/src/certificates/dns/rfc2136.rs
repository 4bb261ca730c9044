//! RFC 2136 dynamic updates signed with TSIG (RFC 8945): works with BIND,
//! Knot and PowerDNS, anything that takes `nsupdate`.

use std::net::SocketAddr;

use base64::Engine;
use hickory_proto::op::{update_message, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record, RecordType, TSigner};

use super::wire;

pub struct Rfc2136 {
    server: SocketAddr,
    zone: Name,
    signer: TSigner,
}

impl Rfc2136 {
    pub fn new(
        server: SocketAddr,
        zone: &str,
        key_name: &str,
        algorithm: &str,
        secret_b64: &str,
    ) -> Result<Rfc2136, String> {
        let algorithm = match algorithm {
            "hmac-sha256" => TsigAlgorithm::HmacSha256,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            other => return Err(format!("unsupported TSIG algorithm {other}")),
        };
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret_b64.trim())
            .map_err(|_| "the TSIG secret is not base64 (as tsig-keygen prints it)".to_string())?;
        let signer = TSigner::new(secret, algorithm, wire::fqdn(key_name)?, 300)
            .map_err(|e| format!("TSIG key: {e}"))?;
        Ok(Rfc2136 {
            server,
            zone: wire::fqdn(zone)?,
            signer,
        })
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    async fn send(&self, msg: hickory_proto::op::Message) -> Result<(), String> {
        let answer = wire::exchange(self.server, msg, Some(&self.signer)).await?;
        if answer.response_code == ResponseCode::NoError {
            return Ok(());
        }
        let tsig = answer.signature().and_then(|t| t.data.error);
        let hint = match (answer.response_code, tsig) {
            (ResponseCode::NotAuth, Some(e)) => format!(
                " (TSIG {e:?}: check the key name, secret and algorithm, and that the clocks agree)"
            ),
            (ResponseCode::Refused, _) => {
                " (the server refused: is the key allowed to update this zone?)".to_string()
            }
            (ResponseCode::NotZone, _) | (ResponseCode::NotAuth, None) => {
                " (the server is not the primary for this zone)".to_string()
            }
            _ => String::new(),
        };
        Err(format!(
            "the DNS server {} answered {}{hint}",
            self.server, answer.response_code
        ))
    }

    fn record(&self, name: &str, value: &str, ttl: u32) -> Result<Record, String> {
        Ok(Record::from_rdata(
            wire::fqdn(name)?,
            ttl,
            RData::TXT(TXT::new(vec![value.to_string()])),
        ))
    }

    /// Replaces the TXT set at `name` with `values`: the delete and the
    /// adds travel in one message, which the server applies as one.
    pub async fn set_txt(&self, name: &str, values: &[String]) -> Result<(), String> {
        let owner = wire::fqdn(name)?;
        if !self.zone.zone_of(&owner) {
            return Err(format!("{name} is not in the zone {}", self.zone));
        }
        let wipe = Record::update0(owner, 0, RecordType::TXT);
        let mut msg = update_message::delete_rrset(wipe, self.zone.clone(), false);
        for v in values {
            msg.add_update(self.record(name, v, 60)?);
        }
        self.send(msg).await
    }

    pub async fn clear_txt(&self, name: &str) -> Result<(), String> {
        let owner = wire::fqdn(name)?;
        if !self.zone.zone_of(&owner) {
            return Err(format!("{name} is not in the zone {}", self.zone));
        }
        let record = Record::update0(owner, 0, RecordType::TXT);
        self.send(update_message::delete_rrset(
            record,
            self.zone.clone(),
            false,
        ))
        .await
    }
}
