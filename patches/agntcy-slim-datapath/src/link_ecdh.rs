// Copyright AGNTCY Contributors (https://github.com/agntcy)
// SPDX-License-Identifier: Apache-2.0

//! X25519 ECDH + HKDF-SHA256 for per-inter-node-link HMAC keys.
//!
//! Native uses `aws_lc_rs`; the browser build uses the pure-Rust
//! `x25519-dalek` + `hkdf` + `sha2` crates, seeded from the workspace
//! `getrandom` (0.4, `wasm_js` backend). Both implement the same X25519 DH and
//! HKDF-SHA256 expansion, so a native↔browser link derives the same key.

use crate::header_mac::{HeaderMacError, HeaderMacSession};

/// Wire encoding length for an X25519 public key in this protocol.
pub const X25519_PUBLIC_KEY_LEN: usize = 32;

pub const ML_KEM768_PUBLIC_KEY_LEN: usize = 1184;
pub const ML_KEM768_CIPHERTEXT_LEN: usize = 1088;

pub(crate) enum HkdfInfo {
    Classical,
    PostQuantum,
}

pub type MlKem768SecretKey = backend::MlKem768SecretKey;

pub fn generate_mlkem768() -> Result<(MlKem768SecretKey, Vec<u8>), HeaderMacError> {
    backend::generate_mlkem768()
}

pub fn encapsulate_mlkem768(pk: &[u8]) -> Result<(Vec<u8>, [u8; 32]), HeaderMacError> {
    backend::encapsulate_mlkem768(pk)
}

pub fn decapsulate_mlkem768(sk: MlKem768SecretKey, ct: &[u8]) -> Result<[u8; 32], HeaderMacError> {
    backend::decapsulate_mlkem768(sk, ct)
}

pub fn derive_header_mac_hybrid(
    x25519_sk: EphemeralKey,
    peer_x25519_pk: &[u8],
    mlkem_shared: &[u8; 32],
    link_id: &str,
) -> Result<HeaderMacSession, HeaderMacError> {
    backend::derive_hybrid(x25519_sk, peer_x25519_pk, mlkem_shared, link_id)
}

impl HkdfInfo {
    pub(crate) const fn to_bytes(&self) -> &'static [u8] {
        match self {
            Self::Classical => b"SLIM-DP-inter-node-hmac-v1",
            Self::PostQuantum => b"SLIM-DP-inter-node-hmac-v1-pq",
        }
    }
}

// ECDH + HKDF backend selection. Native uses `aws_lc_rs`; the browser build uses
// the pure-Rust `x25519-dalek` + `hkdf` + `sha2` crates. Both implement the same
// X25519 DH and HKDF-SHA256 expansion, so a native↔browser link derives the same
// key. Each backend exposes the same surface (`EphemeralKey`, `generate`,
// `derive`), so the public functions below are one-line forwarders with no
// `#[cfg]`.
#[cfg(not(target_arch = "wasm32"))]
#[path = "link_ecdh/backend_awslc.rs"]
mod backend;
#[cfg(target_arch = "wasm32")]
#[path = "link_ecdh/backend_pure.rs"]
mod backend;

// The pure backend is additionally compiled into native test builds (under a
// distinct name) so the parity tests can exercise it. On wasm the production
// backend already *is* the pure one.
#[cfg(all(test, not(target_arch = "wasm32")))]
#[path = "link_ecdh/backend_pure.rs"]
mod backend_pure;

// Both backends again, this time `pub` and keyed by their own name rather than
// by target, so `crates/datapath/fuzz` can call each directly and assert they
// reach the same accept/reject decision on identical peer-supplied bytes (a
// divergence between them is itself a bug). Gated behind `fuzzing` so this
// widened surface never leaks into the default public API; native-only
// because on wasm32 `backend` already *is* the pure one, so there is nothing
// to compare it against.
#[cfg(all(feature = "fuzzing", not(target_arch = "wasm32")))]
#[path = "link_ecdh/backend_awslc.rs"]
pub mod fuzzing_backend_awslc;
#[cfg(all(feature = "fuzzing", not(target_arch = "wasm32")))]
#[path = "link_ecdh/backend_pure.rs"]
pub mod fuzzing_backend_pure;

