//! SHA-256 hashes.

use crate::bytes::fixed_bytes;
use sha2::{Digest, Sha256};

fixed_bytes!(
    /// A SHA-256 digest.
    Hash,
    32
);

impl Hash {
    pub const ZERO: Hash = Hash([0u8; 32]);

    pub fn of(data: &[u8]) -> Hash {
        Hash(Sha256::digest(data).into())
    }

    /// Hash of several byte strings concatenated, without building the concatenation.
    pub fn of_parts(parts: &[&[u8]]) -> Hash {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p);
        }
        Hash(h.finalize().into())
    }

    /// Hash of the canonical encoding of `value`.
    pub fn of_encoded<T: serde::Serialize + ?Sized>(value: &T) -> Hash {
        Hash::of(&crate::codec::encode(value))
    }

    /// `SHA-256(left || right)`, the node rule of every binary Merkle tree in the protocol.
    pub fn node(left: &Hash, right: &Hash) -> Hash {
        let mut buf = [0u8; 64];
        buf[..32].copy_from_slice(&left.0);
        buf[32..].copy_from_slice(&right.0);
        Hash::of(&buf)
    }
}

/// Root of a binary Merkle tree over `leaves` (`node = SHA-256(left || right)`).
///
/// An odd node at any level is carried up unchanged; the empty tree's root is [`Hash::ZERO`].
/// Used for `tx_root` and for validator-set hashes; the state commitment has its own fixed-width
/// tree (see `state::commitment`).
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Hash::ZERO;
    }
    let mut level: Vec<Hash> = leaves.to_vec();
    while level.len() > 1 {
        let next: Vec<Hash> = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => Hash::node(l, r),
                [single] => *single,
                _ => unreachable!("chunks(2) yields one or two items"),
            })
            .collect();
        level = next;
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        assert_eq!(
            Hash::of(b"abc").to_string(),
            "0xba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Hash::of_parts(&[b"a", b"bc"]), Hash::of(b"abc"));
    }

    #[test]
    fn merkle_root_shapes() {
        let a = Hash::of(b"a");
        let b = Hash::of(b"b");
        let c = Hash::of(b"c");
        assert_eq!(merkle_root(&[]), Hash::ZERO);
        assert_eq!(merkle_root(&[a]), a);
        assert_eq!(merkle_root(&[a, b]), Hash::node(&a, &b));
        assert_eq!(merkle_root(&[a, b, c]), Hash::node(&Hash::node(&a, &b), &c));
        assert_ne!(merkle_root(&[a, b]), merkle_root(&[b, a]));
    }
}
