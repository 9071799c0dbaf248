//! Notification targets are checked against the configured allowlist when
//! the config is loaded (no SSRF): the target's host must be on the list,
//! and every address it resolves to must be public or itself allowed by an
//! IP or CIDR entry — so `localhost`, `127.1`, `[::1]`, link-local metadata
//! addresses, private ranges and names that resolve to them are refused
//! unless listed on purpose.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

use url::{Host, Url};

use crate::error::AlertError;

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A host name, optionally with a port.
    Name { host: String, port: Option<u16> },
    /// An address or range, optionally with a port.
    Net {
        network: IpAddr,
        prefix: u8,
        port: Option<u16>,
    },
}

fn parse_entry(text: &str) -> Result<Entry, AlertError> {
    let bad = |reason: &str| AlertError::Allowlist(format!("allowlist entry `{text}`: {reason}"));
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (
            address,
            Some(prefix.parse::<u8>().map_err(|_| bad("bad prefix length"))?),
        ),
        None => (text, None),
    };
    // Parse as a URL authority so `[::1]:9093` and `host:port` both work.
    let url = Url::parse(&format!("http://{address}")).map_err(|e| bad(&e.to_string()))?;
    let port = url.port();
    match url.host() {
        Some(Host::Ipv4(ip)) => Ok(Entry::Net {
            network: IpAddr::V4(ip),
            prefix: prefix.unwrap_or(32).min(32),
            port,
        }),
        Some(Host::Ipv6(ip)) => Ok(Entry::Net {
            network: IpAddr::V6(ip),
            prefix: prefix.unwrap_or(128).min(128),
            port,
        }),
        Some(Host::Domain(name)) if prefix.is_none() => Ok(Entry::Name {
            host: name.to_ascii_lowercase(),
            port,
        }),
        _ => Err(bad(
            "expected host, host:port, an IP address or a CIDR range",
        )),
    }
}

fn in_network(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// Loopback, private, link-local, CGNAT, unspecified, multicast and other
/// addresses that are not the public internet.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => internal_v4(v4),
            None => internal_v6(v6),
        },
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link local
}

pub struct Allowlist {
    entries: Vec<Entry>,
}

impl Allowlist {
    pub fn parse(entries: &[String]) -> Result<Allowlist, AlertError> {
        Ok(Allowlist {
            entries: entries
                .iter()
                .map(|e| parse_entry(e.trim()))
                .collect::<Result<_, _>>()?,
        })
    }

    fn ip_allowed(&self, ip: IpAddr, port: u16) -> bool {
        self.entries.iter().any(|entry| match entry {
            Entry::Net {
                network,
                prefix,
                port: p,
            } => in_network(ip, *network, *prefix) && p.is_none_or(|p| p == port),
            Entry::Name { .. } => false,
        })
    }

    /// Accepts `target` (an http(s) URL) or says why not.
    pub fn check(&self, target: &str) -> Result<Url, AlertError> {
        let refuse =
            |reason: String| AlertError::Allowlist(format!("target `{target}` refused: {reason}"));
        let url = Url::parse(target).map_err(|e| refuse(e.to_string()))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(refuse("only http and https targets".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse("credentials in the URL are not allowed".into()));
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let addresses: Vec<IpAddr> = match url.host() {
            Some(Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            Some(Host::Domain(name)) => {
                let name = name.to_ascii_lowercase();
                let listed = self.entries.iter().any(|entry| match entry {
                    Entry::Name { host, port: p } => *host == name && p.is_none_or(|p| p == port),
                    Entry::Net { .. } => false,
                });
                if !listed {
                    return Err(refuse(format!("host {name} is not on the allowlist")));
                }
                (name.as_str(), port)
                    .to_socket_addrs()
                    .map_err(|e| refuse(format!("cannot resolve {name}: {e}")))?
                    .map(|a| a.ip())
                    .collect()
            }
            None => return Err(refuse("no host".into())),
        };
        for ip in &addresses {
            let listed = self.ip_allowed(*ip, port);
            let by_name = matches!(url.host(), Some(Host::Domain(_)));
            if !listed && (!by_name || is_internal(*ip)) {
                return Err(refuse(if by_name {
                    format!("it resolves to {ip}, an internal address not on the allowlist")
                } else {
                    format!("{ip}:{port} is not on the allowlist")
                }));
            }
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Allowlist {
        Allowlist::parse(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>())
            .expect("allowlist")
    }

    #[test]
    fn targets_off_the_list_are_refused_with_the_reason() {
        let allow = list(&["127.0.0.1:9093", "10.1.2.0/24", "localhost:9999"]);
        assert!(allow.check("http://127.0.0.1:9093/").is_ok());
        assert!(allow.check("http://10.1.2.77:8080/hook").is_ok());
        for (target, reason) in [
            ("http://127.0.0.1:9094/", "not on the allowlist"),
            ("http://127.0.0.2:9093/", "not on the allowlist"),
            ("http://[::1]:9093/", "not on the allowlist"),
            ("http://[::ffff:127.0.0.1]:9094/", "not on the allowlist"),
            ("http://0x7f.1:9094/", "not on the allowlist"),
            ("http://localhost:9093/", "not on the allowlist"),
            (
                "http://169.254.169.254/latest/meta-data",
                "not on the allowlist",
            ),
            ("http://192.168.1.10/", "not on the allowlist"),
            ("http://10.1.3.1/", "not on the allowlist"),
            ("http://hooks.example.com/", "not on the allowlist"),
            ("ftp://127.0.0.1:9093/", "only http and https"),
            ("http://user:pw@127.0.0.1:9093/", "credentials"),
            // On the list by name, but the name resolves to loopback.
            ("http://localhost:9999/", "internal address"),
        ] {
            let error = allow.check(target).expect_err(target).to_string();
            assert!(error.contains(reason), "{target}: {error}");
        }
        // `127.1` is 127.0.0.1 written short: the same listed address.
        assert!(allow.check("http://127.1:9093/").is_ok());
    }

    #[test]
    fn internal_ranges() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_internal(ip.parse().expect(ip)), "{ip}");
        }
        for ip in ["1.1.1.1", "8.8.8.8", "2606:4700:4700::1111"] {
            assert!(!is_internal(ip.parse().expect(ip)), "{ip}");
        }
        assert!(Allowlist::parse(&["10.0.0.0/abc".to_owned()]).is_err());
    }
}
