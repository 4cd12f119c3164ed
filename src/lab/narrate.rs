//! A run told in words a network engineer reads (`mip4-lab tour`, `make
//! demo`): the events in time order as sentences, then the figures with
//! their meaning and their value in access link RTTs.

use std::collections::BTreeMap;

use serde_json::Value;

use super::scenario::{Event, Summary};

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// One event as a sentence; None for bookkeeping events (configs written,
/// subscriptions, keys made) that tell a reader nothing about the network.
pub fn event(e: &Event) -> Option<String> {
    let d = &e.detail;
    // Events recorded from a daemon's own stream carry its event name.
    let text = match d["event"].as_str() {
        Some("request_sent") => format!(
            "mip4d sends a Registration Request ({}{}) from care-of {} to HA {}",
            s(&d["purpose"]),
            if d["retransmission"] == true {
                ", retransmission"
            } else {
                ""
            },
            s(&d["care_of"]),
            s(&d["home_agent"])
        ),
        Some("reply_received") => format!(
            "mip4d receives the Registration Reply from {}",
            s(&d["from"])
        ),
        Some("registration_accepted") => format!(
            "registration accepted: care-of {}, lifetime {} s",
            s(&d["care_of"]),
            s(&d["lifetime"])
        ),
        Some("address_added") => format!(
            "mip4d sees the new address {} on {}",
            s(&d["address"]),
            s(&d["ifname"])
        ),
        Some("address_removed") => format!(
            "mip4d sees address {} gone from {}",
            s(&d["address"]),
            s(&d["ifname"])
        ),
        Some("plugin_connected") => format!(
            "charon's mip4 plugin connects to mip4d ({})",
            s(&d["agent"])
        ),
        Some("plugin_disconnected") => {
            format!("charon's mip4 plugin is gone ({})", s(&d["reason"]))
        }
        Some("vpn_snapshot") => format!(
            "mip4d gets the plugin's snapshot: {} IKE_SA(s), TIA {}",
            s(&d["ike_sas"]),
            s(&d["tia"])
        ),
        Some("vpn_tia_assigned") => format!(
            "charon installs the TIA {} (VPN '{}', IKE_SA {}, gateway {})",
            s(&d["tia"]),
            s(&d["connection"]),
            s(&d["ike_sa"]),
            s(&d["gateway"])
        ),
        Some("vpn_moved") => format!(
            "MOBIKE moved IKE_SA {}: {} -> {} (gateway {}), as mip4d hears it",
            s(&d["ike_sa"]),
            s(&d["from"]),
            s(&d["to"]),
            s(&d["gateway"])
        ),
        Some("vpn_down") => format!("IKE_SA {} is down", s(&d["ike_sa"])),
        Some("trust_verdict") => format!(
            "mip4d's probe from {} decides: {} ({}; {} forged replies dropped)",
            s(&d["address"]),
            s(&d["verdict"]),
            s(&d["cause"]),
            s(&d["forged"])
        ),
        Some("mode_changed") => format!(
            "mode {} -> {}",
            if d["from"].is_null() {
                "none".into()
            } else {
                s(&d["from"])
            },
            if d["to"].is_null() {
                "none".into()
            } else {
                s(&d["to"])
            }
        ),
        Some("vpn_requested") => format!(
            "mip4d asks charon to {} the VPN '{}'",
            s(&d["action"]),
            s(&d["connection"])
        ),
        Some("traffic_held") => "mip4d holds the home address's traffic (no decided path)".into(),
        Some("traffic_released") => "mip4d releases the home address's traffic".into(),
        Some("decision") => format!("mip4d sends nothing: {}", s(&d["reason"])),
        Some(other) => format!("mip4d: {other}"),
        None => match e.event.as_str() {
            "lab_built" => "Figure 1 built (namespaces, links, delay lines)".into(),
            "attached" => format!("MN attaches to {}", s(&d["to"])),
            "address_change" => format!(
                "MN moves {} -> {} (break before make: old address gone, then the new one)",
                s(&d["from"]),
                s(&d["to"])
            ),
            "spawned" => format!("{} starts", s(&d["name"])),
            "charon_started" if d["mip4"].is_string() => {
                "charon starts, with the mip4 plugin".into()
            }
            "charon_started" => "charon starts".into(),
            "charon_killed" => "charon is killed (SIGKILL)".into(),
            "vpn_terminated" => format!("the VPN '{}' is terminated", s(&d["ike"])),
            "forger_started" => format!(
                "this host now answers registration requests towards {} with forged TNC replies",
                s(&d["home_agent"])
            ),
            "rtt" => format!("link RTT to {}: {} ms", s(&d["dst"]), s(&d["avg_ms"])),
            "pinger_started" => format!("ping {} -> {} every 20 ms", s(&d["src"]), s(&d["dst"])),
            "tcp_connected" => format!(
                "TCP connection {} -> {} opened, echo stream starts",
                s(&d["client"]),
                s(&d["server"])
            ),
            "vpn_up" => format!(
                "VPN up: IKE_SA {} -> {}, TIA {}",
                s(&d["local-host"]),
                s(&d["remote-host"]),
                s(&d["local-vips"])
            ),
            "check" => format!(
                "check {}: {}: {} {} /{}/",
                if d["ok"] == true { "ok" } else { "FAILED" },
                s(&d["host"]),
                s(&d["command"]),
                if d["expect"] == false {
                    "does not match"
                } else {
                    "matches"
                },
                s(&d["pattern"])
            ),
            // A daemon stopped (`HOST/NAME`); streams and pingers are
            // bookkeeping.
            "stopped" if e.host.contains('/') => format!("{} stops (SIGTERM)", e.host),
            "config_written" | "subscribed" | "secret_made" | "command" | "stopped"
            | "capture_started" => return None,
            name => {
                let what = name.replace('_', " ");
                if d.get("care_of_address").is_some() {
                    format!(
                        "{what}: HA binding {} -> care-of {} (flags {})",
                        s(&d["home_address"]),
                        s(&d["care_of_address"]),
                        s(&d["flags"])
                    )
                } else if d.get("bytes_echoed").is_some() {
                    format!(
                        "{what}: TCP {} still connection #{}, {} bytes echoed back intact",
                        s(&d["client"]),
                        s(&d["connections"]),
                        s(&d["bytes_echoed"])
                    )
                } else if d.get("rtt_ms").is_some() {
                    format!("{what}: ping reply, RTT {} ms", s(&d["rtt_ms"]))
                } else if d.get("local-host").is_some() {
                    format!(
                        "{what}: IKE_SA {}:{} -> {}:{}",
                        s(&d["local-host"]),
                        s(&d["local-port"]),
                        s(&d["remote-host"]),
                        s(&d["remote-port"])
                    )
                } else {
                    what
                }
            }
        },
    };
    Some(text)
}

