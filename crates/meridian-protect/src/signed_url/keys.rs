//! The public keys CloudFront's key groups hold, by ID, and the encoding CloudFront uses for
//! its signatures and policies.

use std::collections::HashMap;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

use super::der::{self, PublicKeyDer};
use super::error::SignedError;

/// Public keys by ID (CloudFront's "public key ID", sent as `Key-Pair-Id`).
///
/// RSA keys (what CloudFront has always taken) and P-256 ECDSA keys (which the AWS CLI's
/// signer also produces signatures for) are accepted.
#[derive(Debug, Clone, Default)]
pub struct PublicKeys {
    keys: HashMap<String, PublicKeyDer>,
}

impl PublicKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) key `id` from PEM: a SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`,
    /// what CloudFront takes) or a PKCS#1 `BEGIN RSA PUBLIC KEY`.
    pub fn insert_pem(&mut self, id: &str, pem: &str) -> Result<(), SignedError> {
        let bad = |why| SignedError::BadKey {
            id: id.to_string(),
            why,
        };
        let block = der::pem(pem).ok_or_else(|| bad("not a PEM block"))?;
        let key = match block.label.as_str() {
            "PUBLIC KEY" => der::spki(&block.der).map_err(bad)?,
            "RSA PUBLIC KEY" => {
                der::rsa_components(&block.der)
                    .ok_or_else(|| bad("RSAPublicKey is not two INTEGERs"))?;
                PublicKeyDer::Rsa(block.der)
            }
            _ => return Err(bad("PEM label is neither PUBLIC KEY nor RSA PUBLIC KEY")),
        };
        if let PublicKeyDer::Rsa(ref k) = key {
            let bits = der::rsa_components(k).map_or(0, |(n, _)| n.len() * 8);
            if !(2048..=8192).contains(&bits) {
                return Err(bad("RSA modulus must be 2048 to 8192 bits"));
            }
        }
        self.keys.insert(id.to_string(), key);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn get(&self, id: &str) -> Option<&PublicKeyDer> {
        self.keys.get(id)
    }
}

/// Padding is accepted whether or not a signer kept it (CloudFront's own form keeps it as `_`).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes CloudFront's URL-safe base64 (`-` for `+`, `_` for `=`, `~` for `/`).
pub(crate) fn cf_decode(s: &str) -> Option<Vec<u8>> {
    let std: String = s
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '=',
            '~' => '/',
            c => c,
        })
        .collect();
    LENIENT.decode(std).ok()
}

/// Encodes in CloudFront's URL-safe base64.
pub fn cf_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .chars()
        .map(|c| match c {
            '+' => '-',
            '=' => '_',
            '/' => '~',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudfront_base64_swaps_the_three_characters() {
        let bytes = [0xfb, 0xff, 0xbf, 0x01];
        let enc = cf_encode(&bytes);
        assert_eq!(enc, "-~-~AQ__");
        assert_eq!(cf_decode(&enc).as_deref(), Some(&bytes[..]));
        assert_eq!(cf_decode("-~-~AQ").as_deref(), Some(&bytes[..]));
        assert!(cf_decode("not base64!").is_none());
    }

    #[test]
    fn garbage_pem_is_a_bad_key() {
        let mut keys = PublicKeys::new();
        let err = keys.insert_pem("K1", "hello").unwrap_err();
        assert_eq!(err.reason(), "bad_key");
        let err = keys
            .insert_pem(
                "K1",
                "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----",
            )
            .unwrap_err();
        assert_eq!(err.reason(), "bad_key");
        assert!(keys.is_empty());
    }
}
