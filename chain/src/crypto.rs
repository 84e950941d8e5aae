//! ed25519 keys and domain-separated signatures (SPEC §2).
//!
//! Every signed object signs `SHA-256(domain || chain_id || 0x00 || canonical bytes)`, with one
//! domain per kind, so a signature from one chain or kind can never be replayed as another.
//!
//! Verification is *cofactored* (`[8](sB - R - kA) = 0`, the ZIP-215 rule) both for single
//! signatures and for batches. ed25519-dalek's own `verify` and `verify_batch` are cofactorless,
//! and a cofactorless batch accepts a signature whose `R` carries a small torsion component with
//! probability up to 1/8 while single verification always rejects it. Nodes that verify the same
//! transaction singly (mempool) or in differently composed batches (blocks) would then disagree
//! on a block's validity. With the cofactored equation on both paths, batch and single verdicts
//! agree except with probability 2^-128, so a verified-signature cache is safe.

use crate::bytes::fixed_bytes;
use crate::hash::Hash;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::Signer;
use sha2::{Digest, Sha256, Sha512};
use std::collections::btree_map::{BTreeMap, Entry};

fixed_bytes!(
    /// An ed25519 public key (compressed Edwards point).
    PublicKey,
    32
);
fixed_bytes!(
    /// An ed25519 signature `R || s`.
    Signature,
    64
);

/// What a signature is for. Each kind signs under its own domain string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    Tx,
    Proposal,
    Vote,
    ViewChange,
    Receipt,
}

impl Domain {
    pub const fn tag(self) -> &'static [u8] {
        match self {
            Domain::Tx => b"AIT/TX/1",
            Domain::Proposal => b"AIT/PROPOSAL/1",
            Domain::Vote => b"AIT/VOTE/1",
            Domain::ViewChange => b"AIT/VIEWCHANGE/1",
            Domain::Receipt => b"AIT/RECEIPT/1",
        }
    }
}

/// The bytes a signature covers before hashing: `domain || chain_id || 0x00 || canonical bytes`.
pub fn sign_bytes<T: serde::Serialize + ?Sized>(
    domain: Domain,
    chain_id: &str,
    body: &T,
) -> Vec<u8> {
    let tag = domain.tag();
    let mut out = Vec::with_capacity(tag.len() + chain_id.len() + 1 + 128);
    out.extend_from_slice(tag);
    out.extend_from_slice(chain_id.as_bytes());
    out.push(0);
    crate::codec::encode_into(body, &mut out);
    out
}

/// The 32-byte digest that is actually signed: `SHA-256(sign_bytes)`.
pub fn signing_digest<T: serde::Serialize + ?Sized>(
    domain: Domain,
    chain_id: &str,
    body: &T,
) -> Hash {
    Hash(Sha256::digest(sign_bytes(domain, chain_id, body)).into())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum SigError {
    #[error("public key is not a valid curve point")]
    BadKey,
    #[error("public key has small order")]
    WeakKey,
    #[error("signature is malformed (R not a point or s not canonical)")]
    Malformed,
    #[error("signature does not verify")]
    Invalid,
}

/// A secret signing key. Never printed: `Debug` shows only the public half.
pub struct SecretKey(ed25519_dalek::SigningKey);

impl SecretKey {
    pub fn generate() -> SecretKey {
        SecretKey(ed25519_dalek::SigningKey::generate(&mut rand::rng()))
    }
    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        SecretKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }
    /// The 32-byte seed, for writing a key file.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }
    /// Signs a digest produced by [`signing_digest`].
    pub fn sign_digest(&self, digest: &Hash) -> Signature {
        Signature(self.0.sign(&digest.0).to_bytes())
    }
    pub fn sign<T: serde::Serialize + ?Sized>(
        &self,
        domain: Domain,
        chain_id: &str,
        body: &T,
    ) -> Signature {
        self.sign_digest(&signing_digest(domain, chain_id, body))
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(public: {})", self.public())
    }
}

