//! One WebSocket connection's subscriptions: which topics it asked for, under which ids.
//!
//! Shared between the connection's loop (which pushes events) and the tasks answering its calls
//! (`subscribe` / `unsubscribe`), hence the lock; it is held only for a map lookup, never across
//! an await.

use crate::jsonrpc::{truncated, RpcError};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// The topics a client can subscribe to (`NodeEvent::topic` names).
pub(crate) const TOPICS: &[&str] = &["newBlocks", "newTransactions", "consensusEvents"];

#[derive(Debug)]
pub(crate) struct Subscriptions {
    max: usize,
    inner: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    /// Subscription id → topic.
    by_id: BTreeMap<String, &'static str>,
}

impl Subscriptions {
    pub fn new(max: usize) -> Subscriptions {
        Subscriptions {
            max,
            inner: Mutex::new(Table::default()),
        }
    }

    /// The table, even if a task panicked while holding it: it stays consistent (every update
    /// is a single map operation).
    fn table(&self) -> MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a subscription to `topic`; its id is what `unsubscribe` takes and what each pushed
    /// notification carries.
    pub fn subscribe(&self, topic: String) -> Result<String, RpcError> {
        let Some(topic) = TOPICS.iter().find(|t| **t == topic).copied() else {
            return Err(RpcError::invalid_params(format!(
                "param \"topic\": unknown topic {:?}, expected one of {}",
                truncated(&topic),
                TOPICS.join(", ")
            )));
        };
        let mut t = self.table();
        if t.by_id.len() >= self.max {
            return Err(RpcError::invalid_params(format!(
                "this connection already holds {} subscriptions, the limit",
                self.max
            )));
        }
        t.next_id += 1;
        let id = format!("0x{:x}", t.next_id);
        t.by_id.insert(id.clone(), topic);
        Ok(id)
    }

    /// Removes a subscription; `false` if there was none with that id.
    pub fn unsubscribe(&self, id: String) -> bool {
        self.table().by_id.remove(&id).is_some()
    }

    /// Ids of the subscriptions to `topic`.
    pub fn ids_for(&self, topic: &str) -> Vec<String> {
        self.table()
            .by_id
            .iter()
            .filter(|(_, t)| **t == topic)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Ids of every subscription.
    pub fn all_ids(&self) -> Vec<String> {
        self.table().by_id.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_unsubscribe_and_limit() {
        let s = Subscriptions::new(2);
        let a = s.subscribe("newBlocks".into()).expect("a");
        let b = s.subscribe("consensusEvents".into()).expect("b");
        assert_ne!(a, b);
        assert_eq!(s.ids_for("newBlocks"), vec![a.clone()]);
        let e = s.subscribe("newTransactions".into()).expect_err("limit");
        assert!(e.message.contains("limit"), "{}", e.message);
        assert!(s.unsubscribe(a.clone()));
        assert!(!s.unsubscribe(a));
        assert_eq!(s.all_ids(), vec![b]);
        let e = s.subscribe("nope".into()).expect_err("topic");
        assert_eq!(e.code, -32602);
        assert!(e.message.contains("newBlocks"), "{}", e.message);
    }
}
