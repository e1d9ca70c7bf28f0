//! Just enough PEM and DER to read the public keys CloudFront takes (SubjectPublicKeyInfo)
//! and the older PKCS#1 form, and to take a public key apart for a JWK. A hand-written
//! reader keeps the dependency list to `ring` and `base64`; it accepts definite lengths
//! only, as DER requires.

use base64::Engine as _;

/// A PEM block's label and its decoded body.
pub(crate) struct Pem {
    pub label: String,
    pub der: Vec<u8>,
}

/// The first PEM block in `text`, or None when there is none or its base64 is broken.
pub(crate) fn pem(text: &str) -> Option<Pem> {
    let begin = text.find("-----BEGIN ")?;
    let rest = &text[begin + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_string();
    let body = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let body = &body[..body.find(&end_marker)?];
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    Some(Pem { label, der })
}

/// One DER element: its tag and contents.
pub(crate) struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
}

pub(crate) const SEQUENCE: u8 = 0x30;
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const BIT_STRING: u8 = 0x03;
pub(crate) const OID: u8 = 0x06;

/// Reads one element from the front of `input`; returns it and what follows.
pub(crate) fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // multi-byte tags never occur in the structures we read
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((
        Tlv {
            tag,
            value: &rest[..len],
        },
        &rest[len..],
    ))
}

/// Reads one element that must have `tag`.
pub(crate) fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (tlv, rest) = read(input)?;
    (tlv.tag == tag).then_some((tlv.value, rest))
}

/// rsaEncryption, 1.2.840.113549.1.1.1
pub(crate) const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey, 1.2.840.10045.2.1
pub(crate) const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 (P-256), 1.2.840.10045.3.1.7
pub(crate) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// A public key as ring verifies it: an RSA key as PKCS#1 RSAPublicKey DER, a P-256 key
/// as its uncompressed point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PublicKeyDer {
    Rsa(Vec<u8>),
    P256(Vec<u8>),
}

/// Takes a SubjectPublicKeyInfo apart.
pub(crate) fn spki(der: &[u8]) -> Result<PublicKeyDer, &'static str> {
    let (outer, rest) = expect(der, SEQUENCE).ok_or("not a DER SEQUENCE")?;
    if !rest.is_empty() {
        return Err("trailing bytes after the key");
    }
    let (alg, after_alg) = expect(outer, SEQUENCE).ok_or("no AlgorithmIdentifier")?;
    let (oid, params) = expect(alg, OID).ok_or("no algorithm OID")?;
    let (bits, tail) = expect(after_alg, BIT_STRING).ok_or("no subjectPublicKey BIT STRING")?;
    if !tail.is_empty() {
        return Err("trailing bytes in SubjectPublicKeyInfo");
    }
    let (&unused, key) = bits.split_first().ok_or("empty BIT STRING")?;
    if unused != 0 {
        return Err("BIT STRING with unused bits");
    }
    if oid == OID_RSA {
        rsa_components(key).ok_or("RSAPublicKey is not two INTEGERs")?;
        Ok(PublicKeyDer::Rsa(key.to_vec()))
    } else if oid == OID_EC {
        let (curve, _) = expect(params, OID).ok_or("EC key without a named curve")?;
        if curve != OID_P256 {
            return Err("EC key on a curve other than P-256");
        }
        if key.len() != 65 || key[0] != 0x04 {
            return Err("EC point is not an uncompressed P-256 point");
        }
        Ok(PublicKeyDer::P256(key.to_vec()))
    } else {
        Err("key algorithm is neither RSA nor EC")
    }
}

/// The modulus and exponent of a PKCS#1 RSAPublicKey, without leading zero bytes.
pub(crate) fn rsa_components(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (seq, rest) = expect(der, SEQUENCE)?;
    if !rest.is_empty() {
        return None;
    }
    let (n, after_n) = expect(seq, INTEGER)?;
    let (e, tail) = expect(after_n, INTEGER)?;
    if !tail.is_empty() || n.is_empty() || e.is_empty() {
        return None;
    }
    Some((strip_zeros(n), strip_zeros(e)))
}

fn strip_zeros(mut v: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = v {
        v = rest;
    }
    v
}

/// Writes a PKCS#1 RSAPublicKey from big-endian modulus and exponent, the form ring
/// verifies with.
pub(crate) fn rsa_public_key(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    write_integer(&mut body, n);
    write_integer(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(SEQUENCE);
    write_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

fn write_integer(out: &mut Vec<u8>, v: &[u8]) {
    let v = strip_zeros(v);
    let pad = v.first().is_none_or(|b| b & 0x80 != 0);
    out.push(INTEGER);
    write_len(out, v.len() + pad as usize);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(v);
}

fn write_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_public_key_round_trips_through_the_reader() {
        let n = [0x00, 0xc3, 0x01, 0x02];
        let der = rsa_public_key(&n, &[1, 0, 1]);
        let (rn, re) = rsa_components(&der).expect("parses");
        assert_eq!(rn, &[0xc3, 0x01, 0x02]);
        assert_eq!(re, &[1, 0, 1]);
    }

    #[test]
    fn truncated_and_long_lengths_are_refused() {
        assert!(read(&[0x30, 0x05, 0x01]).is_none());
        assert!(read(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert!(read(&[]).is_none());
        assert!(spki(&[0x30, 0x00]).is_err());
    }

    #[test]
    fn pem_without_end_marker_is_refused() {
        assert!(pem("-----BEGIN PUBLIC KEY-----\nAAAA\n").is_none());
        let p = pem("junk\n-----BEGIN X-----\nAAEC\n-----END X-----\n").expect("pem");
        assert_eq!(p.label, "X");
        assert_eq!(p.der, vec![0, 1, 2]);
    }
}