/// A public key decompressed once, for repeated verification.
#[derive(Clone, Copy, Debug)]
pub struct VerifyingKey {
    bytes: PublicKey,
    point: EdwardsPoint,
}

impl VerifyingKey {
    pub fn new(pk: &PublicKey) -> Result<VerifyingKey, SigError> {
        let point = CompressedEdwardsY(pk.0)
            .decompress()
            .ok_or(SigError::BadKey)?;
        if point.is_small_order() {
            return Err(SigError::WeakKey);
        }
        Ok(VerifyingKey { bytes: *pk, point })
    }
    pub fn public_key(&self) -> &PublicKey {
        &self.bytes
    }
}

/// A signature split into its point and scalar, with `k = H(R || A || M)` computed.
struct Prepared {
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

fn prepare(key: &VerifyingKey, digest: &Hash, sig: &Signature) -> Result<Prepared, SigError> {
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&sig.0[..32]);
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&sig.0[32..]);
    let r = CompressedEdwardsY(r_bytes)
        .decompress()
        .ok_or(SigError::Malformed)?;
    let s =
        Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)).ok_or(SigError::Malformed)?;
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(key.bytes.0);
    h.update(digest.0);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    Ok(Prepared { r, s, k })
}

/// Verifies one signature over `digest` (cofactored equation).
pub fn verify(key: &VerifyingKey, digest: &Hash, sig: &Signature) -> Result<(), SigError> {
    let p = prepare(key, digest, sig)?;
    // sB - kA - R, then clear the cofactor.
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&(-p.k), &key.point, &p.s);
    if (sb_minus_ka - p.r).mul_by_cofactor().is_identity() {
        Ok(())
    } else {
        Err(SigError::Invalid)
    }
}

/// One signature to check in a batch.
pub struct BatchItem<'a> {
    pub key: &'a VerifyingKey,
    pub digest: &'a Hash,
    pub sig: &'a Signature,
}

