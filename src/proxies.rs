//! Which address a request comes from (`server.trusted_proxies`).
//!
//! Behind nginx every connection comes from nginx, so throttling by peer
//! address alone would throttle everyone at once. The proxy's
//! `X-Forwarded-For` names the real client — but anyone can send that
//! header, so it is believed only when the peer is a listed proxy, and then
//! read from the right: the first address that is not itself a trusted
//! proxy is the client (RFC 7239 §5.2's reasoning for `Forwarded`).
//!
//! A deployment behind a proxy that forgot `trusted_proxies` counts every
//! client as the proxy: one address that anyone's failures lock for all.
//! The first `X-Forwarded-For` from a peer we do not trust says so in the
//! log, once per process.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the untrusted-`X-Forwarded-For` warning was logged.
static WARNED_UNTRUSTED: AtomicBool = AtomicBool::new(false);

/// The peer of a connection, put into each request's extensions by the
/// server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// One `address[/prefix]` entry of `server.trusted_proxies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    base: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Network>);

impl TrustedProxies {
    /// Parses entries such as `127.0.0.1`, `10.0.0.0/8` or `fd00::/8`.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|entry| parse_network(entry.trim()))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn trusts(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.0.iter().any(|n| n.contains(addr))
    }

    /// The client's address: the peer, unless the peer is a trusted proxy
    /// and `forwarded_for` (the `X-Forwarded-For` values, in order) names
    /// one further out.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a [u8]>,
    ) -> IpAddr {
        let peer = canonical(peer);
        let mut hops = forwarded_for.peekable();
        if !self.trusts(peer) {
            if hops.peek().is_some() && !WARNED_UNTRUSTED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    %peer,
                    "a request carries X-Forwarded-For from a peer not in server.trusted_proxies: \
                     it is ignored and the peer counts as the client, so every client behind \
                     that proxy shares one address for throttling; list the proxy in \
                     server.trusted_proxies if it is yours"
                );
            }
            return peer;
        }
        let hops: Vec<&'a [u8]> = hops.collect();
        let mut client = peer;
        for hop in hops
            .iter()
            .rev()
            .flat_map(|value| value.rsplit(|&b| b == b','))
        {
            let Some(addr) = std::str::from_utf8(hop)
                .ok()
                .and_then(|text| text.trim().parse::<IpAddr>().ok())
            else {
                // Garbage in the chain: stop at the last address we believe.
                break;
            };
            client = canonical(addr);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

impl Network {
    fn contains(&self, addr: IpAddr) -> bool {
        match (self.base, addr) {
            (IpAddr::V4(base), IpAddr::V4(addr)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(base) & mask == u32::from(addr) & mask
            }
            (IpAddr::V6(base), IpAddr::V6(addr)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(base) & mask == u128::from(addr) & mask
            }
            _ => false,
        }
    }
}

fn parse_network(entry: &str) -> Result<Network, String> {
    let (addr, prefix) = match entry.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (entry, None),
    };
    let base = addr
        .parse::<IpAddr>()
        .map(canonical)
        .map_err(|_| format!("{entry:?} is not an IP address or address/prefix"))?;
    let max = if base.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(text) => text
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{entry:?}: the prefix must be 0 to {max}"))?,
    };
    Ok(Network { base, prefix })
}

/// IPv4-mapped IPv6 addresses (dual-stack sockets) as plain IPv4.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let p = proxies(&["10.0.0.0/8"]);
        let claims = [&b"203.0.113.9"[..]];
        assert_eq!(
            p.client(ip("198.51.100.1"), claims.into_iter()),
            ip("198.51.100.1")
        );
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("10.1.1.1"), claims.into_iter()),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn a_trusted_peer_is_believed_from_the_right() {
        let p = proxies(&["10.0.0.0/8", "::1"]);
        // A client-sent spoof on the left is never reached.
        let chain = [&b"1.2.3.4, 203.0.113.9"[..], b"10.0.0.7"];
        assert_eq!(
            p.client(ip("10.0.0.2"), chain.into_iter()),
            ip("203.0.113.9")
        );
        assert_eq!(
            p.client(ip("::1"), [&b"203.0.113.5"[..]].into_iter()),
            ip("203.0.113.5")
        );
        assert_eq!(
            p.client(ip("::ffff:10.0.0.2"), [&b"203.0.113.5"[..]].into_iter()),
            ip("203.0.113.5")
        );
        // No header, or garbage: the last address believed.
        assert_eq!(p.client(ip("10.0.0.2"), std::iter::empty()), ip("10.0.0.2"));
        let garbage = [&b"203.0.113.9, nonsense"[..]];
        assert_eq!(
            p.client(ip("10.0.0.2"), garbage.into_iter()),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn entries_are_checked() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["nginx".into()]).is_err());
        let p = proxies(&["0.0.0.0/0"]);
        assert!(p.trusts(ip("192.0.2.1")));
        assert!(!p.trusts(ip("2001:db8::1")));
        assert!(proxies(&["2001:db8::/32"]).trusts(ip("2001:db8:ffff::1")));
    }
}