/// Opaque ephemeral private key, backend-specific. Held between
/// [`generate_x25519_ephemeral`] and [`derive_header_mac_from_ecdh`].
pub type EphemeralKey = backend::EphemeralKey;

/// Generate an ephemeral X25519 keypair for link negotiation.
pub fn generate_x25519_ephemeral() -> Result<(EphemeralKey, Vec<u8>), HeaderMacError> {
    backend::generate()
}

/// Derive a [`HeaderMacSession`] from our ephemeral secret and the peer's public key.
pub fn derive_header_mac_from_ecdh(
    my_private: EphemeralKey,
    peer_public: &[u8],
    link_id: &str,
) -> Result<HeaderMacSession, HeaderMacError> {
    backend::derive(my_private, peer_public, link_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::utils::DEFAULT_TTL;

    // The pure backend under its native-test name, or the production backend on
    // wasm (where it already is the pure one). Used by the parity tests below.
    #[cfg(target_arch = "wasm32")]
    use super::backend as backend_pure;
    #[cfg(not(target_arch = "wasm32"))]
    use super::backend_pure;

    fn empty_header() -> crate::api::proto::dataplane::v1::SlimHeader {
        crate::api::proto::dataplane::v1::SlimHeader {
            source: None,
            destination: None,
            identity: "i".into(),
            fanout: 0,
            version: String::new(),
            recv_from: None,
            forward_to: None,
            incoming_conn: None,
            error: None,
            header_mac: None,
            ttl: DEFAULT_TTL,
            e2e_header_sig: None,
        }
    }

    #[test]
    fn ecdh_hkdf_matches_between_initiator_and_responder() {
        let link_id = uuid::Uuid::new_v4().to_string();
        let (init_sk, init_pk) = generate_x25519_ephemeral().unwrap();
        let (resp_sk, resp_pk) = generate_x25519_ephemeral().unwrap();
        let a = derive_header_mac_from_ecdh(init_sk, resp_pk.as_slice(), &link_id).unwrap();
        let b = derive_header_mac_from_ecdh(resp_sk, init_pk.as_slice(), &link_id).unwrap();
        let mut h = empty_header();
        a.sign_slim_header(&mut h, &link_id).unwrap();
        b.verify_slim_header(&h, &link_id).unwrap();
    }

    // Drives the browser ECDH+HKDF backend on the native coverage run: two peers
    // negotiate over the pure-Rust path and derive a matching link MAC key, so a
    // header signed by one verifies with the other. The public key wire length
    // also matches the protocol constant.
    #[test]
    fn pure_ecdh_backend_peers_agree() {
        let link_id = uuid::Uuid::new_v4().to_string();
        let (init_sk, init_pk) = backend_pure::generate().unwrap();
        let (resp_sk, resp_pk) = backend_pure::generate().unwrap();
        assert_eq!(init_pk.len(), X25519_PUBLIC_KEY_LEN);
        assert_eq!(resp_pk.len(), X25519_PUBLIC_KEY_LEN);
        assert_ne!(init_pk, resp_pk, "distinct keypairs");

        let initiator = backend_pure::derive(init_sk, &resp_pk, &link_id).unwrap();
        let responder = backend_pure::derive(resp_sk, &init_pk, &link_id).unwrap();

        let mut h = empty_header();
        initiator.sign_slim_header(&mut h, &link_id).unwrap();
        responder.verify_slim_header(&h, &link_id).unwrap();
    }

    // A different link_id (HKDF salt) yields a different key, so a header signed
    // for one link must not verify on another even with the same peers.
    #[test]
    fn pure_ecdh_backend_key_is_bound_to_link_id() {
        let (init_sk, init_pk) = backend_pure::generate().unwrap();
        let (resp_sk, resp_pk) = backend_pure::generate().unwrap();

        let a = backend_pure::derive(init_sk, &resp_pk, "link-a").unwrap();
        let b = backend_pure::derive(resp_sk, &init_pk, "link-b").unwrap();

        let mut h = empty_header();
        a.sign_slim_header(&mut h, "link-a").unwrap();
        assert!(
            b.verify_slim_header(&h, "link-b").is_err(),
            "keys derived under different link_ids must not interoperate"
        );
    }

    // A malformed peer public key (wrong length) is rejected by key agreement.
    #[test]
    fn pure_ecdh_backend_rejects_bad_peer_key() {
        let (sk, _pk) = backend_pure::generate().unwrap();
        let err = backend_pure::derive(sk, &[0u8; 8], "link").unwrap_err();
        assert!(matches!(err, HeaderMacError::KeyAgreement));
    }

    // All-zero is a valid-length but non-contributory (low-order) X25519 public
    // key: a peer sending it can force the shared secret to a publicly known
    // value regardless of our private key (see `SharedSecret::was_contributory`
    // docs). Regression test for a real divergence the datapath fuzz targets
    // (crates/datapath/fuzz) found: `backend_awslc` already rejects this, but
    // `backend_pure::derive` silently accepted it before this fix.
    #[test]
    fn pure_ecdh_backend_rejects_non_contributory_peer_key() {
        let (sk, _pk) = backend_pure::generate().unwrap();
        let err = backend_pure::derive(sk, &[0u8; X25519_PUBLIC_KEY_LEN], "link").unwrap_err();
        assert!(matches!(err, HeaderMacError::KeyAgreement));
    }

    // Same non-contributory-key check, for the hybrid (X25519 + ML-KEM-768)
    // derivation path.
    #[test]
    fn pure_ecdh_backend_rejects_non_contributory_peer_key_hybrid() {
        let (sk, _pk) = backend_pure::generate().unwrap();
        let mlkem_shared = [0u8; 32];
        let err =
            backend_pure::derive_hybrid(sk, &[0u8; X25519_PUBLIC_KEY_LEN], &mlkem_shared, "link")
                .unwrap_err();
        assert!(matches!(err, HeaderMacError::KeyAgreement));
    }

    #[test]
    fn mlkem768_pure_encap_matches_awslc_decap() {
        use super::backend as backend_awslc;

        let (aws_dk, aws_pk) = backend_awslc::generate_mlkem768().unwrap();
        assert_eq!(aws_pk.len(), ML_KEM768_PUBLIC_KEY_LEN);

        let (ct, pure_shared) = backend_pure::encapsulate_mlkem768(&aws_pk).unwrap();
        assert_eq!(ct.len(), ML_KEM768_CIPHERTEXT_LEN);

        let aws_shared = backend_awslc::decapsulate_mlkem768(aws_dk, &ct).unwrap();
        assert_eq!(pure_shared, aws_shared);
    }

    #[test]
    fn mlkem768_awslc_encap_matches_pure_decap() {
        use super::backend as backend_awslc;

        let (pure_dk, pure_pk) = backend_pure::generate_mlkem768().unwrap();
        let (ct, aws_shared) = backend_awslc::encapsulate_mlkem768(&pure_pk).unwrap();
        let pure_shared = backend_pure::decapsulate_mlkem768(pure_dk, &ct).unwrap();
        assert_eq!(pure_shared, aws_shared);
    }

    #[test]
    fn hybrid_link_mac_matches_between_awslc_and_pure() {
        use super::backend as backend_awslc;

        let link_id = uuid::Uuid::new_v4().to_string();
        let (init_x_sk, init_x_pk) = backend_pure::generate().unwrap();
        let (resp_x_sk, resp_x_pk) = backend_awslc::generate().unwrap();

        // Simulate the real wire protocol: responder (awslc) generates the KEM
        // keypair, initiator (pure) encapsulates, responder decapsulates.
        let (resp_ml_dk, resp_ml_pk) = backend_awslc::generate_mlkem768().unwrap();
        let (ct, init_ml_shared) = backend_pure::encapsulate_mlkem768(&resp_ml_pk).unwrap();
        let resp_ml_shared = backend_awslc::decapsulate_mlkem768(resp_ml_dk, &ct).unwrap();

        let initiator =
            backend_pure::derive_hybrid(init_x_sk, &resp_x_pk, &init_ml_shared, &link_id).unwrap();
        let responder =
            backend_awslc::derive_hybrid(resp_x_sk, &init_x_pk, &resp_ml_shared, &link_id).unwrap();

        let mut h = empty_header();
        initiator.sign_slim_header(&mut h, &link_id).unwrap();
        responder.verify_slim_header(&h, &link_id).unwrap();
    }
}
