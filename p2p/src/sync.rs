//! The `/ait/<chain_id>/sync/1` request-response messages (SPEC §6) and their wire codec.
//!
//! Wire format, each direction: a 4-byte little-endian length, then that many bytes of the
//! chain's canonical encoding (`aitbc_chain::codec`). The length is checked against the limit
//! before anything is allocated, and decoding is bounded and rejects trailing bytes, so a hostile
//! peer can make us read at most one limit's worth of bytes and never panic us. libp2p's own
//! cbor/json codecs read to end of stream without a prefix, which turns an oversized message
//! into an opaque `UnexpectedEof`; this one names the fault.

use crate::config::Limits;
use aitbc_chain::block::{Block, CommitCertificate};
use aitbc_chain::codec::{self, CodecError};
use aitbc_chain::hash::Hash;
use aitbc_chain::state::proof::StateProof;
use aitbc_chain::Address;
use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};
use std::io;

/// A question one peer asks another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// The peer's chain and head.
    Status,
    /// Committed blocks `from, from + 1, …` (at most `count`, at most
    /// [`crate::config::MAX_BLOCKS_PER_REQUEST`]), each with the certificate that committed it.
    Blocks { from: u64, count: u32 },
    /// Committed headers, each with its certificate (at most
    /// [`crate::config::MAX_HEADERS_PER_REQUEST`]), for light peers.
    Headers { from: u64, count: u32 },
    /// A state proof for one account at the responder's committed head, provided that head is
    /// at least `height` (the asker's own verified head, so it is never handed a state older
    /// than what it trusts). Full nodes keep the head's state only, so "at exactly `height`"
    /// would fail whenever a block lands between the asker's look and the answer.
    AccountProof { address: Address, height: u64 },
}

impl SyncRequest {
    /// Checks the bounds a responder enforces before it looks at its store. The event loop
    /// answers a request that fails this itself; the node never sees it.
    pub fn check(&self, limits: &Limits) -> Result<(), Refusal> {
        match *self {
            SyncRequest::Blocks { count, .. } if count == 0 || count > limits.max_blocks => {
                Err(Refusal::BadRequest)
            }
            SyncRequest::Headers { count, .. } if count == 0 || count > limits.max_headers => {
                Err(Refusal::BadRequest)
            }
            _ => Ok(()),
        }
    }
}

/// A peer's chain and head, as `Status` reports them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub genesis_hash: Hash,
    pub head_height: u64,
    pub head_hash: Hash,
    /// The lowest height this peer can serve blocks from (a pruned node serves no older ones).
    pub lowest_height: u64,
}

/// A committed block and the certificate that committed it. The block's own `last_commit`
/// certifies its parent, so the head block's certificate would otherwise be missing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertifiedBlock {
    pub block: Block,
    pub commit: CommitCertificate,
}

pub use aitbc_chain::light::CertifiedHeader;

/// An account's state proof at `height` (the responder's head), to check against that header's
/// `state_root`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountProof {
    pub height: u64,
    pub proof: StateProof,
}

/// Why a request got no data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// The peer asked faster than its per-peer rate.
    #[error("rate limited")]
    RateLimited,
    /// Counts of zero or above the protocol maximum.
    #[error("bad request")]
    BadRequest,
    /// The responder does not have what was asked (beyond its head, pruned, or no proof at
    /// that height).
    #[error("not available")]
    Unavailable,
    /// The responder's answer would not fit the response limit.
    #[error("response too large")]
    TooLarge,
    /// The responder is too busy to answer (its node is not keeping up).
    #[error("busy")]
    Busy,
}

/// An answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    Status(Status),
    /// Consecutive blocks from the requested height; fewer than asked when the responder's head
    /// or the response limit is reached.
    Blocks(Vec<CertifiedBlock>),
    /// Consecutive headers from the requested height; fewer than asked as for `Blocks`.
    Headers(Vec<CertifiedHeader>),
    AccountProof(AccountProof),
    Refused(Refusal),
}

