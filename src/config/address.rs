//! Socket addresses as the config file writes them: IP literals with a port.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use toml::de::DeValue;

use super::reader::string;

pub(crate) fn listen_address(value: &DeValue<'_>) -> Result<SocketAddr, String> {
    parse_listen_address(string(value)?)
}

pub(crate) fn backend_address(value: &DeValue<'_>) -> Result<SocketAddr, String> {
    parse_backend_address(string(value)?)
}

/// A backend needs a real port; a listener may ask for port 0 (the kernel picks one, and
/// ringproxy prints it at start).
pub fn parse_backend_address(text: &str) -> Result<SocketAddr, String> {
    let address = parse_socket_address(text)?;
    if address.port() == 0 {
        return Err(format!(
            "port 0 in {text:?} is not allowed (give an explicit port)"
        ));
    }
    Ok(address)
}

/// A listener address: any IP literal with a port, port 0 included.
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    parse_socket_address(text)
}

/// Whether two listeners would take the same address. Each port-0 listener gets its own
/// port from the kernel, so those never clash.
pub fn listeners_clash(a: SocketAddr, b: SocketAddr) -> bool {
    a == b && a.port() != 0
}

fn parse_socket_address(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>().map_err(|_| {
        let hint = if names_a_host(text) {
            "; host names are not resolved at load time"
        } else if text.parse::<Ipv6Addr>().is_ok() {
            "; write IPv6 as [address]:port"
        } else {
            ""
        };
        format!("invalid socket address {text:?} (expected ip:port{hint})")
    })
}

/// Whether `text` looks like `host:port` or `host` with a host name rather than an IP.
fn names_a_host(text: &str) -> bool {
    let host = match text.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => text,
    };
    let unbracketed = host.trim_start_matches('[').trim_end_matches(']');
    unbracketed.parse::<IpAddr>().is_err() && host.chars().any(|c| c.is_ascii_alphabetic())
}
