//! SSRF rules for push targets.
//!
//! A target must be `https` and resolve only to public unicast addresses: loopback, RFC 1918,
//! CGNAT (100.64/10), link-local (169.254/16, the cloud metadata address among them),
//! unspecified, multicast, broadcast, reserved and documentation ranges are refused, with their
//! IPv6 equivalents (`::1`, `fc00::/7`, `fe80::/10`, multicast) and IPv4 addresses embedded in
//! IPv6 judged as IPv4 (mapped `::ffff:a.b.c.d`, translated `::ffff:0:a.b.c.d`, NAT64
//! `64:ff9b::/96`, 6to4 `2002:aabb:ccdd::/48`); IPv6 ranges whose far end is not knowable from
//! the address are refused (local-use NAT64 `64:ff9b:1::/48`, Teredo `2001::/32`, discard-only
//! `100::/64`). The configured allowlist
//! (host names, addresses or CIDRs) exempts targets from these rules and permits plain `http`
//! for them. The check runs at subscribe time and before every delivery, and the delivery
//! client's resolver ([`GuardedResolver`]) applies the same filter to the addresses it connects
//! to, so a name that re-resolves to a private address (DNS rebinding) is still refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::Url;

/// The allowlist and the checks.
#[derive(Debug, Clone, Default)]
pub struct SsrfPolicy {
    hosts: Vec<String>,
    nets: Vec<IpNet>,
}

fn v4_public(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 CGNAT
        || o[0] >= 240 // reserved
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 IETF
        || (o[0] == 192 && o[1] == 0 && o[2] == 2) // documentation
        || (o[0] == 198 && o[1] == 51 && o[2] == 100)
        || (o[0] == 203 && o[1] == 0 && o[2] == 113)
        || (o[0] == 198 && (o[1] & 0xfe) == 18)) // 198.18.0.0/15 benchmarking
}

fn v6_public(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_public(v4);
    }
    let s = ip.segments();
    let o = ip.octets();
    let last32 = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    // NAT64 well-known prefix, and SIIT's IPv4-translated ::ffff:0:0:0/96.
    if (s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0]) || s[0..6] == [0, 0, 0, 0, 0xffff, 0] {
        return v4_public(last32);
    }
    // 6to4: the IPv4 address of the relay's other end is bits 16..48.
    if s[0] == 0x2002 {
        return v4_public(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    // Translations whose far end the address does not tell: local-use NAT64 64:ff9b:1::/48,
    // Teredo 2001::/32, and the discard-only 100::/64.
    let local_nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1;
    let teredo = s[0] == 0x2001 && s[1] == 0;
    if local_nat64 || teredo || s[0..4] == [0x100, 0, 0, 0] {
        return false;
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0..6] == [0, 0, 0, 0, 0, 0])) // IPv4-compatible (deprecated) and ::/96
}

/// Whether an address is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_public(v4),
        IpAddr::V6(v6) => v6_public(v6),
    }
}

