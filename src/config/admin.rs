//! `[admin]`: the admin listener's address, bearer token and client allow list.

use std::net::{IpAddr, SocketAddr};

use toml::de::DeValue;

use super::address::parse_listen_address;
use super::reader::{Reader, Table, string, wrong_type};
use super::{AdminConfig, ListenerConfig};

pub(super) const ADMIN_KEYS: &[&str] = &["address", "token", "allow"];
/// A longer token is no safer, and the admin server bounds the request head it reads.
const MAX_TOKEN_BYTES: usize = 256;

/// A network as `ip/prefix`; a bare IP is the one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = ip.parse().map_err(|_| {
            format!("{text:?} is not an IP address or network (e.g. \"10.0.0.0/8\")")
        })?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("prefix length in {text:?} must be 0..={max}"))?,
        };
        Ok(Self { network, prefix })
    }

    /// Whether `ip` is in the network. An IPv4-mapped IPv6 address counts as its IPv4 one.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_matches(
                u128::from(u32::from(net)),
                u128::from(u32::from(ip)),
                32,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_matches(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_matches(net: u128, ip: u128, bits: u8, prefix: u8) -> bool {
    let shift = u32::from(bits - prefix.min(bits));
    net.checked_shr(shift).unwrap_or(0) == ip.checked_shr(shift).unwrap_or(0)
}

/// The admin listener's address: `ip:port`, or a bare port meaning `127.0.0.1:port` (what
/// `--admin 9901` means too): the listener exposes the proxy's state, so it is on loopback
/// unless an address says otherwise.
pub fn parse_admin_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    parse_listen_address(text)
}

fn admin_address(value: &DeValue<'_>) -> Result<SocketAddr, String> {
    match value {
        DeValue::Integer(_) => {
            let port = super::reader::integer_in(0..=u16::MAX)(value)?;
            Ok(SocketAddr::from(([127, 0, 0, 1], port)))
        }
        other => parse_admin_address(string(other)?),
    }
}

fn token(value: &DeValue<'_>) -> Result<String, String> {
    parse_admin_token(string(value)?)
}

/// A bearer token as `[admin] token` takes it (and `ringproxy top --token` sends it).
pub fn parse_admin_token(token: &str) -> Result<String, String> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(format!("must be 1..={MAX_TOKEN_BYTES} bytes"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be visible ASCII without spaces".into());
    }
    Ok(token.to_string())
}

pub(super) fn read_admin(
    r: &mut Reader<'_>,
    t: &Table<'_, '_>,
    listeners: &[ListenerConfig],
) -> Option<AdminConfig> {
    let address = r.required(t, "address", admin_address)?;
    if let (Some(listener), Some(value)) = (
        listeners
            .iter()
            .find(|l| super::listeners_clash(l.address, address)),
        t.get("address"),
    ) {
        let message = format!(
            "{address} is also a listener's address ({})",
            listener.address
        );
        r.error(value.span(), t.key_path("address"), message);
    }
    let token = r.field(t, "token", token);
    let allow = read_allow(r, t);
    Some(AdminConfig {
        address,
        token,
        allow,
    })
}

fn read_allow(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Vec<Cidr> {
    let Some(value) = t.get("allow") else {
        return Vec::new();
    };
    let path = t.key_path("allow");
    let DeValue::Array(items) = value.get_ref() else {
        let message = wrong_type(
            "an array of networks like [\"127.0.0.1/32\"]",
            value.get_ref(),
        );
        r.error(value.span(), path, message);
        return Vec::new();
    };
    if items.is_empty() {
        let message = "empty: no client could reach the admin listener (omit allow to admit any)";
        r.error(value.span(), path, message);
        return Vec::new();
    }
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            r.convert(item, format!("{path}[{i}]"), |v| Cidr::parse(string(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_match_by_prefix() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        let one = Cidr::parse("::1").unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(!one.contains("127.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("host/8").is_err());
    }

    #[test]
    fn a_bare_port_is_on_loopback() {
        assert_eq!(
            parse_admin_address("9901").unwrap(),
            "127.0.0.1:9901".parse().unwrap()
        );
        assert_eq!(
            parse_admin_address("[::1]:9901").unwrap(),
            "[::1]:9901".parse().unwrap()
        );
    }
}
