//! Chain parameters: fixed at genesis, changeable by `ParamUpdate` from a genesis authority.
//!
//! All integers (ratios are basis points), so consensus state holds no floats. Each parameter
//! lives in state under `param/<name>`; [`Params::NAMES`] is the canonical list.

use serde::{Deserialize, Serialize};

/// 1 AIT in base units.
pub const AIT: u64 = 1_000_000;
/// Basis points in a whole.
pub const BPS: u64 = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Pause after a commit before the next height starts (0 = as soon as possible).
    pub block_time_ms: u64,
    /// Base view-change timeout; it grows with each failed view.
    pub view_timeout_ms: u64,
    pub max_block_bytes: u64,
    pub max_block_txs: u64,
    pub max_tx_bytes: u64,
    pub base_fee: u64,
    pub fee_per_byte: u64,
    /// Units minted to the miner per compute unit of a claimed receipt.
    pub mint_per_unit: u64,
    /// Share of a receipt's mint minted, in addition, to its coordinator.
    pub coordinator_bps: u64,
    /// Share of a receipt's mint minted, in addition, to the treasury.
    pub treasury_bps: u64,
    /// Blocks per epoch; the validator set changes only after a height that is a multiple of it.
    pub rotation_interval: u64,
    pub max_validators: u64,
    pub min_stake: u64,
    pub unbonding_blocks: u64,
    /// Share of an equivocating validator's stake that is slashed (moved to the treasury).
    pub slash_bps: u64,
    /// Number of state-commitment buckets (a power of two). Fixed at genesis.
    pub state_buckets: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            block_time_ms: 1_000,
            view_timeout_ms: 2_000,
            max_block_bytes: 1 << 20,
            max_block_txs: 10_000,
            max_tx_bytes: 32 * 1024,
            base_fee: 1_000,
            fee_per_byte: 10,
            mint_per_unit: 1_000,
            coordinator_bps: 500,
            treasury_bps: 1_000,
            rotation_interval: 100,
            max_validators: 10,
            min_stake: 1_000 * AIT,
            unbonding_blocks: 100,
            slash_bps: 1_000,
            state_buckets: 1 << 16,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParamError {
    #[error("unknown parameter {0:?}")]
    Unknown(String),
    #[error("parameter {0} is fixed at genesis")]
    Immutable(&'static str),
    #[error("parameter {name} = {value} is out of range: {rule}")]
    OutOfRange {
        name: &'static str,
        value: u64,
        rule: &'static str,
    },
}

/// Smallest block that still holds a header, a certificate of a full validator set and a tx.
const MIN_BLOCK_BYTES: u64 = 64 * 1024;

/// The fee floor of SPEC §3, `base_fee + fee_per_byte × encoded length`: the one place the
/// rule is written (admission, execution, wallets and the RPC's estimate all use it).
pub fn fee_floor(base_fee: u64, fee_per_byte: u64, len: u64) -> u64 {
    base_fee.saturating_add(fee_per_byte.saturating_mul(len))
}

impl Params {
    /// The least fee a tx of `len` encoded bytes must carry under these parameters.
    pub fn min_fee(&self, len: u64) -> u64 {
        fee_floor(self.base_fee, self.fee_per_byte, len)
    }

    pub const NAMES: [&'static str; 16] = [
        "block_time_ms",
        "view_timeout_ms",
        "max_block_bytes",
        "max_block_txs",
        "max_tx_bytes",
        "base_fee",
        "fee_per_byte",
        "mint_per_unit",
        "coordinator_bps",
        "treasury_bps",
        "rotation_interval",
        "max_validators",
        "min_stake",
        "unbonding_blocks",
        "slash_bps",
        "state_buckets",
    ];

    fn slot(&mut self, name: &str) -> Option<(&'static str, &mut u64)> {
        let idx = Self::NAMES.iter().position(|n| *n == name)?;
        let p = match idx {
            0 => &mut self.block_time_ms,
            1 => &mut self.view_timeout_ms,
            2 => &mut self.max_block_bytes,
            3 => &mut self.max_block_txs,
            4 => &mut self.max_tx_bytes,
            5 => &mut self.base_fee,
            6 => &mut self.fee_per_byte,
            7 => &mut self.mint_per_unit,
            8 => &mut self.coordinator_bps,
            9 => &mut self.treasury_bps,
            10 => &mut self.rotation_interval,
            11 => &mut self.max_validators,
            12 => &mut self.min_stake,
            13 => &mut self.unbonding_blocks,
            14 => &mut self.slash_bps,
            _ => &mut self.state_buckets,
        };
        Some((Self::NAMES[idx], p))
    }

    pub fn get(&self, name: &str) -> Option<u64> {
        self.clone().slot(name).map(|(_, v)| *v)
    }

    /// All parameters as `(name, value)` in canonical order.
    pub fn entries(&self) -> Vec<(&'static str, u64)> {
        Self::NAMES
            .iter()
            .map(|n| (*n, self.get(n).unwrap_or_default()))
            .collect()
    }

    /// Sets one parameter without validating: for loading a complete set that is validated once
    /// as a whole (cross-parameter rules would reject a valid set half-loaded).
    pub fn set_unvalidated(&mut self, name: &str, value: u64) -> Result<(), ParamError> {
        let (_, slot) = self
            .slot(name)
            .ok_or_else(|| ParamError::Unknown(name.to_string()))?;
        *slot = value;
        Ok(())
    }

    /// Applies a `ParamUpdate`: the result must pass [`Params::validate`].
    pub fn update(&mut self, name: &str, value: u64) -> Result<(), ParamError> {
        let mut next = self.clone();
        let (canonical, slot) = next
            .slot(name)
            .ok_or_else(|| ParamError::Unknown(name.to_string()))?;
        if canonical == "state_buckets" {
            return Err(ParamError::Immutable("state_buckets"));
        }
        *slot = value;
        next.validate()?;
        *self = next;
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ParamError> {
        let check = |name: &'static str, value: u64, ok: bool, rule: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(ParamError::OutOfRange { name, value, rule })
            }
        };
        check(
            "view_timeout_ms",
            self.view_timeout_ms,
            self.view_timeout_ms >= 10,
            ">= 10",
        )?;
        check(
            "max_block_bytes",
            self.max_block_bytes,
            (MIN_BLOCK_BYTES..=64 << 20).contains(&self.max_block_bytes),
            "between 64 KiB and 64 MiB",
        )?;
        check(
            "max_block_txs",
            self.max_block_txs,
            self.max_block_txs >= 1,
            ">= 1",
        )?;
        check(
            "max_tx_bytes",
            self.max_tx_bytes,
            self.max_tx_bytes >= 512 && self.max_tx_bytes <= self.max_block_bytes / 2,
            "between 512 and half of max_block_bytes",
        )?;
        check(
            "coordinator_bps",
            self.coordinator_bps,
            self.coordinator_bps <= BPS,
            "<= 10000",
        )?;
        check(
            "treasury_bps",
            self.treasury_bps,
            self.treasury_bps <= BPS,
            "<= 10000",
        )?;
        check(
            "slash_bps",
            self.slash_bps,
            self.slash_bps <= BPS,
            "<= 10000",
        )?;
        check(
            "rotation_interval",
            self.rotation_interval,
            self.rotation_interval >= 1,
            ">= 1",
        )?;
        check(
            "max_validators",
            self.max_validators,
            (1..=256).contains(&self.max_validators),
            "between 1 and 256",
        )?;
        check("min_stake", self.min_stake, self.min_stake >= 1, ">= 1")?;
        // Unstaked funds must stay slashable until the epoch in which they still carry power ends.
        check(
            "unbonding_blocks",
            self.unbonding_blocks,
            self.unbonding_blocks >= self.rotation_interval,
            ">= rotation_interval",
        )?;
        check(
            "state_buckets",
            self.state_buckets,
            self.state_buckets.is_power_of_two() && (2..=1 << 20).contains(&self.state_buckets),
            "a power of two between 2 and 2^20",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_spec_and_validate() {
        let p = Params::default();
        assert_eq!(p.block_time_ms, 1000);
        assert_eq!(p.max_block_bytes, 1 << 20);
        assert_eq!(p.mint_per_unit, 1000);
        assert_eq!(p.coordinator_bps, 500);
        assert_eq!(p.rotation_interval, 100);
        assert_eq!(p.max_validators, 10);
        assert_eq!(p.min_stake, 1000 * AIT);
        assert_eq!(p.validate(), Ok(()));
        assert_eq!(p.entries().len(), Params::NAMES.len());
    }

    #[test]
    fn update_checks_name_mutability_and_range() {
        let mut p = Params::default();
        assert_eq!(p.update("base_fee", 5), Ok(()));
        assert_eq!(p.base_fee, 5);
        assert_eq!(p.update("nope", 1), Err(ParamError::Unknown("nope".into())));
        assert_eq!(
            p.update("state_buckets", 4),
            Err(ParamError::Immutable("state_buckets"))
        );
        assert!(matches!(
            p.update("slash_bps", 10_001),
            Err(ParamError::OutOfRange {
                name: "slash_bps",
                ..
            })
        ));
        assert_eq!(
            p.slash_bps,
            Params::default().slash_bps,
            "failed update changes nothing"
        );
        for name in Params::NAMES {
            assert!(p.get(name).is_some());
        }
    }

    #[test]
    fn json_fills_defaults_and_rejects_unknown_keys() {
        let p: Params = serde_json::from_str(r#"{"base_fee": 7}"#).expect("parse");
        assert_eq!(p.base_fee, 7);
        assert_eq!(p.min_stake, Params::default().min_stake);
        assert!(serde_json::from_str::<Params>(r#"{"bogus": 1}"#).is_err());
    }
}
