//! What a light peer keeps, so a restart resumes where it stopped instead of re-downloading:
//! every verified header with its certificate, the trust it reached, and any conflicting
//! certified headers it saw (SPEC §6: kept as evidence; the height is no longer trusted).
//!
//! A verified run and the trust it leads to are one atomic write, flushed before the headers
//! are reported, as blocks are in the full store. Opening checks that the stored trust is the
//! header stored at its height, so a damaged store is named, not silently followed.

use super::{CertifiedHeader, Trusted};
use crate::block::Header;
use crate::codec;
use crate::genesis::Genesis;
use crate::hash::Hash;
use crate::store::{corrupt, ChainStore, KvStore, MemKv, StoreError, WriteBatch};

const GENESIS: &[u8] = b"L/genesis_hash";
const TRUSTED: &[u8] = b"L/trusted";
const HEADER_PREFIX: &[u8] = b"L/h/";
const CONFLICT_PREFIX: &[u8] = b"L/c/";
/// Bound on one stored record: a header, a certificate and a validator set are far below it.
const MAX_RECORD: usize = 16 << 20;

fn header_key(height: u64) -> Vec<u8> {
    [HEADER_PREFIX, &height.to_be_bytes()].concat()
}

fn conflict_key(height: u64) -> Vec<u8> {
    [CONFLICT_PREFIX, &height.to_be_bytes()].concat()
}

/// Two certified headers for one height: evidence that more than 1/3 of that height's power
/// signed two blocks.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Conflict {
    pub trusted: CertifiedHeader,
    pub other: CertifiedHeader,
}

pub struct HeaderStore<K: KvStore> {
    kv: K,
    genesis_header: Header,
    trusted: Trusted,
}

impl<K: KvStore> HeaderStore<K> {
    /// Opens `kv` for `genesis`'s chain, starting from the genesis header and set if empty.
    pub fn open(kv: K, genesis: &Genesis) -> Result<Self, StoreError> {
        // The genesis header commits to the genesis state root; deriving it through the full
        // store's own initialisation keeps one definition of it.
        let genesis_header = ChainStore::open(MemKv::new(), genesis)?.head().clone();
        let genesis_hash = genesis.hash();
        let trusted = match kv.get(GENESIS)? {
            None => {
                if let Some(entry) = kv.scan_prefix(b"L/").next() {
                    let (k, _) = entry?;
                    return Err(corrupt(&k, "light store data without a genesis hash"));
                }
                let trusted = Trusted {
                    header: genesis_header.clone(),
                    next_set: genesis.validator_set(),
                };
                let mut batch = WriteBatch::new();
                batch.put(GENESIS, genesis_hash.0.to_vec());
                batch.put(TRUSTED, codec::encode(&trusted));
                kv.write(batch)?;
                kv.flush()?;
                trusted
            }
            Some(stored) => {
                let stored = Hash(
                    stored
                        .as_ref()
                        .try_into()
                        .map_err(|_| corrupt(GENESIS, "not 32 bytes"))?,
                );
                if stored != genesis_hash {
                    return Err(StoreError::GenesisMismatch {
                        stored,
                        expected: genesis_hash,
                    });
                }
                let bytes = kv
                    .get(TRUSTED)?
                    .ok_or_else(|| corrupt(TRUSTED, "missing"))?;
                codec::decode(bytes.as_ref(), MAX_RECORD).map_err(|e| corrupt(TRUSTED, e))?
            }
        };
        let store = HeaderStore {
            kv,
            genesis_header,
            trusted,
        };
        let h = store.trusted.height();
        let stored = match h {
            0 => Some(store.genesis_header.clone()),
            _ => store.header(h)?.map(|c| c.header),
        };
        if stored.as_ref() != Some(&store.trusted.header) {
            return Err(corrupt(
                TRUSTED,
                format!("the trusted header at height {h} is not the stored one"),
            ));
        }
        Ok(store)
    }

    pub fn trusted(&self) -> &Trusted {
        &self.trusted
    }

    pub fn genesis_header(&self) -> &Header {
        &self.genesis_header
    }

    /// The verified header at `height` with its certificate (`None` above the trusted height,
    /// and at 0: the genesis header has no certificate).
    pub fn header(&self, height: u64) -> Result<Option<CertifiedHeader>, StoreError> {
        let key = header_key(height);
        self.kv
            .get(&key)?
            .map(|b| codec::decode(b.as_ref(), MAX_RECORD).map_err(|e| corrupt(&key, e)))
            .transpose()
    }

    /// How many of `headers`, from the first, are stored already exactly as they are. A run
    /// asked for before another source (gossip, a parallel run) moved the head past its start
    /// overlaps what is trusted; that overlap is not news, and not a lie. A header that differs
    /// from the stored one at its height ends the overlap: it is judged as the next header.
    pub fn known_prefix(&self, headers: &[CertifiedHeader]) -> Result<usize, StoreError> {
        let mut known = 0;
        for ch in headers {
            let stored = ch.header.height <= self.trusted.height()
                && self
                    .header(ch.header.height)?
                    .is_some_and(|s| s.header == ch.header);
            if !stored {
                break;
            }
            known += 1;
        }
        Ok(known)
    }

    /// Stores a verified run and the trust it leads to in one flushed write.
    pub fn append(
        &mut self,
        headers: &[CertifiedHeader],
        trusted: &Trusted,
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::with_capacity(headers.len() + 1);
        for ch in headers {
            batch.put(header_key(ch.header.height), codec::encode(ch));
        }
        batch.put(TRUSTED, codec::encode(trusted));
        self.kv.write(batch)?;
        self.kv.flush()?;
        self.trusted = trusted.clone();
        Ok(())
    }

    /// Keeps evidence of two certified headers at one height (the first one kept wins).
    pub fn record_conflict(&self, conflict: &Conflict) -> Result<(), StoreError> {
        let key = conflict_key(conflict.trusted.header.height);
        if self.kv.get(&key)?.is_none() {
            let mut batch = WriteBatch::new();
            batch.put(key, codec::encode(conflict));
            self.kv.write(batch)?;
            self.kv.flush()?;
        }
        Ok(())
    }

    /// Every conflict kept, lowest height first.
    pub fn conflicts(&self) -> Result<Vec<Conflict>, StoreError> {
        self.kv
            .scan_prefix(CONFLICT_PREFIX)
            .map(|entry| {
                let (k, v) = entry?;
                codec::decode(v.as_ref(), MAX_RECORD).map_err(|e| corrupt(&k, e))
            })
            .collect()
    }
}
