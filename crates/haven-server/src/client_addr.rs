//! The client address that rate limits and per-address connection caps key on.
//!
//! Data flow: the TCP peer address comes from the accepted socket; `X-Forwarded-For` comes from
//! the request, i.e. from whoever sent it. Trust assumption: the header is believed only as far
//! as the operator's list of trusted proxies ([`TrustedProxies`], `--trusted-proxy`) reaches. A
//! proxy appends the address it received the request from, so reading the header from the right,
//! every address up to and including the first one that is *not* a trusted proxy was written by
//! a trusted proxy; that first untrusted address is the client. Anything to its left was written
//! by the client itself and is ignored. With no trusted proxies (the default) the header is never
//! read.
//!
//! IPv6 addresses are bucketed to their /64 (one customer network typically gets a /64, so an
//! attacker rotating addresses inside it stays in one bucket); IPv4-mapped IPv6 addresses count as
//! their IPv4 address.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// Most `X-Forwarded-For` entries looked at, from the right.
const MAX_HOPS: usize = 32;

/// The reverse proxies whose `X-Forwarded-For` entries are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts the given networks.
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies(nets)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An IPv4-mapped IPv6 address as IPv4; anything else unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The bucket an address counts in: IPv4 addresses as they are, IPv6 addresses as their /64.
pub fn bucket(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// Parses one `X-Forwarded-For` entry: an IP address, optionally with a port (`1.2.3.4:80`,
/// `[::1]:80`, `[::1]`). `None` for anything else (including `unknown` and obfuscated ids).
pub fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = entry.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .and_then(|e| e.parse::<Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

/// The client address of a request from `peer` carrying the given `X-Forwarded-For` header
/// values (in the order they appear), as a bucket ([`bucket`]).
///
/// The peer, unless it is a trusted proxy; then the right-most `X-Forwarded-For` entry that is
/// not a trusted proxy. An entry that does not parse stops the walk: the address to its right
/// (the proxy that passed it on) is used, since nothing left of a garbled hop can be believed.
/// Header values that are not visible ASCII count as garbled.
pub fn client_addr<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted: &TrustedProxies,
) -> IpAddr {
    let mut client = canonical(peer);
    if trusted.is_empty() || !trusted.contains(client) {
        return bucket(client);
    }
    let mut hops = 0usize;
    for value in forwarded_for.rev() {
        let Ok(value) = std::str::from_utf8(value) else {
            return bucket(client);
        };
        for entry in value.rsplit(',') {
            hops += 1;
            if hops > MAX_HOPS {
                return bucket(client);
            }
            let Some(ip) = parse_entry(entry) else {
                return bucket(client);
            };
            client = canonical(ip);
            if !trusted.contains(client) {
                return bucket(client);
            }
        }
    }
    bucket(client)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn addr(peer: &str, headers: &[&str], trusted: &TrustedProxies) -> IpAddr {
        client_addr(ip(peer), headers.iter().map(|h| h.as_bytes()), trusted)
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let none = TrustedProxies::default();
        assert_eq!(
            addr("203.0.113.9", &["198.51.100.1"], &none),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn an_untrusted_peer_cannot_claim_another_address() {
        let t = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            addr("203.0.113.9", &["198.51.100.1"], &t),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn the_right_most_untrusted_entry_is_the_client() {
        let t = proxies(&["10.0.0.0/8", "192.168.1.1/32"]);
        // The client forged "1.1.1.1"; the edge proxy appended the real address.
        assert_eq!(
            addr("10.0.0.2", &["1.1.1.1, 198.51.100.7, 192.168.1.1"], &t),
            ip("198.51.100.7")
        );
        // Several header lines are one list, in order.
        assert_eq!(
            addr("10.0.0.2", &["1.1.1.1", "198.51.100.7", "192.168.1.1"], &t),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn a_request_from_the_proxy_itself_is_the_proxy() {
        let t = proxies(&["10.0.0.0/8"]);
        assert_eq!(addr("10.0.0.2", &[], &t), ip("10.0.0.2"));
        assert_eq!(addr("10.0.0.2", &["10.1.1.1"], &t), ip("10.1.1.1"));
    }

    #[test]
    fn a_garbled_entry_stops_the_walk() {
        let t = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            addr("10.0.0.2", &["198.51.100.7, nonsense, 10.0.0.3"], &t),
            ip("10.0.0.3")
        );
        assert_eq!(addr("10.0.0.2", &["unknown"], &t), ip("10.0.0.2"));
        let bad = client_addr(ip("10.0.0.2"), [&b"\xff\xfe"[..]].into_iter(), &t);
        assert_eq!(bad, ip("10.0.0.2"));
    }

    #[test]
    fn ports_and_brackets_are_accepted() {
        let t = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            addr("10.0.0.2", &["198.51.100.7:4711"], &t),
            ip("198.51.100.7")
        );
        assert_eq!(
            addr("10.0.0.2", &["[2001:db8::1]:443"], &t),
            ip("2001:db8::")
        );
        assert_eq!(addr("10.0.0.2", &["[2001:db8::1]"], &t), ip("2001:db8::"));
    }

    #[test]
    fn ipv6_is_bucketed_to_its_slash_64() {
        let none = TrustedProxies::default();
        assert_eq!(
            addr("2001:db8:1:2:aaaa:bbbb:cccc:dddd", &[], &none),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            bucket(ip("2001:db8:1:2::1")),
            bucket(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(bucket(ip("2001:db8:1:2::1")), bucket(ip("2001:db8:1:3::1")));
        assert_eq!(bucket(ip("::ffff:198.51.100.7")), ip("198.51.100.7"));
    }

    #[test]
    fn mapped_peers_match_ipv4_proxies() {
        let t = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            addr("::ffff:10.0.0.2", &["198.51.100.7"], &t),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn long_chains_are_cut() {
        let t = proxies(&["10.0.0.0/8"]);
        let chain = vec!["10.0.0.1"; 100].join(",");
        assert_eq!(addr("10.0.0.2", &[&chain], &t), ip("10.0.0.1"));
    }
}
