//! Where deliveries may go: a target's host is resolved and every address
//! checked before a subscription is accepted, and again, by the HTTP
//! client's resolver, at every connection — so a name that later resolves
//! to a private address (DNS rebinding) still reaches nothing private.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::hooks::is_public;

/// Why a target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the host does not resolve")]
    Unresolvable,
    #[error("the host resolves to {0}, which is not a public address")]
    NotPublic(IpAddr),
}

/// Checks a subscription's target: its host (an address, or every address
/// its name resolves to) must be public, unless `allow_private`.
pub async fn check(url: &url::Url, allow_private: bool) -> Result<(), TargetError> {
    let addresses = resolve(url).await?;
    check_addresses(&addresses, allow_private)
}

/// Every address of the URL's host: the literal one, or what the system
/// resolver answers for the name.
async fn resolve(url: &url::Url) -> Result<Vec<IpAddr>, TargetError> {
    let port = url.port_or_known_default().unwrap_or(443);
    match url.host() {
        Some(url::Host::Ipv4(ip)) => Ok(vec![IpAddr::V4(ip)]),
        Some(url::Host::Ipv6(ip)) => Ok(vec![IpAddr::V6(ip)]),
        Some(url::Host::Domain(name)) => {
            let found = tokio::net::lookup_host((name, port)).await.map_err(|_| TargetError::Unresolvable)?;
            let addresses: Vec<IpAddr> = found.map(|a| a.ip()).collect();
            if addresses.is_empty() {
                Err(TargetError::Unresolvable)
            } else {
                Ok(addresses)
            }
        }
        None => Err(TargetError::Unresolvable),
    }
}

/// The decision on resolved addresses: all must be public.
pub fn check_addresses(addresses: &[IpAddr], allow_private: bool) -> Result<(), TargetError> {
    match addresses.iter().find(|ip| !allow_private && !is_public(**ip)) {
        Some(ip) => Err(TargetError::NotPublic(*ip)),
        None => Ok(()),
    }
}

/// The HTTP client's resolver when private targets are not allowed: it
/// hands the connector only public addresses, and fails when there are none.
#[derive(Debug, Default)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = found.filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                let refused: Box<dyn std::error::Error + Send + Sync> =
                    format!("{} resolves to no public address", name.as_str()).into();
                return Err(refused);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// The resolver for [`reqwest::ClientBuilder::dns_resolver`], or none.
pub fn resolver(allow_private: bool) -> Option<Arc<PublicOnly>> {
    (!allow_private).then(|| Arc::new(PublicOnly))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decision_is_on_every_resolved_address() {
        let public: IpAddr = "93.184.216.34".parse().unwrap();
        let metadata: IpAddr = "169.254.169.254".parse().unwrap();
        assert_eq!(check_addresses(&[public], false), Ok(()));
        assert_eq!(check_addresses(&[public, metadata], false), Err(TargetError::NotPublic(metadata)));
        assert_eq!(check_addresses(&[public, metadata], true), Ok(()));
    }

    #[tokio::test]
    async fn literal_and_named_loopback_targets_are_refused_before_any_connection() {
        for raw in [
            "http://127.0.0.1/h",
            "http://[::1]:8080/h",
            "http://localhost/h",
            "https://10.1.2.3/h",
            "http://[::ffff:127.0.0.1]/",
        ] {
            let url = url::Url::parse(raw).unwrap();
            assert!(matches!(check(&url, false).await, Err(TargetError::NotPublic(_))), "{raw}");
            assert_eq!(check(&url, true).await, Ok(()), "{raw} with private targets allowed");
        }
    }
}