/// What each figure means (the name's stem, without `_ms`/`_rtts`).
fn meaning(stem: &str) -> Option<&'static str> {
    Some(match stem {
        "registration_rtt" => "registration round trip (answered request -> reply)",
        "move_to_request" => "address change -> first Registration Request sent",
        "move_to_registered" => "address change -> registration accepted",
        "move_to_ping" => "address change -> first ping reply",
        "move_to_tcp" => "address change -> TCP stream moving again",
        "move_to_mobike" => "address change -> IKE_SA updated by MOBIKE",
        "move_to_data" => "address change -> first reply through the VPN",
        "tcp_stall" => "longest TCP stall",
        "ike_rtt" => "IKE round trip (ping RTT MN -> VPN gateway)",
        "requests_sent_after_move" => "Registration Requests sent after the move",
        "requests_sent_after_terminate" => {
            "Registration Requests sent after the old VPN was terminated"
        }
        "tia_to_request" => "new TIA installed -> Registration Request sent",
        "tia_to_registered" => "new TIA installed -> registration accepted",
        "kill_to_plugin_back" => "charon killed -> the new charon's plugin connected",
        "kill_to_tia" => "charon killed -> the new VPN's TIA installed",
        "kill_to_registered" => "charon killed -> registration accepted",
        "kill_to_ping" => "charon killed -> first ping reply",
        "kill_to_tcp" => "charon killed -> TCP stream moving again",
        "stop_to_registered" => "mip4d stopped -> the new mip4d registered",
        "stop_to_ping" => "mip4d stopped -> first ping reply",
        "stop_to_tcp" => "mip4d stopped -> TCP stream moving again",
        "move_to_verdict" => "address change -> trust verdict (mode decided)",
        "move_to_mode_c" => "address change -> mode c",
        "move_to_mode_mc" => "address change -> TIA registered through the VPN (mode mc)",
        "move_to_vpn" => "address change -> VPN up with a TIA (initiated by mip4d)",
        "vpn_to_registered" => "TIA installed -> registration accepted",
        "leg1_to_mode_c" => "leg 1 (external A -> trusted-1): address change -> mode c",
        "leg2_to_verdict" => "leg 2 (trusted-1 -> external B): address change -> untrusted",
        "leg2_to_registered" => "leg 2: address change -> TIA registered (mode mc)",
        "leg3_to_mode_c" => "leg 3 (external B -> trusted-1): address change -> mode c",
        "leg3_to_ping" => "leg 3: address change -> first ping reply",
        "leg3_to_tcp" => "leg 3: address change -> TCP stream moving again",
        "forger_answered" => "probes the forger answered (two forged TNC replies each)",
        "forged_replies" => "probe replies mip4d dropped as forged",
        "ping_lost" => "pings lost during the move (sent 20 ms apart)",
        "request_send_errors" => "Registration Requests that could not be sent (no route yet)",
        "request_retransmissions" => "Registration Request retransmissions (RFC 5944 §3.6.3)",
        s if s.starts_with("rtt_access") => "access link RTT, measured in this run",
        _ => return None,
    })
}

