//! The one outbound address policy of botyard, shared by the bots' HTTP client (the binary's
//! `outbound` module) and the plugins' (`botyard-plugins`' `outbound` module), so that the two
//! can never disagree about which addresses are off limits.
//!
//! A bot author or a plugin author controls the URL of an outbound call. Their callers resolve
//! the host name, then ask [`permits`] about **every** resolved address and connect only to an
//! address that was checked. Only public unicast addresses pass ([`AddrClass::Public`]), plus
//! what the operator lists explicitly (`serve --outbound-allow`, tests: `127.0.0.1`).
//!
//! Refused, by [`classify`]:
//!
//! | class | IPv4 | IPv6 |
//! | --- | --- | --- |
//! | unspecified | `0.0.0.0/8` | `::` |
//! | loopback | `127/8` | `::1` |
//! | private | `10/8`, `172.16/12`, `192.168/16`, CGNAT `100.64/10` | unique-local `fc00::/7`, site-local `fec0::/10`, local-use NAT64 `64:ff9b:1::/48` |
//! | link-local | `169.254/16` (cloud metadata) | `fe80::/10` |
//! | multicast | `224/4` | `ff00::/8` |
//! | documentation | `192.0.2/24`, `198.51.100/24`, `203.0.113/24` | `2001:db8::/32`, `3fff::/20` |
//! | reserved | `240/4` (with broadcast `255.255.255.255`), `192.0.0/24`, `192.88.99/24`, benchmarking `198.18/15` | `2001::/23` (Teredo `2001::/32`, benchmarking, ORCHID), IPv4-compatible `::a.b.c.d`, discard `100::/64`, everything outside `2000::/3` |
//!
//! IPv6 addresses that carry an IPv4 address the packets end up at are judged by that IPv4
//! address: IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002:AABB:CCDD::/48`.
//! Teredo (`2001::/32`) embeds its client address obfuscated and its relay anywhere: it is
//! refused whole, as are the deprecated IPv4-compatible addresses. Outside `2000::/3` nothing
//! is allocated as global unicast, so anything there not named above is refused too: an
//! allocation IANA makes later must be a decision, not an accident.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Where an address falls; only [`AddrClass::Public`] is reachable without an allow entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    Public,
    Loopback,
    /// RFC 1918, CGNAT, unique-local, site-local, local-use NAT64.
    Private,
    LinkLocal,
    Unspecified,
    Multicast,
    /// Ranges reserved for examples (RFC 5737, RFC 3849, RFC 9637).
    Documentation,
    /// Broadcast, 240/4, protocol assignments, benchmarking, tunnels that hide their
    /// destination, and unallocated IPv6.
    Reserved,
}

/// The class of `ip`; IPv4 embedded in IPv6 is classified by its IPv4 part.
pub fn classify(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Whether a call may go to `ip`: a public address, or one an `allow` entry contains.
pub fn permits(ip: IpAddr, allow: &[IpNet]) -> bool {
    classify(ip) == AddrClass::Public || allow.iter().any(|n| n.contains(ip))
}

fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (0, _, _) => AddrClass::Unspecified,
        (127, _, _) => AddrClass::Loopback,
        (10, _, _) | (192, 168, _) => AddrClass::Private,
        (172, 16..=31, _) | (100, 64..=127, _) => AddrClass::Private,
        (169, 254, _) => AddrClass::LinkLocal,
        (224..=239, _, _) => AddrClass::Multicast,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => AddrClass::Documentation,
        // 240/4 and broadcast, IETF protocol assignments (incl. DS-Lite), the deprecated 6to4
        // relay anycast, benchmarking 198.18/15.
        (240..=255, _, _) | (192, 0, 0) | (192, 88, 99) | (198, 18..=19, _) => AddrClass::Reserved,
        _ => AddrClass::Public,
    }
}

fn v4_at(s: &[u16]) -> Ipv4Addr {
    Ipv4Addr::new((s[0] >> 8) as u8, s[0] as u8, (s[1] >> 8) as u8, s[1] as u8)
}

fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    let s = ip.segments();
    if ip.is_unspecified() {
        return AddrClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddrClass::Loopback;
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    match s {
        // NAT64 well-known prefix: the packets go to the embedded IPv4 address.
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => classify_v4(v4_at(&s[6..8])),
        // Local-use NAT64 (RFC 8215): translates into the operator's own network.
        [0x64, 0xff9b, 1, ..] => AddrClass::Private,
        // 6to4: the embedded IPv4 address is the tunnel's end.
        [0x2002, ..] => classify_v4(v4_at(&s[1..3])),
        [0x2001, 0x0db8, ..] => AddrClass::Documentation,
        [0x3fff, x, ..] if x < 0x1000 => AddrClass::Documentation,
        // 2001::/23, IETF protocol assignments: Teredo 2001::/32, benchmarking, ORCHID...
        [0x2001, x, ..] if x < 0x0200 => AddrClass::Reserved,
        [x, ..] if x & 0xfe00 == 0xfc00 => AddrClass::Private,
        [x, ..] if x & 0xffc0 == 0xfec0 => AddrClass::Private,
        [x, ..] if x & 0xffc0 == 0xfe80 => AddrClass::LinkLocal,
        [x, ..] if x & 0xff00 == 0xff00 => AddrClass::Multicast,
        // Global unicast is 2000::/3; the rest (IPv4-compatible ::/96, discard 100::/64,
        // SRv6 5f00::/16, unallocated space) names no public host.
        [x, ..] if x & 0xe000 != 0x2000 => AddrClass::Reserved,
        _ => AddrClass::Public,
    }
}

