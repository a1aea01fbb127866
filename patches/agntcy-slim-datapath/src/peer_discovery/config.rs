// Copyright AGNTCY Contributors (https://github.com/agntcy)
// SPDX-License-Identifier: Apache-2.0

//! Configuration types for peer discovery.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use slim_config::client::ClientConfig;

/// Topology for peer-to-peer connections within a replica set.
///
/// Currently only `FullMesh` is supported. Additional topologies may be
/// added in the future.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum PeerTopology {
    /// Every replica connects to every other replica (N*(N-1)/2 connections).
    /// Subscriptions are forwarded 1 hop.
    #[default]
    FullMesh,
}

/// A single static peer entry pairing a node identity with connection config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticPeerEntry {
    /// Unique node identifier of the remote peer.
    pub node_id: String,

    /// Client connection configuration (endpoint, TLS, auth, etc.).
    #[serde(flatten)]
    pub config: ClientConfig,
}

/// Top-level peer configuration.
///
/// When present in the service configuration, enables peer-to-peer route
/// synchronization between SLIM replicas. The peer group identity used for
/// mutual authentication is derived from the service-level `domain_name`.
///
/// # Example (static peers)
/// ```yaml
/// peers:
///   discovery:
///     type: static
///     peers:
///       - node_id: "slim-1"
///         endpoint: "slim-1:8080"
///       - node_id: "slim-2"
///         endpoint: "slim-2:8080"
///         tls_setting:
///           insecure: true
/// ```
///
/// # Example (kubernetes discovery)
/// ```yaml
/// peers:
///   discovery:
///     type: kubernetes
///     namespace: "default"
///     service_name: "my-service"
///     port: 8080
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Topology for peer connections. Defaults to `FullMesh`.
    #[serde(default)]
    pub topology: PeerTopology,

    /// Peer discovery backend configuration.
    pub discovery: PeerDiscoveryConfig,
}

/// Peer discovery backend configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type")]
pub enum PeerDiscoveryConfig {
    /// Static list of peer connections defined in configuration.
    /// Each entry requires a `node_id` plus the connection configuration fields.
    /// The `connection_type` field is forced to `Peer` regardless of what is set.
    #[serde(rename = "static")]
    Static {
        /// List of peer entries. Must contain at least one entry.
        #[serde(deserialize_with = "deserialize_non_empty_peers")]
        peers: Vec<StaticPeerEntry>,
    },

    /// Kubernetes-based peer discovery (watches EndpointSlices for a Service).
    #[serde(rename = "kubernetes")]
    Kubernetes {
        /// Kubernetes namespace to watch.
        namespace: String,
        /// Kubernetes Service name whose EndpointSlices to watch.
        service_name: String,
        /// Port number on which peer pods listen for dataplane connections.
        port: u16,
    },
}

/// Deserialize `peers` and reject empty lists.
fn deserialize_non_empty_peers<'de, D>(deserializer: D) -> Result<Vec<StaticPeerEntry>, D::Error>
where
    D: Deserializer<'de>,
{
    let peers = Vec::<StaticPeerEntry>::deserialize(deserializer)?;
    if peers.is_empty() {
        return Err(D::Error::custom("peers must not be empty"));
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_deserialize_peer_config_static_peers() {
        let yaml = r#"
            discovery:
              type: static
              peers:
                - node_id: "slim-1"
                  endpoint: "http://slim-1:8080"
                - node_id: "slim-2"
                  endpoint: "http://slim-2:8080"
        "#;

        let config: PeerConfig = serde_yaml::from_str(yaml).unwrap();
        match &config.discovery {
            PeerDiscoveryConfig::Static { peers } => {
                assert_eq!(peers.len(), 2);
                assert_eq!(peers[0].node_id, "slim-1");
                assert_eq!(peers[0].config.endpoint, "http://slim-1:8080");
                assert_eq!(peers[1].node_id, "slim-2");
                assert_eq!(peers[1].config.endpoint, "http://slim-2:8080");
            }
            _ => panic!("expected static discovery"),
        }
    }

    #[test]
    fn test_deserialize_peer_config_no_discovery_fails() {
        let yaml = r#"
            topology: full_mesh
        "#;

        let result: Result<PeerConfig, _> = serde_yaml::from_str(yaml);
        assert!(result.is_err(), "discovery is required");
    }

    #[test]
    fn test_deserialize_peer_config_empty_peers_fails() {
        let yaml = r#"
            discovery:
              type: static
              peers: []
        "#;

        let result: Result<PeerConfig, _> = serde_yaml::from_str(yaml);
        assert!(result.is_err(), "peers must not be empty");
    }

    #[test]
    fn test_deserialize_kubernetes_config() {
        let yaml = r#"
            discovery:
              type: kubernetes
              namespace: "default"
              service_name: "slim-svc"
              port: 8080
        "#;

        let config: PeerConfig = serde_yaml::from_str(yaml).unwrap();
        match &config.discovery {
            PeerDiscoveryConfig::Kubernetes {
                namespace,
                service_name,
                port,
            } => {
                assert_eq!(namespace, "default");
                assert_eq!(service_name, "slim-svc");
                assert_eq!(*port, 8080);
            }
            _ => panic!("expected kubernetes config"),
        }
    }

    #[test]
    fn test_reject_unknown_fields() {
        let yaml = r#"
            topology: full_mesh
            unknown_field: "oops"
        "#;

        let result: Result<PeerConfig, _> = serde_yaml::from_str(yaml);
        assert!(result.is_err());
    }

    #[test]
    fn test_topology_defaults_to_full_mesh() {
        let yaml = r#"
            discovery:
              type: static
              peers:
                - node_id: "slim-1"
                  endpoint: "http://slim-1:8080"
        "#;

        let config: PeerConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(config.topology, PeerTopology::FullMesh);
    }

    #[test]
    fn test_deserialize_full_mesh_topology_explicit() {
        let yaml = r#"
            topology: full_mesh
            discovery:
              type: static
              peers:
                - node_id: "slim-1"
                  endpoint: "http://slim-1:8080"
        "#;

        let config: PeerConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(config.topology, PeerTopology::FullMesh);
    }
}