impl SyncResponse {
    /// Checks that the response can answer `request` (right kind, no more items than asked,
    /// consecutive heights from the one asked). Certificates are the node's to verify.
    pub fn answers(&self, request: &SyncRequest) -> bool {
        match (request, self) {
            (_, SyncResponse::Refused(_)) => true,
            (SyncRequest::Status, SyncResponse::Status(_)) => true,
            (SyncRequest::Blocks { from, count }, SyncResponse::Blocks(blocks)) => {
                blocks.len() <= *count as usize
                    && blocks
                        .iter()
                        .zip(*from..)
                        .all(|(b, h)| b.block.header.height == h && b.commit.height == h)
            }
            (SyncRequest::Headers { from, count }, SyncResponse::Headers(headers)) => {
                headers.len() <= *count as usize
                    && headers
                        .iter()
                        .zip(*from..)
                        .all(|(c, h)| c.header.height == h && c.commit.height == h)
            }
            (SyncRequest::AccountProof { address, height }, SyncResponse::AccountProof(p)) => {
                p.height >= *height && p.proof.key == aitbc_chain::state::keys::account(address)
            }
            _ => false,
        }
    }
}

/// The sync protocol name for a chain.
pub fn protocol(chain_id: &str) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/ait/{chain_id}/sync/1"))
        .expect("a name starting with '/' is a valid protocol")
}

/// Length-prefixed canonical encoding with separate request and response limits.
#[derive(Clone, Copy, Debug)]
pub struct SyncCodec {
    pub max_request: usize,
    pub max_response: usize,
}

impl SyncCodec {
    pub fn new(limits: &Limits) -> SyncCodec {
        SyncCodec {
            max_request: limits.request,
            max_response: limits.response,
        }
    }
}

fn invalid_data(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Reads one length-prefixed value of at most `max` bytes.
pub async fn read_framed<T, R>(io: &mut R, max: usize) -> io::Result<T>
where
    T: serde::de::DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut prefix = [0u8; 4];
    io.read_exact(&mut prefix).await?;
    let len = u32::from_le_bytes(prefix) as usize;
    if len > max {
        return Err(invalid_data(CodecError::TooLarge { len, max }));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    codec::decode(&buf, max).map_err(invalid_data)
}

/// Writes one value with its length prefix, refusing (without writing) one over `max` bytes.
pub async fn write_framed<T, W>(io: &mut W, value: &T, max: usize) -> io::Result<()>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    let len = codec::encoded_len(value);
    if len > max || u32::try_from(len).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            CodecError::TooLarge { len, max },
        ));
    }
    let mut buf = Vec::with_capacity(4 + len);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    codec::encode_into(value, &mut buf);
    io.write_all(&buf).await?;
    io.flush().await
}

impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_framed(io, self.max_request).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_framed(io, self.max_response).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: SyncRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_framed(io, &req, self.max_request).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: SyncResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_framed(io, &res, self.max_response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::futures::executor::block_on;
    use libp2p::futures::io::Cursor;
    use libp2p::request_response::Codec;

    fn codec() -> SyncCodec {
        SyncCodec {
            max_request: 1024,
            max_response: 4096,
        }
    }

    fn proto() -> StreamProtocol {
        protocol("ait-test")
    }

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn read_req(bytes: Vec<u8>) -> io::Result<SyncRequest> {
        block_on(codec().read_request(&proto(), &mut Cursor::new(bytes)))
    }

    fn read_resp(bytes: Vec<u8>) -> io::Result<SyncResponse> {
        block_on(codec().read_response(&proto(), &mut Cursor::new(bytes)))
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let reqs = [
            SyncRequest::Status,
            SyncRequest::Blocks { from: 5, count: 7 },
            SyncRequest::Headers {
                from: 1,
                count: 512,
            },
            SyncRequest::AccountProof {
                address: Address([9; 20]),
                height: 3,
            },
        ];
        for req in reqs {
            let mut out = Cursor::new(Vec::new());
            block_on(codec().write_request(&proto(), &mut out, req.clone())).expect("writes");
            assert_eq!(read_req(out.into_inner()).expect("reads"), req);
        }
        let resp = SyncResponse::Status(Status {
            genesis_hash: Hash::of(b"g"),
            head_height: 10,
            head_hash: Hash::of(b"h"),
            lowest_height: 1,
        });
        let mut out = Cursor::new(Vec::new());
        block_on(codec().write_response(&proto(), &mut out, resp.clone())).expect("writes");
        assert_eq!(read_resp(out.into_inner()).expect("reads"), resp);
    }

    #[test]
    fn oversized_length_prefix_is_refused_before_reading() {
        // Claims 4 GiB; only the prefix is there. Must fail on the claim, not try to allocate.
        let err = read_req(u32::MAX.to_le_bytes().to_vec()).expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("over the limit"), "{err}");
        let err = read_resp(framed(&vec![0u8; 4097])).expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn malformed_truncated_and_trailing_bytes_are_refused() {
        // Unknown enum tag.
        assert!(read_req(framed(&99u32.to_le_bytes())).is_err());
        // Truncated: prefix promises more than the stream has.
        let mut short = framed(&codec::encode(&SyncRequest::Blocks { from: 1, count: 2 }));
        short.truncate(short.len() - 3);
        assert_eq!(
            read_req(short).expect_err("truncated").kind(),
            io::ErrorKind::UnexpectedEof
        );
        // A valid value with a trailing byte inside the frame.
        let mut payload = codec::encode(&SyncRequest::Status);
        payload.push(0);
        let err = read_req(framed(&payload)).expect_err("trailing");
        assert!(err.to_string().contains("trailing"), "{err}");
        // Hostile inner length: a Blocks response claiming 2^60 entries.
        let mut hostile = 1u32.to_le_bytes().to_vec();
        hostile.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(read_resp(framed(&hostile)).is_err());
        // Empty stream and random garbage.
        assert!(read_req(Vec::new()).is_err());
        for seed in 0u8..50 {
            let garbage: Vec<u8> = (0..40u8)
                .map(|i| i.wrapping_mul(31).wrapping_add(seed))
                .collect();
            let _ = read_resp(framed(&garbage));
            let _ = read_req(garbage);
        }
    }

    #[test]
    fn writer_refuses_oversized_values() {
        let big = SyncResponse::AccountProof(AccountProof {
            height: 1,
            proof: StateProof {
                key: vec![0; 5000],
                value: None,
                bucket: 0,
                pairs: vec![],
                siblings: vec![],
            },
        });
        let mut out = Cursor::new(Vec::new());
        let err = block_on(codec().write_response(&proto(), &mut out, big)).expect_err("too big");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(out.into_inner().is_empty(), "nothing was written");
    }

    #[test]
    fn request_bounds() {
        let l = Limits::new(1 << 20, 10);
        assert_eq!(
            SyncRequest::Blocks {
                from: 0,
                count: 128
            }
            .check(&l),
            Ok(())
        );
        assert_eq!(
            SyncRequest::Blocks {
                from: 0,
                count: 129
            }
            .check(&l),
            Err(Refusal::BadRequest)
        );
        assert_eq!(
            SyncRequest::Headers { from: 0, count: 0 }.check(&l),
            Err(Refusal::BadRequest)
        );
        assert_eq!(SyncRequest::Status.check(&l), Ok(()));
    }

    #[test]
    fn answers_checks_kind_and_count() {
        let status = SyncResponse::Status(Status {
            genesis_hash: Hash::ZERO,
            head_height: 0,
            head_hash: Hash::ZERO,
            lowest_height: 0,
        });
        assert!(status.answers(&SyncRequest::Status));
        assert!(!status.answers(&SyncRequest::Blocks { from: 1, count: 1 }));
        assert!(SyncResponse::Blocks(vec![]).answers(&SyncRequest::Blocks { from: 1, count: 1 }));
        assert!(SyncResponse::Refused(Refusal::Busy).answers(&SyncRequest::Status));
    }

    /// A proof answers at the asked height or above, and only for the asked account.
    #[test]
    fn account_proof_answers_for_the_account_at_or_above_the_height() {
        let asked = Address([4; 20]);
        let proof = |key: Vec<u8>, height| {
            SyncResponse::AccountProof(AccountProof {
                height,
                proof: StateProof {
                    key,
                    value: None,
                    bucket: 0,
                    pairs: vec![],
                    siblings: vec![],
                },
            })
        };
        let request = SyncRequest::AccountProof {
            address: asked,
            height: 10,
        };
        let key = aitbc_chain::state::keys::account(&asked);
        assert!(proof(key.clone(), 10).answers(&request));
        assert!(proof(key.clone(), 12).answers(&request));
        assert!(!proof(key, 9).answers(&request));
        let other = aitbc_chain::state::keys::account(&Address([5; 20]));
        assert!(!proof(other, 10).answers(&request));
    }
}