/// The figures as lines: meaning, value, and the value in RTTs where the
/// run computed it (`X_ms` next to `X_rtts`).
pub fn figures(f: &BTreeMap<String, f64>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in f {
        if k.ends_with("_rtts") {
            continue;
        }
        let stem = k.strip_suffix("_ms").unwrap_or(k);
        let mut label = meaning(stem).map_or_else(|| k.replace('_', " "), str::to_string);
        if let Some(which) = stem.strip_prefix("rtt_access_") {
            label = format!("{label} ({which})");
        }
        let unit = if k.ends_with("_ms") { " ms" } else { "" };
        let mut rtts = f
            .get(&format!("{stem}_rtts"))
            .map_or(String::new(), |r| format!("  = {r:.2} RTTs"));
        if let Some(r) = f.get(&format!("{stem}_ike_rtts")) {
            rtts.push_str(&format!("  = {r:.2} IKE RTTs"));
        }
        out.push(format!("{label:<58} {v:>9.1}{unit}{rtts}"));
    }
    out
}

/// The whole run: timeline (by time, ms since the lab was built), then the
/// verdict and figures.
pub fn summary(sm: &Summary) -> Vec<String> {
    let mut ev: Vec<&Event> = sm.events.iter().collect();
    ev.sort_by(|a, b| a.t.total_cmp(&b.t));
    let mut out = Vec::new();
    for e in ev {
        if let Some(t) = event(e) {
            out.push(format!("{:>9.1} ms  {t}", e.ms));
        }
    }
    out.push(String::new());
    out.push(format!("{}: {}", sm.scenario, sm.verdict));
    for l in figures(&sm.figures) {
        out.push(format!("  {l}"));
    }
    if let Some(e) = &sm.error {
        out.push(format!("  error: {e}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str, detail: Value) -> Event {
        Event {
            t: 0.0,
            ms: 0.0,
            event: name.into(),
            host: String::new(),
            detail,
        }
    }

    #[test]
    fn daemon_and_lab_events_read_as_sentences() {
        let e = ev(
            "reg_sent_2",
            serde_json::json!({"event": "request_sent", "purpose": "register",
                "care_of": "10.1.20.100", "home_agent": "10.1.1.2"}),
        );
        assert_eq!(
            event(&e).unwrap(),
            "mip4d sends a Registration Request (register) from care-of 10.1.20.100 to HA 10.1.1.2"
        );
        let b = ev(
            "ha_binding_2",
            serde_json::json!({"home_address": "10.1.100.5",
                "care_of_address": "10.1.20.100", "flags": "DT"}),
        );
        assert!(event(&b)
            .unwrap()
            .contains("10.1.100.5 -> care-of 10.1.20.100"));
        assert!(event(&ev("subscribed", Value::Null)).is_none());
    }

    #[test]
    fn figures_pair_ms_with_rtts() {
        let f: BTreeMap<String, f64> = [
            ("move_to_registered_ms".to_string(), 41.0),
            ("move_to_registered_rtts".to_string(), 2.05),
            ("ping_lost".to_string(), 3.0),
        ]
        .into();
        let lines = figures(&f);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("address change -> registration accepted"));
        assert!(lines[0].contains("41.0 ms  = 2.05 RTTs"), "{}", lines[0]);
        assert!(lines[1].contains("pings lost"));
        let f: BTreeMap<String, f64> = [
            ("move_to_ping_ms".to_string(), 211.5),
            ("move_to_ping_ike_rtts".to_string(), 7.61),
        ]
        .into();
        let lines = figures(&f);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].contains("211.5 ms  = 7.61 IKE RTTs"),
            "{}",
            lines[0]
        );
    }
}
