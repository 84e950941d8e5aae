//! The three gossip topics and content-addressed message ids.

use aitbc_chain::hash::Hash;
use libp2p::gossipsub::{self, IdentTopic, MessageId, TopicHash};

/// What a gossip message carries. Each maps to `/ait/<chain_id>/<name>/1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Batches of signed transactions.
    Tx,
    /// `aitbc_chain::consensus::Message`s (proposals, votes, view changes).
    Consensus,
    /// Committed blocks with their certificates, for followers.
    Block,
}

impl Topic {
    pub const ALL: [Topic; 3] = [Topic::Tx, Topic::Consensus, Topic::Block];

    fn name(self) -> &'static str {
        match self {
            Topic::Tx => "tx",
            Topic::Consensus => "consensus",
            Topic::Block => "block",
        }
    }

    /// The gossipsub topic on chain `chain_id`.
    pub fn ident(self, chain_id: &str) -> IdentTopic {
        IdentTopic::new(format!("/ait/{chain_id}/{}/1", self.name()))
    }
}

/// Maps topic hashes back to [`Topic`]s for one chain.
#[derive(Clone, Debug)]
pub(crate) struct Topics {
    hashes: [(Topic, TopicHash); 3],
}

impl Topics {
    pub(crate) fn new(chain_id: &str) -> Topics {
        Topics {
            hashes: Topic::ALL.map(|t| (t, t.ident(chain_id).hash())),
        }
    }

    pub(crate) fn hash(&self, topic: Topic) -> TopicHash {
        self.hashes
            .iter()
            .find(|(t, _)| *t == topic)
            .map(|(_, h)| h.clone())
            .expect("every Topic has a hash")
    }

    pub(crate) fn topic(&self, hash: &TopicHash) -> Option<Topic> {
        self.hashes.iter().find(|(_, h)| h == hash).map(|(t, _)| *t)
    }
}

/// SHA-256 of topic and data. Messages are anonymous (no author, no sequence number), so the
/// default id (author + sequence number) would give every message the same id; hashing the
/// content makes identical payloads deduplicate across relays. The topic is included so the same
/// bytes on two topics are two messages.
pub fn message_id(topic: &TopicHash, data: &[u8]) -> MessageId {
    let hash = Hash::of_parts(&[topic.as_str().as_bytes(), &[0u8], data]);
    MessageId::from(hash.as_bytes().to_vec())
}

pub(crate) fn message_id_fn(message: &gossipsub::Message) -> MessageId {
    message_id(&message.topic, &message.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_the_spec() {
        assert_eq!(Topic::Tx.ident("c").hash().as_str(), "/ait/c/tx/1");
        assert_eq!(
            Topic::Consensus.ident("c").hash().as_str(),
            "/ait/c/consensus/1"
        );
        assert_eq!(Topic::Block.ident("c").hash().as_str(), "/ait/c/block/1");
        let t = Topics::new("c");
        for topic in Topic::ALL {
            assert_eq!(t.topic(&t.hash(topic)), Some(topic));
        }
        assert_eq!(t.topic(&Topic::Tx.ident("other").hash()), None);
    }

    #[test]
    fn ids_depend_on_topic_and_data() {
        let tx = Topic::Tx.ident("c").hash();
        let block = Topic::Block.ident("c").hash();
        assert_eq!(message_id(&tx, b"x"), message_id(&tx, b"x"));
        assert_ne!(message_id(&tx, b"x"), message_id(&tx, b"y"));
        assert_ne!(message_id(&tx, b"x"), message_id(&block, b"x"));
    }
}
