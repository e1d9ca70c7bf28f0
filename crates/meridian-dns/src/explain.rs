//! Explaining an answer (Route 53's TestDNSAnswer): the same resolution as a query, with
//! every candidate, its health and the rule that decided.

use crate::server::{rcode_label, Dns};
use hickory_proto::rr::{Name, RecordType};
use serde_json::json;
use std::net::IpAddr;
use std::str::FromStr;

impl Dns {
    /// What `meridian dns explain` shows: the answer and why, as Route 53's TestDNSAnswer.
    pub fn explain(
        &self,
        name: &str,
        qtype: &str,
        client_ip: IpAddr,
    ) -> Result<serde_json::Value, String> {
        let name = Name::from_str(
            if name.ends_with('.') {
                name.to_owned()
            } else {
                format!("{name}.")
            }
            .as_str(),
        )
        .map_err(|e| format!("`{name}` is not a domain name: {e}"))?;
        let rtype = RecordType::from_str(&qtype.to_ascii_uppercase())
            .map_err(|_| format!("`{qtype}` is not a record type"))?;
        if !self.zone().contains(&name.to_lowercase()) {
            return Ok(
                json!({ "name": name.to_string(), "type": rtype.to_string(), "rcode": "REFUSED",
                "why": format!("{name} is outside the zone {}", self.zone().origin) }),
            );
        }
        let client = self.client(client_ip, None);
        let r = self.resolve(&name, rtype, &client, true);
        let health: Vec<_> = self
            .board()
            .snapshot()
            .into_iter()
            .map(|t| json!({ "target": t.target, "health": t.health, "last_check": t.last_probe }))
            .collect();
        Ok(json!({
            "server": self.name(),
            "name": name.to_string(),
            "type": rtype.to_string(),
            "client": client,
            "rcode": rcode_label(r.rcode),
            "answers": r.answers.iter().map(|a| format!("{} {} {} {}", a.name, a.ttl, a.record_type(), a.data)).collect::<Vec<_>>(),
            "authority": r.authority.iter().map(|a| format!("{} {} {}", a.name, a.ttl, a.record_type())).collect::<Vec<_>>(),
            "ecs_scope_prefix": r.scope_prefix,
            "decisions": r.decisions.iter().map(|(n, t, d)| json!({ "name": n.to_string(), "type": t.to_string(), "decision": d })).collect::<Vec<_>>(),
            "health": health,
        }))
    }
}
