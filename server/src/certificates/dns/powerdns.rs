//! The PowerDNS Authoritative HTTP API: a TXT set replaced or deleted with
//! one PATCH of the zone. The API key travels in `X-API-Key` only.

use serde_json::json;

pub struct PowerDns {
    pub api_url: String,
    pub server_id: String,
    pub zone: String,
    pub api_key: String,
    pub allow_internal: bool,
}

impl PowerDns {
    fn zone_url(&self) -> String {
        format!(
            "{}/api/v1/servers/{}/zones/{}.",
            self.api_url.trim_end_matches('/'),
            self.server_id,
            self.zone.trim_end_matches('.')
        )
    }

    async fn patch(&self, rrset: serde_json::Value) -> Result<(), String> {
        let url = crate::outbound::check_url(&self.zone_url())?;
        let client = crate::outbound::client_for(&url, self.allow_internal).await?;
        let response = client
            .patch(url)
            .header("X-API-Key", &self.api_key)
            .json(&json!({ "rrsets": [rrset] }))
            .send()
            .await
            .map_err(|e| format!("the PowerDNS API cannot be reached: {e}"))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        let error = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_default();
        let hint = match status.as_u16() {
            401 | 403 => " (check the API key)",
            404 | 422 if error.contains("not found") || error.contains("Could not find") => {
                " (check the zone and server id)"
            }
            _ => "",
        };
        Err(format!("the PowerDNS API answered {status}: {error}{hint}"))
    }

    pub async fn set_txt(&self, name: &str, values: &[String]) -> Result<(), String> {
        self.check_in_zone(name)?;
        let records: Vec<_> = values
            .iter()
            .map(|v| json!({ "content": format!("\"{v}\""), "disabled": false }))
            .collect();
        self.patch(json!({
            "name": format!("{name}."),
            "type": "TXT",
            "ttl": 60,
            "changetype": "REPLACE",
            "records": records,
        }))
        .await
    }

    pub async fn clear_txt(&self, name: &str) -> Result<(), String> {
        self.check_in_zone(name)?;
        self.patch(json!({
            "name": format!("{name}."),
            "type": "TXT",
            "changetype": "DELETE",
        }))
        .await
    }

    fn check_in_zone(&self, name: &str) -> Result<(), String> {
        let zone = self.zone.trim_end_matches('.');
        if name == zone || name.ends_with(&format!(".{zone}")) {
            Ok(())
        } else {
            Err(format!("{name} is not in the zone {zone}"))
        }
    }
}
