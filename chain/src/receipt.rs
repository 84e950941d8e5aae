//! Compute receipts (SPEC §4): the only thing that mints AIT.
//!
//! The miner and a genesis-registered coordinator both sign the same digest of the receipt core.
//! Each carries its public key so any validator can check the signatures without a lookup; the
//! addresses in the core must be the addresses of those keys.

use crate::address::Address;
use crate::crypto::{self, Domain, PublicKey, SecretKey, SigError, Signature, VerifyingKey};
use crate::hash::Hash;
use crate::tx::{SigPart, TxSignature};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptCore {
    pub receipt_id: Hash,
    pub job_id: u64,
    pub client: Address,
    pub miner: Address,
    pub coordinator: Address,
    pub compute_units: u64,
    pub price: u64,
    pub output_hash: Hash,
    /// Hash of the committed `Transfer` from `client` to `coordinator` that paid for the job.
    pub client_payment_tx: Hash,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub core: ReceiptCore,
    pub miner_pubkey: PublicKey,
    pub miner_sig: Signature,
    pub coordinator_pubkey: PublicKey,
    pub coordinator_sig: Signature,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptSigError {
    #[error("miner_pubkey is not the key of the receipt's miner address")]
    MinerKeyMismatch,
    #[error("coordinator_pubkey is not the key of the receipt's coordinator address")]
    CoordinatorKeyMismatch,
    #[error("miner signature: {0}")]
    Miner(SigError),
    #[error("coordinator signature: {0}")]
    Coordinator(SigError),
}

impl ReceiptCore {
    /// The digest both parties sign.
    pub fn digest(&self, chain_id: &str) -> Hash {
        crypto::signing_digest(Domain::Receipt, chain_id, self)
    }
}

impl Receipt {
    /// Signs `core` as both miner and coordinator (what the devnet mocks do in two steps).
    pub fn sign(
        chain_id: &str,
        core: ReceiptCore,
        miner: &SecretKey,
        coordinator: &SecretKey,
    ) -> Receipt {
        let digest = core.digest(chain_id);
        Receipt {
            core,
            miner_pubkey: miner.public(),
            miner_sig: miner.sign_digest(&digest),
            coordinator_pubkey: coordinator.public(),
            coordinator_sig: coordinator.sign_digest(&digest),
        }
    }

    /// The miner's and the coordinator's signatures, after checking each key is the key of
    /// the address it signs for (`Err` names the part that is not). Transactions carrying a
    /// receipt list these through [`crate::tx::HashedTx::signatures`].
    pub fn signatures(&self, chain_id: &str) -> Result<[TxSignature<'_>; 2], SigPart> {
        if Address::of(&self.miner_pubkey) != self.core.miner {
            return Err(SigPart::ReceiptMiner);
        }
        if Address::of(&self.coordinator_pubkey) != self.core.coordinator {
            return Err(SigPart::ReceiptCoordinator);
        }
        let digest = self.core.digest(chain_id);
        Ok([
            TxSignature {
                part: SigPart::ReceiptMiner,
                signer: &self.miner_pubkey,
                digest,
                sig: self.miner_sig,
            },
            TxSignature {
                part: SigPart::ReceiptCoordinator,
                signer: &self.coordinator_pubkey,
                digest,
                sig: self.coordinator_sig,
            },
        ])
    }

    /// Checks key/address binding and both signatures.
    pub fn verify_signatures(&self, chain_id: &str) -> Result<(), ReceiptSigError> {
        let sigs = self.signatures(chain_id).map_err(|part| match part {
            SigPart::ReceiptMiner => ReceiptSigError::MinerKeyMismatch,
            _ => ReceiptSigError::CoordinatorKeyMismatch,
        })?;
        for s in sigs {
            let fault = match s.part {
                SigPart::ReceiptMiner => ReceiptSigError::Miner,
                _ => ReceiptSigError::Coordinator,
            };
            let key = VerifyingKey::new(s.signer).map_err(fault)?;
            crypto::verify(&key, &s.digest, &s.sig).map_err(fault)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Receipt, SecretKey, SecretKey) {
        let miner = SecretKey::from_seed([1; 32]);
        let coord = SecretKey::from_seed([2; 32]);
        let core = ReceiptCore {
            receipt_id: Hash::of(b"r1"),
            job_id: 1,
            client: Address([9; 20]),
            miner: Address::of(&miner.public()),
            coordinator: Address::of(&coord.public()),
            compute_units: 10,
            price: 100,
            output_hash: Hash::of(b"out"),
            client_payment_tx: Hash::of(b"pay"),
        };
        (Receipt::sign("c", core, &miner, &coord), miner, coord)
    }

    #[test]
    fn valid_receipt_verifies() {
        let (r, _, _) = sample();
        assert_eq!(r.verify_signatures("c"), Ok(()));
        assert!(r.verify_signatures("other-chain").is_err());
    }

    #[test]
    fn each_signature_and_binding_is_checked() {
        let (r, miner, coord) = sample();
        let mut bad = r.clone();
        bad.miner_sig = bad.coordinator_sig;
        assert!(matches!(
            bad.verify_signatures("c"),
            Err(ReceiptSigError::Miner(_))
        ));
        let mut bad = r.clone();
        bad.coordinator_sig = bad.miner_sig;
        assert!(matches!(
            bad.verify_signatures("c"),
            Err(ReceiptSigError::Coordinator(_))
        ));
        let mut bad = r.clone();
        bad.miner_pubkey = coord.public();
        assert_eq!(
            bad.verify_signatures("c"),
            Err(ReceiptSigError::MinerKeyMismatch)
        );
        let mut bad = r.clone();
        bad.coordinator_pubkey = miner.public();
        assert_eq!(
            bad.verify_signatures("c"),
            Err(ReceiptSigError::CoordinatorKeyMismatch)
        );
        let mut bad = r;
        bad.core.price += 1;
        assert!(bad.verify_signatures("c").is_err());
    }
}