impl SsrfPolicy {
    /// Builds the allowlist from configuration entries (host names, addresses, CIDRs).
    pub fn new(allow: &[String]) -> Self {
        let mut p = SsrfPolicy::default();
        for entry in allow {
            let e = entry.trim();
            if let Ok(net) = e.parse::<IpNet>() {
                p.nets.push(net);
            } else if let Ok(ip) = e.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
                p.nets.push(IpNet::from(ip));
            } else if !e.is_empty() {
                p.hosts.push(e.to_ascii_lowercase());
            }
        }
        p
    }

    fn host_listed(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    fn ip_listed(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Checks a target URL; the error says why it is refused.
    pub async fn check(&self, url: &Url) -> Result<(), String> {
        self.check_with(url, Scheme::HttpsOnly, true).await
    }

    /// [`SsrfPolicy::check`] with the schemes a feature allows, and optionally without
    /// resolving host names (a subscription stored now and checked at each delivery: a name
    /// that does not resolve yet, or resolves elsewhere later, is judged when it is used).
    pub async fn check_with(&self, url: &Url, schemes: Scheme, resolve_names: bool) -> Result<(), String> {
        let host = url.host_str().ok_or("the URL has no host")?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let port = url.port_or_known_default().ok_or("the URL has no port")?;
        let is_name = bare.parse::<IpAddr>().is_err();
        if is_name && !resolve_names && !self.host_listed(bare) {
            return match url.scheme() {
                "https" => Ok(()),
                "http" if schemes == Scheme::HttpAndHttps => Ok(()),
                "http" => Err("the URL must be https".into()),
                s => Err(format!("scheme {s} is not supported")),
            };
        }
        let exempt = self.host_listed(bare)
            || match bare.parse::<IpAddr>() {
                Ok(ip) => self.ip_listed(ip),
                Err(_) => {
                    let addrs = resolve(bare, port).await?;
                    !addrs.is_empty() && addrs.iter().all(|a| self.ip_listed(a.ip()))
                }
            };
        if exempt {
            return match url.scheme() {
                "http" | "https" => Ok(()),
                s => Err(format!("scheme {s} is not supported")),
            };
        }
        match (url.scheme(), schemes) {
            ("https", _) | ("http", Scheme::HttpAndHttps) => {}
            ("http", Scheme::HttpsOnly) => return Err("the URL must be https".into()),
            (s, _) => return Err(format!("scheme {s} is not supported")),
        }
        match bare.parse::<IpAddr>() {
            Ok(ip) if is_public(ip) => Ok(()),
            Ok(ip) => Err(format!("{ip} is not a public address")),
            Err(_) => {
                let addrs = resolve(bare, port).await?;
                match addrs.iter().find(|a| !is_public(a.ip())) {
                    Some(a) => Err(format!("{host} resolves to {}, which is not a public address", a.ip())),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Which schemes a push target may use (the private-address rules apply to both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// infrai push subscriptions.
    HttpsOnly,
    /// MNS HTTP endpoints, which the service pushes to over plain http too.
    HttpAndHttps,
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host((host, port)).await.map_err(|e| format!("{host} does not resolve: {e}"))?.collect();
    if addrs.is_empty() {
        return Err(format!("{host} does not resolve"));
    }
    Ok(addrs)
}

/// The delivery client's DNS resolver: only addresses the policy permits are connected to.
pub struct GuardedResolver {
    pub policy: Arc<SsrfPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = resolve(&host, 0).await?;
            let listed = policy.host_listed(&host);
            let ok: Vec<SocketAddr> =
                addrs.into_iter().filter(|a| listed || policy.ip_listed(a.ip()) || is_public(a.ip())).collect();
            if ok.is_empty() {
                return Err(format!("{host} resolves only to non-public addresses").into());
            }
            let it: reqwest::dns::Addrs = Box::new(ok.into_iter());
            Ok(it)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_classes() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
            "64:ff9b:1::808:808",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:0101::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "100::1",
        ] {
            assert!(!is_public(bad.parse().unwrap()), "{bad} must be refused");
        }
        for good in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "::ffff:0:808:808",
            "2002:808:808::1",
        ] {
            assert!(is_public(good.parse().unwrap()), "{good} is public");
        }
    }

    #[tokio::test]
    async fn allowlist_exempts_only_what_it_lists() {
        let p = SsrfPolicy::new(&["127.0.0.1".into()]);
        assert!(p.check(&Url::parse("http://127.0.0.1:9/x").unwrap()).await.is_ok());
        assert!(p.check(&Url::parse("http://169.254.169.254/latest").unwrap()).await.is_err());
        assert!(p.check(&Url::parse("https://169.254.169.254/latest").unwrap()).await.is_err());
        assert!(p.check(&Url::parse("https://10.0.0.1/").unwrap()).await.is_err());
        assert!(p.check(&Url::parse("http://8.8.8.8/").unwrap()).await.is_err(), "http needs the allowlist");
        assert!(p.check(&Url::parse("https://8.8.8.8/").unwrap()).await.is_ok());
        assert!(p.check(&Url::parse("https://[::1]/").unwrap()).await.is_err());
        assert!(p.check(&Url::parse("ftp://127.0.0.1/").unwrap()).await.is_err());
        let none = SsrfPolicy::new(&[]);
        assert!(none.check(&Url::parse("http://127.0.0.1:9/x").unwrap()).await.is_err());
        assert!(none.check(&Url::parse("https://localhost/").unwrap()).await.is_err());
        assert!(none.check(&Url::parse("https://does-not-exist.invalid/").unwrap()).await.is_err());
    }

    #[tokio::test]
    async fn relay_targets_allow_plain_http_and_defer_names_to_delivery() {
        let p = SsrfPolicy::new(&[]);
        let url = |u: &str| Url::parse(u).unwrap();
        // infrai push: https only.
        assert!(p.check(&url("http://8.8.8.8/x")).await.unwrap_err().contains("https"));
        // MNS endpoints: http is fine to a public address, never to a private one.
        assert!(p.check_with(&url("http://8.8.8.8/x"), Scheme::HttpAndHttps, true).await.is_ok());
        assert!(p.check_with(&url("http://10.0.0.1/x"), Scheme::HttpAndHttps, false).await.is_err());
        assert!(p.check_with(&url("http://[::1]/x"), Scheme::HttpAndHttps, false).await.is_err());
        assert!(p.check_with(&url("ftp://8.8.8.8/x"), Scheme::HttpAndHttps, false).await.is_err());
        // A name is not resolved at subscribe time (it is at each delivery).
        assert!(p.check_with(&url("http://no-such-host.invalid/x"), Scheme::HttpAndHttps, false).await.is_ok());
        assert!(p.check_with(&url("http://no-such-host.invalid/x"), Scheme::HttpAndHttps, true).await.is_err());
    }
}
