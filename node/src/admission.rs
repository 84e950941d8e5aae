//! Transactions from this node's clients, admitted in batches.
//!
//! Each `sendTx` still waits for its own verdict, so a client gets exactly the answer it would
//! get alone. But the submissions that arrive together (the calls of one JSON-RPC batch, or
//! many clients at once) are admitted by one thread in one `Mempool::admit_batch`: one batched
//! signature check, about a third of the cost of checking each alone (`cargo bench --bench
//! crypto`), and one take of the mempool and store locks instead of one per tx, which gossip
//! admission and block building also need. Nothing waits for a batch to fill: the thread takes
//! whatever is queued when it is free, so an idle node admits a lone tx at once.

use crate::shared::Shared;
use aitbc_chain::mempool::MempoolError;
use aitbc_chain::tx::HashedTx;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most txs admitted in one batch: bounds the time the mempool lock is held.
const MAX_BATCH: usize = 1024;
/// Submissions waiting to be admitted; beyond it, submitters wait (backpressure on RPC).
const QUEUE: usize = 4096;

type Verdict = Result<(), MempoolError>;

/// A handle to the admission thread; cloning it is cheap. The thread ends when every handle
/// is dropped.
#[derive(Clone)]
pub struct Admission {
    queue: mpsc::Sender<(HashedTx, oneshot::Sender<Verdict>)>,
}

/// The admission thread is gone (it panicked): nothing can be admitted any more.
#[derive(Debug, thiserror::Error)]
#[error("the admission thread has stopped")]
pub struct Stopped;

impl Admission {
    pub fn start(shared: Arc<Shared>) -> std::io::Result<Admission> {
        let (queue, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("aitbc-admit".into())
            .spawn(move || run(&shared, rx))?;
        Ok(Admission { queue })
    }

    /// Queues `tx` and waits for the mempool's verdict on it.
    pub async fn admit(&self, tx: HashedTx) -> Result<Verdict, Stopped> {
        let (reply, verdict) = oneshot::channel();
        self.queue.send((tx, reply)).await.map_err(|_| Stopped)?;
        verdict.await.map_err(|_| Stopped)
    }
}

fn run(shared: &Shared, mut rx: mpsc::Receiver<(HashedTx, oneshot::Sender<Verdict>)>) {
    while let Some(first) = rx.blocking_recv() {
        let mut txs = vec![first.0];
        let mut replies = vec![first.1];
        while txs.len() < MAX_BATCH {
            let Ok((tx, reply)) = rx.try_recv() else {
                break;
            };
            txs.push(tx);
            replies.push(reply);
        }
        for (reply, verdict) in replies.into_iter().zip(shared.admit_many(txs)) {
            // A submitter that gave up (its connection closed) needs no answer.
            let _ = reply.send(verdict);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aitbc_chain::tx::{Tx, TxKind};
    use aitbc_chain::{Address, SecretKey};

    /// A node's shared state over a fresh store whose genesis funds `key`'s account.
    fn funded(dir: &std::path::Path, key: &SecretKey) -> Arc<Shared> {
        let genesis = aitbc_chain::genesis::Genesis::dev(
            "admission-test",
            &[key],
            &[(
                Address::of(&key.public()),
                1_000_000 * aitbc_chain::params::AIT,
            )],
        );
        let kv = aitbc_chain::store::SledKv::open(dir).expect("sled");
        let store = aitbc_chain::store::ChainStore::open(kv, &genesis).expect("store");
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = crate::metrics::NodeMetrics::register(&mut registry);
        // Admitted txs queue for gossip; a small outbox that fills only drops gossip.
        let (outbox, _) = mpsc::channel(1);
        let shared = Shared::new(
            genesis,
            aitbc_chain::mempool::MempoolConfig::default(),
            store,
            None,
            "test".into(),
            metrics,
            registry,
            outbox,
        )
        .expect("shared");
        Arc::new(shared)
    }

    /// A batch keeps each tx's own verdict, in order: a sender's consecutive nonces are
    /// admitted together, a bad signature and a replay are refused, each for its reason.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_submission_gets_its_own_verdict() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = SecretKey::from_seed([7; 32]);
        let to = Address::of(&SecretKey::from_seed([8; 32]).public());
        let shared = funded(dir.path(), &key);
        let admission = Admission::start(shared.clone()).expect("thread");
        let chain_id = shared.genesis.chain_id.clone();
        let fee = shared.params().min_fee(400);
        let transfer = |nonce: u64| {
            HashedTx::new(Tx::signed(
                &chain_id,
                TxKind::Transfer { to, amount: 1 },
                &key,
                nonce,
                fee,
            ))
        };
        let mut forged = transfer(3);
        forged.tx.sig.0[0] ^= 1;
        let forged = HashedTx::new(forged.tx);
        let txs = vec![transfer(1), transfer(2), forged, transfer(1)];
        let verdicts = futures_util::future::join_all(txs.into_iter().map(|tx| {
            let admission = admission.clone();
            async move { admission.admit(tx).await.expect("running") }
        }))
        .await;
        assert!(verdicts[0].is_ok() && verdicts[1].is_ok(), "{verdicts:?}");
        assert_eq!(
            verdicts[2].as_ref().map_err(MempoolError::reason),
            Err("bad_signature")
        );
        assert!(verdicts[3].is_err(), "a replay was admitted");
        assert_eq!(shared.mempool().len(), 2);
    }
}
