//! Abuse limits: who a call comes from, and rate limits per client or per account.
//!
//! A refused call is RESOURCE_EXHAUSTED with a retry hint (`google.rpc.RetryInfo`, see
//! [`crate::error::ServiceError::retry_after`]), so a well-behaved client knows when to come back.

use std::{
    hash::Hash,
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    time::Duration,
};

use governor::{Quota, RateLimiter, clock::Clock as _};
use ipnet::IpNet;

/// Proxies whose `X-Forwarded-For` is believed: the front door, the Ingress controller.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// A comma-separated list of addresses and networks (`127.0.0.1`, `10.0.0.0/8`); empty for
    /// none.
    pub fn parse(list: &str) -> anyhow::Result<Self> {
        list.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| anyhow::anyhow!("{item:?} is not an address or a network"))
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .map(Self)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&address))
    }
}

/// The address a call comes from: the connection's peer, or, when the peer is a trusted proxy,
/// the last address in `X-Forwarded-For` that is not a trusted proxy itself (the ones before it
/// are the client's to write, so they are not believed). `None` when the server does not know
/// its peer (tests calling a service in process).
pub fn client_ip(
    peer: Option<IpAddr>,
    metadata: &tonic::metadata::MetadataMap,
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.trusts(peer) {
        return Some(peer);
    }
    let forwarded = metadata
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(address) => {
                client = address;
                if !trusted.trusts(address) {
                    break;
                }
            }
            // Garbage where an address should be: the last good one is as far as it goes.
            Err(_) => break,
        }
    }
    Some(client)
}

/// The key a client's calls are counted under: its address, or for IPv6 its /64 network (one
/// machine commonly has a whole /64 to pick addresses from).
pub fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            IpAddr::V6(Ipv6Addr::new(
                segments[0],
                segments[1],
                segments[2],
                segments[3],
                0,
                0,
                0,
                0,
            ))
        }
    }
}

/// Most keys a limit keeps before it forgets the ones that are full again.
const MAX_KEYS: usize = 100_000;

/// At most `n` calls a minute (or an hour) per key (all `n` may come at once), or no limit.
pub struct RateLimit<K: Hash + Eq + Clone> {
    limiter: Option<governor::DefaultKeyedRateLimiter<K>>,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for RateLimit<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit").field("on", &self.limiter.is_some()).finish()
    }
}

impl<K: Hash + Eq + Clone> RateLimit<K> {
    /// `per_minute` calls a minute per key; 0 for no limit.
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            limiter: NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
        }
    }

    /// `per_hour` calls an hour per key (all may come at once); 0 for no limit.
    pub fn per_hour(per_hour: u32) -> Self {
        Self { limiter: NonZeroU32::new(per_hour).map(|n| RateLimiter::keyed(Quota::per_hour(n))) }
    }

    /// Counts a call of `key`: `Err` with how long until one more is allowed when it is over.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        if limiter.len() > MAX_KEYS {
            limiter.retain_recent();
        }
        limiter.check_key(key).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::DefaultClock::default().now())
        })
    }
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataMap;

    use super::*;

    fn forwarded(value: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert("x-forwarded-for", value.parse().unwrap());
        metadata
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // From the proxy: the client it names.
        let via_proxy = client_ip(Some(ip("10.1.2.3")), &forwarded("203.0.113.7"), &proxies);
        assert_eq!(via_proxy, Some(ip("203.0.113.7")));
        // A client's own X-Forwarded-For, through the proxy: only the last hop is believed.
        let spoofed = forwarded("1.1.1.1, 203.0.113.7");
        assert_eq!(client_ip(Some(ip("10.1.2.3")), &spoofed, &proxies), Some(ip("203.0.113.7")));
        // Two trusted hops (the front door behind the Ingress).
        let chain = forwarded("203.0.113.7, 127.0.0.1");
        assert_eq!(client_ip(Some(ip("10.0.0.9")), &chain, &proxies), Some(ip("203.0.113.7")));
        // Not from a proxy: the header is the client's own and is ignored.
        let direct = client_ip(Some(ip("198.51.100.4")), &forwarded("1.1.1.1"), &proxies);
        assert_eq!(direct, Some(ip("198.51.100.4")));
        // A proxy that forwards nothing, or garbage: the proxy itself.
        assert_eq!(
            client_ip(Some(ip("127.0.0.1")), &MetadataMap::new(), &proxies),
            Some(ip("127.0.0.1"))
        );
        let garbage = client_ip(Some(ip("127.0.0.1")), &forwarded("not an address"), &proxies);
        assert_eq!(garbage, Some(ip("127.0.0.1")));
        assert!(TrustedProxies::parse("10.0.0.0/99").is_err());
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")), ip("2001:db8:1:2::"));
    }

    #[test]
    fn a_limit_refuses_past_its_burst_and_says_when_to_return() {
        let limit = RateLimit::per_minute(3);
        for _ in 0..3 {
            limit.check(&"a").unwrap();
        }
        let wait = limit.check(&"a").unwrap_err();
        assert!(wait > Duration::from_secs(10) && wait <= Duration::from_secs(20), "{wait:?}");
        limit.check(&"b").unwrap();
        let off = RateLimit::per_minute(0);
        for _ in 0..1000 {
            off.check(&"a").unwrap();
        }
    }
}