/// An address or network an operator allows although its class is refused (`127.0.0.1`,
/// `10.0.0.0/8`, `::1/128`). An IPv4 network also contains the IPv4-mapped IPv6 form of its
/// addresses (`::ffff:127.0.0.1`), which reaches the same host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// `addr` or `addr/prefix`.
    pub fn parse(text: &str) -> Result<IpNet, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: bad prefix length"))?,
        };
        Ok(IpNet { addr, prefix })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                same_prefix(u32::from(n) as u128, u32::from(a) as u128, 32, self.prefix)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                same_prefix(u128::from(n), u128::from(a), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` of `width` bits of `a` and `b` agree.
fn same_prefix(a: u128, b: u128, width: u32, prefix: u8) -> bool {
    let shift = width - u32::from(prefix);
    shift >= width || (a >> shift) == (b >> shift)
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<IpNet, String> {
        IpNet::parse(s)
    }
}

impl From<IpAddr> for IpNet {
    fn from(addr: IpAddr) -> IpNet {
        IpNet {
            addr,
            prefix: if addr.is_ipv4() { 32 } else { 128 },
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AddrClass::*;

    /// Every range the policy names, with its edges where an off-by-one would leak.
    const TABLE: &[(&str, AddrClass)] = &[
        // IPv4
        ("8.8.8.8", Public),
        ("1.1.1.1", Public),
        ("149.154.167.220", Public),
        ("0.0.0.0", Unspecified),
        ("0.1.2.3", Unspecified),
        ("127.0.0.1", Loopback),
        ("127.255.1.2", Loopback),
        ("10.0.0.1", Private),
        ("10.255.255.255", Private),
        ("11.0.0.1", Public),
        ("172.15.255.255", Public),
        ("172.16.0.1", Private),
        ("172.31.255.255", Private),
        ("172.32.0.1", Public),
        ("192.168.1.1", Private),
        ("100.63.255.255", Public),
        ("100.64.0.1", Private),
        ("100.127.255.255", Private),
        ("100.128.0.1", Public),
        ("169.254.169.254", LinkLocal),
        ("224.0.0.1", Multicast),
        ("239.255.255.255", Multicast),
        ("192.0.2.10", Documentation),
        ("198.51.100.7", Documentation),
        ("203.0.113.200", Documentation),
        ("192.0.0.8", Reserved),
        ("192.0.1.1", Public),
        ("192.88.99.1", Reserved),
        ("198.18.0.1", Reserved),
        ("198.19.255.255", Reserved),
        ("198.20.0.1", Public),
        ("240.0.0.1", Reserved),
        ("255.255.255.255", Reserved),
        // IPv6
        ("2606:4700::1111", Public),
        ("2a00:1450:4007:80e::200e", Public),
        ("::", Unspecified),
        ("::1", Loopback),
        ("fe80::1", LinkLocal),
        ("febf::1", LinkLocal),
        ("fec0::1", Private),
        ("fc00::1", Private),
        ("fd12:3456::1", Private),
        ("ff02::1", Multicast),
        ("2001:db8::1", Documentation),
        ("3fff::1", Documentation),
        ("3fff:fff::1", Documentation),
        // IPv4-mapped: judged by the IPv4 part.
        ("::ffff:127.0.0.1", Loopback),
        ("::ffff:10.0.0.1", Private),
        ("::ffff:169.254.169.254", LinkLocal),
        ("::ffff:8.8.8.8", Public),
        // IPv4-compatible (deprecated): refused whatever it embeds.
        ("::127.0.0.1", Reserved),
        ("::10.0.0.1", Reserved),
        ("::8.8.8.8", Reserved),
        // NAT64.
        ("64:ff9b::a9fe:a9fe", LinkLocal),
        ("64:ff9b::7f00:1", Loopback),
        ("64:ff9b::808:808", Public),
        ("64:ff9b:1::a00:1", Private),
        // 6to4.
        ("2002:7f00:1::", Loopback),
        ("2002:a00:1::1", Private),
        ("2002:a9fe:a9fe::", LinkLocal),
        ("2002:c0a8:101::", Private),
        ("2002:808:808::1", Public),
        // Teredo and the rest of 2001::/23.
        ("2001::1", Reserved),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Reserved),
        ("2001:2::1", Reserved),
        ("2001:10::1", Reserved),
        ("2001:200::1", Public),
        // Outside 2000::/3.
        ("100::1", Reserved),
        ("5f00::1", Reserved),
        ("4000::1", Reserved),
        ("e000::1", Reserved),
    ];

    #[test]
    fn the_table() {
        for &(ip, class) in TABLE {
            assert_eq!(classify(ip.parse().unwrap()), class, "{ip}");
            assert_eq!(
                permits(ip.parse().unwrap(), &[]),
                class == Public,
                "{ip} without an allow list"
            );
        }
    }

    #[test]
    fn allow_list() {
        let allow: Vec<IpNet> = ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let ok = |s: &str| permits(s.parse().unwrap(), &allow);
        assert!(ok("127.0.0.1") && ok("::ffff:127.0.0.1"));
        assert!(!ok("127.0.0.2"));
        assert!(ok("10.200.3.4") && !ok("192.168.0.1"));
        assert!(ok("fd00::5") && !ok("fc00::5"));
        assert!(ok("8.8.8.8"), "public stays allowed");
        // An IPv4 entry does not open the IPv4 it embeds in NAT64 or 6to4 form.
        assert!(!ok("64:ff9b::7f00:1") && !ok("2002:7f00:1::"));
        assert!(
            IpNet::parse("::/0")
                .unwrap()
                .contains("fe80::1".parse().unwrap())
        );
        assert!(
            IpNet::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            !IpNet::parse("127.0.0.1")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
    }

    #[test]
    fn parsing() {
        assert_eq!(IpNet::parse(" 10.0.0.0/8 ").unwrap().prefix(), 8);
        assert_eq!(IpNet::parse("::1").unwrap().prefix(), 128);
        assert_eq!(
            IpNet::parse("10.0.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!(IpNet::parse("10.0.0.0/33").is_err());
        assert!(IpNet::parse("::/129").is_err());
        assert!(IpNet::parse("nope").is_err());
        assert!("10.0.0.0/x".parse::<IpNet>().is_err());
    }
}
