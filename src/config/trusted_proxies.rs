//! Which address a request comes from. `X-Forwarded-For` is believed only from the proxies named
//! in `TRUSTED_PROXIES`; anyone else could write any address there.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl std::str::FromStr for TrustedProxies {
    type Err = String;

    /// A comma list of addresses (`10.0.0.5`) and networks (`10.0.0.0/8`).
    fn from_str(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{item:?} is neither an IP address nor a CIDR network"))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }
}

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy; then the nearest
    /// address in `X-Forwarded-For` that is not a trusted proxy itself.
    pub fn client(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let mut client = peer;
        for hop in forwarded_for.unwrap_or("").rsplit(',') {
            let Ok(hop) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = hop;
            if !self.trusts(hop) {
                break;
            }
        }
        Some(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let none = TrustedProxies::default();
        assert_eq!(none.client(ip("10.0.0.1"), Some("1.2.3.4")), ip("10.0.0.1"));

        let proxies: TrustedProxies = "10.0.0.0/8, 192.168.1.7".parse().unwrap();
        assert_eq!(
            proxies.client(ip("10.0.0.1"), Some("1.2.3.4")),
            ip("1.2.3.4")
        );
        // A client's own forged entry sits left of the address the proxy saw.
        assert_eq!(
            proxies.client(ip("10.0.0.1"), Some("6.6.6.6, 1.2.3.4, 192.168.1.7")),
            ip("1.2.3.4")
        );
        assert_eq!(proxies.client(ip("10.0.0.1"), None), ip("10.0.0.1"));
        assert_eq!(proxies.client(ip("10.0.0.1"), Some("junk")), ip("10.0.0.1"));
        assert_eq!(
            proxies.client(ip("8.8.8.8"), Some("1.2.3.4")),
            ip("8.8.8.8")
        );
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
    }
}
