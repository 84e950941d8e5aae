//! The per-block state journal: a block's state changes as one stored record.
//!
//! With write-back (see [`super::StoreConfig::write_back_bytes`]) a block's batch holds its
//! state changes as one `j/<height>` record instead of every bucket they touch; buckets are
//! written later, once, after several blocks changed them. On open, the records still stored
//! are replayed in height order over the stored buckets. Replay is idempotent: every key ends
//! at the value of the last record that set it, whatever version its stored bucket holds, so a
//! bucket written at any height the journal still covers is brought up to the head.
//!
//! Layout (not consensus-critical: only this node reads it): `u64` LE entry count, then per
//! entry `u32` LE key length, key, and `0` (delete) or `1`, `u32` LE value length, value.

use crate::state::StateChanges;

pub(crate) fn encode(changes: &StateChanges) -> Vec<u8> {
    let size: usize = changes
        .iter()
        .map(|(k, v)| 9 + k.len() + v.as_ref().map_or(0, |v| 4 + v.len()))
        .sum();
    let mut out = Vec::with_capacity(8 + size);
    out.extend_from_slice(&(changes.len() as u64).to_le_bytes());
    for (k, v) in changes {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
        match v {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v);
            }
        }
    }
    out
}

/// Decodes a record, refusing anything malformed (truncated, trailing bytes, bad tags).
pub(crate) fn decode(bytes: &[u8]) -> Result<StateChanges, &'static str> {
    let mut rest = bytes;
    let mut take = |n: usize| -> Result<&[u8], &'static str> {
        if n > rest.len() {
            return Err("truncated");
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let count = u64::from_le_bytes(take(8)?.try_into().map_err(|_| "truncated")?);
    // Every entry takes at least 9 bytes, so an absurd count cannot reserve much.
    let mut changes =
        StateChanges::with_capacity((count as usize).min(bytes.len() / 9), bytes.len());
    for _ in 0..count {
        let klen = le32(take(4)?);
        let k = take(klen)?;
        let v = match take(1)?[0] {
            0 => None,
            1 => {
                let vlen = le32(take(4)?);
                Some(take(vlen)?)
            }
            _ => return Err("bad value tag"),
        };
        changes
            .push(k, v)
            .map_err(|_| "keys out of order or repeated")?;
    }
    if !rest.is_empty() {
        return Err("trailing bytes");
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let c: StateChanges = [
            (b"a".as_slice(), Some(b"1".as_slice())),
            (b"bb", None),
            (b"c", Some(b"")),
        ]
        .into_iter()
        .collect();
        let bytes = encode(&c);
        assert_eq!(decode(&bytes), Ok(c.clone()));
        assert_eq!(
            decode(&encode(&StateChanges::new())),
            Ok(StateChanges::new())
        );
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let mut bad_tag = bytes.clone();
        bad_tag[8 + 4 + 1] = 7;
        assert!(decode(&bad_tag).is_err());
        let mut huge = bytes;
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
        // Entries in any order but the key order are refused: the record `a`, `a`.
        let one = encode(&[(b"a".as_slice(), None::<&[u8]>)].into_iter().collect());
        let mut twice = 2u64.to_le_bytes().to_vec();
        twice.extend_from_slice(&one[8..]);
        twice.extend_from_slice(&one[8..]);
        assert_eq!(decode(&twice), Err("keys out of order or repeated"));
    }
}