/// Verifies all items at once. `Ok` iff every item verifies singly (up to probability 2^-128).
/// On `Err`, callers that need to know which item failed check them one by one.
///
/// The random weights are derived from the batch's own contents, so the check is deterministic
/// and needs no RNG.
pub fn verify_batch(items: &[BatchItem<'_>]) -> Result<(), SigError> {
    match items {
        [] => return Ok(()),
        [one] => return verify(one.key, one.digest, one.sig),
        _ => {}
    }
    let mut prepared = Vec::with_capacity(items.len());
    let mut seed = Sha256::new();
    seed.update(b"AIT/BATCH/1");
    for it in items {
        let p = prepare(it.key, it.digest, it.sig)?;
        seed.update(p.k.as_bytes());
        seed.update(it.sig.0);
        prepared.push(p);
    }
    let seed: [u8; 32] = seed.finalize().into();
    let zs: Vec<Scalar> = (0..items.len() as u64)
        .map(|i| {
            let d = Sha256::new()
                .chain_update(seed)
                .chain_update(i.to_le_bytes())
                .finalize();
            let mut z = [0u8; 32];
            z[..16].copy_from_slice(&d[..16]);
            Scalar::from_bytes_mod_order(z)
        })
        .collect();
    // -(Σ z_i s_i) B + Σ z_i R_i + Σ (z_i k_i) A_i = 0, cofactor cleared. The A terms are
    // summed per distinct key first: a sender with many txs in the batch adds one point to the
    // multiscalar multiplication, not one per signature.
    let b_coeff: Scalar = prepared.iter().zip(&zs).map(|(p, z)| z * p.s).sum();
    let mut key_terms: Vec<(Scalar, EdwardsPoint)> = Vec::with_capacity(items.len());
    let mut by_key: BTreeMap<&[u8; 32], usize> = BTreeMap::new();
    for ((p, z), it) in prepared.iter().zip(&zs).zip(items) {
        let c = z * p.k;
        match by_key.entry(&it.key.bytes.0) {
            Entry::Occupied(e) => key_terms[*e.get()].0 += c,
            Entry::Vacant(e) => {
                e.insert(key_terms.len());
                key_terms.push((c, it.key.point));
            }
        }
    }
    let scalars = std::iter::once(-b_coeff)
        .chain(zs.iter().copied())
        .chain(key_terms.iter().map(|(c, _)| *c));
    let points = std::iter::once(curve25519_dalek::constants::ED25519_BASEPOINT_POINT)
        .chain(prepared.iter().map(|p| p.r))
        .chain(key_terms.iter().map(|(_, a)| *a));
    let sum = EdwardsPoint::vartime_multiscalar_mul(scalars, points);
    if sum.mul_by_cofactor().is_identity() {
        Ok(())
    } else {
        Err(SigError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;

    fn signed(i: u8) -> (VerifyingKey, Hash, Signature) {
        let sk = SecretKey::from_seed([i; 32]);
        let digest = signing_digest(Domain::Tx, "test", &(i as u64));
        let sig = sk.sign_digest(&digest);
        (
            VerifyingKey::new(&sk.public()).expect("valid key"),
            digest,
            sig,
        )
    }

    #[test]
    fn single_and_batch_accept_valid() {
        let items: Vec<_> = (1..=20).map(signed).collect();
        for (k, d, s) in &items {
            assert_eq!(verify(k, d, s), Ok(()));
        }
        let batch: Vec<_> = items
            .iter()
            .map(|(key, digest, sig)| BatchItem { key, digest, sig })
            .collect();
        assert_eq!(verify_batch(&batch), Ok(()));
    }

    #[test]
    fn rejects_wrong_message_key_domain_or_chain() {
        let (k, d, s) = signed(1);
        let (k2, d2, _) = signed(2);
        assert_eq!(verify(&k, &d2, &s), Err(SigError::Invalid));
        assert_eq!(verify(&k2, &d, &s), Err(SigError::Invalid));
        let other_domain = signing_digest(Domain::Vote, "test", &1u64);
        let other_chain = signing_digest(Domain::Tx, "other", &1u64);
        assert_eq!(verify(&k, &other_domain, &s), Err(SigError::Invalid));
        assert_eq!(verify(&k, &other_chain, &s), Err(SigError::Invalid));
    }

    #[test]
    fn batch_rejects_one_bad_signature_anywhere() {
        let mut items: Vec<_> = (1..=16).map(signed).collect();
        for bad in [0usize, 7, 15] {
            let saved = items[bad].2;
            items[bad].2 .0[40] ^= 1;
            let batch: Vec<_> = items
                .iter()
                .map(|(key, digest, sig)| BatchItem { key, digest, sig })
                .collect();
            assert!(verify_batch(&batch).is_err(), "bad item {bad} accepted");
            items[bad].2 = saved;
        }
    }

    /// One key signing many messages shares one point in the batch equation: still every
    /// signature counts, and a bad one (or one from another key) fails the batch.
    #[test]
    fn batch_with_repeated_keys_checks_every_signature() {
        let sk = SecretKey::from_seed([9; 32]);
        let key = VerifyingKey::new(&sk.public()).expect("valid key");
        let mut items: Vec<_> = (0..12u64)
            .map(|n| {
                let digest = signing_digest(Domain::Tx, "test", &n);
                (key, digest, sk.sign_digest(&digest))
            })
            .chain((1..=4).map(signed))
            .collect();
        let batch = |items: &[(VerifyingKey, Hash, Signature)]| {
            let b: Vec<_> = items
                .iter()
                .map(|(key, digest, sig)| BatchItem { key, digest, sig })
                .collect();
            verify_batch(&b)
        };
        assert_eq!(batch(&items), Ok(()));
        for bad in [0usize, 5, 11, 13] {
            let saved = items[bad].2;
            items[bad].2 .0[40] ^= 1;
            assert!(batch(&items).is_err(), "bad item {bad} accepted");
            items[bad].2 = saved;
        }
        items.swap(2, 3);
        assert_eq!(batch(&items), Ok(()), "same pairs, reordered");
        // Two of the key's signatures swapped between its messages.
        let (d2, d3) = (items[2].1, items[3].1);
        items[2].1 = d3;
        items[3].1 = d2;
        assert!(
            batch(&items).is_err(),
            "signatures over other messages accepted"
        );
    }

    #[test]
    fn rejects_non_canonical_s_and_bad_points() {
        let (k, d, mut s) = signed(3);
        s.0[63] |= 0xf0; // s >= l
        assert_eq!(verify(&k, &d, &s), Err(SigError::Malformed));
        // y = 2 is not on the curve.
        let mut not_point = [0u8; 32];
        not_point[0] = 2;
        assert_eq!(
            VerifyingKey::new(&PublicKey(not_point)).err(),
            Some(SigError::BadKey)
        );
        let identity = PublicKey(EdwardsPoint::default().compress().0);
        assert_eq!(VerifyingKey::new(&identity).err(), Some(SigError::WeakKey));
    }

    /// Builds a signature `(R + T, s)` with `T` a torsion point of order 8: it satisfies the
    /// cofactored equation but not the cofactorless one that ed25519-dalek uses.
    fn torsioned_signature(seed: [u8; 32], digest: &Hash) -> (VerifyingKey, Signature) {
        let h = Sha512::digest(seed);
        let mut a = [0u8; 32];
        a.copy_from_slice(&h[..32]);
        a[0] &= 248;
        a[31] &= 127;
        a[31] |= 64;
        let a = Scalar::from_bytes_mod_order(a);
        let pk = SecretKey::from_seed(seed).public();
        let key = VerifyingKey::new(&pk).expect("valid key");
        let r = Scalar::from(123_456_789u64);
        let r_twisted = (curve25519_dalek::constants::ED25519_BASEPOINT_POINT * r
            + EIGHT_TORSION[1])
            .compress();
        let mut hk = Sha512::new();
        hk.update(r_twisted.as_bytes());
        hk.update(pk.0);
        hk.update(digest.0);
        let k = Scalar::from_bytes_mod_order_wide(&hk.finalize().into());
        let s = r + k * a;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(r_twisted.as_bytes());
        sig[32..].copy_from_slice(s.as_bytes());
        (key, Signature(sig))
    }

    #[test]
    fn torsioned_r_gets_same_verdict_singly_and_in_batch() {
        let digest = Hash::of(b"torsion");
        let (key, sig) = torsioned_signature([5; 32], &digest);
        let dalek = ed25519_dalek::VerifyingKey::from_bytes(&key.public_key().0).expect("key");
        let dalek_sig = ed25519_dalek::Signature::from_bytes(&sig.0);
        assert!(
            dalek.verify_strict(&digest.0, &dalek_sig).is_err(),
            "cofactorless rejects it"
        );
        assert_eq!(verify(&key, &digest, &sig), Ok(()), "cofactored accepts it");
        for n in 1..10u8 {
            let mut items: Vec<_> = (10..10 + n).map(signed).collect();
            items.push((key, digest, sig));
            let batch: Vec<_> = items
                .iter()
                .map(|(key, digest, sig)| BatchItem { key, digest, sig })
                .collect();
            assert_eq!(
                verify_batch(&batch),
                Ok(()),
                "batch of {n} agrees with single"
            );
        }
    }

    #[test]
    fn secret_key_debug_hides_secret() {
        let sk = SecretKey::from_seed([9; 32]);
        let shown = format!("{sk:?}");
        assert!(!shown.contains(&hex::encode([9u8; 32])));
        assert!(shown.contains(&sk.public().to_string()));
    }
}
