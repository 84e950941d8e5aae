//! Consensus write-ahead log (SPEC §5, "Never sign twice").
//!
//! The consensus engine is a sans-IO state machine: it emits records that the node must make
//! durable *before* it sends the signed message they describe. After a crash the node reads the
//! log back and replays it into a fresh engine, so a restarted validator resumes where it stopped
//! and never signs something that conflicts with what it already signed.
//!
//! # Format
//!
//! The file is a plain sequence of records, each
//!
//! ```text
//! u32 little-endian payload length | first 8 bytes of SHA-256(length bytes || payload) | payload
//! ```
//!
//! where the payload is the canonical encoding of the record ([`crate::codec::encode`]). The
//! checksum covers the length too, so a corrupted length prefix is caught as well.
//!
//! # Crash recovery
//!
//! A crash can tear the last record (a partial write that never reached `sync`). Such a tail is
//! detected on [`Wal::open`] by its length or checksum and dropped, and the file is truncated back
//! to the intact prefix: a torn tail is never a reason to refuse to start (SPEC §5). A torn record
//! was by construction never synced, so the message it describes never left the process and
//! forgetting it is safe.
//!
//! Reading stops at the *first* record that is truncated, claims a length above the limit, fails
//! its checksum or does not decode, and everything from there on is dropped — even if intact-looking
//! records follow. Records are only ever appended and synced in order, so anything after a bad
//! record was written after an unsynced (torn) write and cannot be trusted; keeping it would let a
//! record whose predecessors were lost be replayed out of context.
//!
//! Genuine I/O errors while reading (as opposed to a short or corrupt file) *do* fail `open`:
//! silently dropping records we failed to read could let the validator sign twice.

use crate::codec::{self, MAX_DECODE_BYTES};
use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes of the length prefix.
const LEN_BYTES: usize = 4;
/// Bytes of the truncated SHA-256 checksum.
const CHECKSUM_BYTES: usize = 8;
/// Bytes in front of every payload.
const HEADER_BYTES: usize = LEN_BYTES + CHECKSUM_BYTES;

/// Errors of the write-ahead log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The underlying file failed. After a failed `sync`/`reset` the log is poisoned (see
    /// [`WalError::Poisoned`]).
    #[error("write-ahead log I/O error: {0}")]
    Io(#[from] io::Error),
    /// The record's encoding is larger than the log's per-record limit; nothing was appended.
    #[error("write-ahead log record is {len} bytes, over the limit of {max}")]
    RecordTooLarge { len: usize, max: usize },
    /// An earlier write or `sync_data` failed, so what is on disk is unknown (and on Linux a
    /// retried fsync may report success for data that was never written). The log refuses all
    /// further use; the node must stop and reopen it, which recovers exactly what is durable.
    #[error("write-ahead log is unusable after an earlier I/O failure; restart to recover")]
    Poisoned,
}

/// What [`Wal::open`] found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered<T> {
    /// Every intact record, in the order it was appended.
    pub records: Vec<T>,
    /// Bytes of torn or corrupt tail that were dropped (and truncated from the file).
    pub dropped_bytes: u64,
}

/// An open write-ahead log.
///
/// Appends are buffered in memory ([`Wal::append`] is cheap) and only reach the disk on
/// [`Wal::sync`], which the node calls before any signed message leaves the process. This batches
/// the several records one engine step may emit into a single write + fsync.
pub struct Wal {
    file: File,
    /// Encoded records appended since the last successful `sync`.
    pending: Vec<u8>,
    /// Durable length of the file: the end of the last synced record. Writes go here.
    len: u64,
    path: PathBuf,
    /// Effective per-record payload limit (already clamped to what the format and codec allow).
    max_record_bytes: usize,
    /// Set when a write/sync/truncate failed; see [`WalError::Poisoned`].
    poisoned: bool,
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("path", &self.path)
            .field("len", &self.len)
            .field("pending_bytes", &self.pending.len())
            .field("max_record_bytes", &self.max_record_bytes)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl Wal {
    /// Opens or creates the log at `path`; returns every intact record in order and how many
    /// bytes of torn/corrupt tail were dropped (the file is truncated to the intact prefix and
    /// synced).
    ///
    /// `max_record_bytes` bounds each record's payload, both when appending and when reading back,
    /// so a corrupt length prefix can never make us allocate more than that. Use the same limit
    /// across restarts: a record above the limit on reopen is treated as corruption and it and
    /// everything after it are dropped. The limit is clamped to what the format (`u32` lengths)
    /// and the codec ([`MAX_DECODE_BYTES`]) can carry, so every record accepted by `append` can be
    /// read back.
    pub fn open<T: DeserializeOwned>(
        path: &Path,
        max_record_bytes: usize,
    ) -> Result<(Wal, Recovered<T>), WalError> {
        let max_record_bytes = max_record_bytes
            .min(MAX_DECODE_BYTES)
            .min(u32::MAX as usize);

        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true);
        #[cfg(unix)]
        {
            // Consensus messages of the current height: readable by the node only.
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(path)?;
        // A newly created file only survives a crash once its directory entry is durable too;
        // otherwise the first synced records could vanish with the file and we would sign twice.
        sync_parent_dir(path)?;

        let file_len = file.metadata()?.len();
        let (records, intact) = read_intact::<T>(&file, file_len, max_record_bytes)?;
        let dropped_bytes = file_len - intact;
        if dropped_bytes > 0 {
            file.set_len(intact)?;
            file.sync_data()?;
        }

        let wal = Wal {
            file,
            pending: Vec::new(),
            len: intact,
            path: path.to_path_buf(),
            max_record_bytes,
            poisoned: false,
        };
        Ok((
            wal,
            Recovered {
                records,
                dropped_bytes,
            },
        ))
    }

    /// Appends a record to an in-memory buffer (cheap; no syscall).
    ///
    /// The record is not durable until [`Wal::sync`] returns. A record whose encoding exceeds the
    /// limit is rejected with [`WalError::RecordTooLarge`] and leaves the buffer unchanged.
    pub fn append<T: Serialize>(&mut self, record: &T) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        let start = self.pending.len();
        // Reserve the header, encode in place, then fill the header in: no extra copy.
        self.pending.extend_from_slice(&[0u8; HEADER_BYTES]);
        codec::encode_into(record, &mut self.pending);
        let payload_len = self.pending.len() - start - HEADER_BYTES;
        if payload_len > self.max_record_bytes {
            self.pending.truncate(start);
            return Err(WalError::RecordTooLarge {
                len: payload_len,
                max: self.max_record_bytes,
            });
        }
        // Cannot fail: `max_record_bytes <= u32::MAX` (clamped in `open`).
        let len_bytes = u32::try_from(payload_len)
            .expect("payload length is bounded by max_record_bytes <= u32::MAX")
            .to_le_bytes();
        let (header, payload) = self.pending[start..].split_at_mut(HEADER_BYTES);
        let sum = checksum(&len_bytes, payload);
        header[..LEN_BYTES].copy_from_slice(&len_bytes);
        header[LEN_BYTES..].copy_from_slice(&sum);
        Ok(())
    }

    /// Writes the buffered records and makes them durable (write + `File::sync_data`). Called
    /// before any signed message leaves the process. A no-op when nothing is buffered.
    ///
    /// On failure the log is poisoned: the caller must not send the message, and must restart
    /// (reopening recovers whatever did become durable).
    pub fn sync(&mut self) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = (|| -> io::Result<()> {
            // Always write at the end of the durable prefix (never at the OS file cursor), so a
            // previously torn tail that open() truncated, or a reset, cannot misplace records.
            self.file.seek(SeekFrom::Start(self.len))?;
            self.file.write_all(&self.pending)?;
            self.file.sync_data()
        })();
        match result {
            Ok(()) => {
                self.len += self.pending.len() as u64;
                self.pending.clear();
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                Err(e.into())
            }
        }
    }

    /// Drops every record (after a height is committed): truncate to 0 and sync.
    ///
    /// Records appended but not yet synced are discarded as well. Later writes start at offset 0.
    /// A log with nothing durable costs no syscall: the file's length is always `len` (`open`
    /// truncates to it, `sync` extends it), so it is already empty on disk. That is every height
    /// a node commits by sync or as a non-validator.
    pub fn reset(&mut self) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        self.pending.clear();
        if self.len == 0 {
            return Ok(());
        }
        let result = self.file.set_len(0).and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.len = 0;
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                Err(e.into())
            }
        }
    }

    /// Durable length of the log in bytes: the intact prefix found on open plus every synced
    /// append since (buffered, unsynced records are not counted).
    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    /// The file this log lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// First 8 bytes of `SHA-256(len_bytes || payload)`.
fn checksum(len_bytes: &[u8; LEN_BYTES], payload: &[u8]) -> [u8; CHECKSUM_BYTES] {
    let mut h = Sha256::new();
    h.update(len_bytes);
    h.update(payload);
    let digest = h.finalize();
    let mut out = [0u8; CHECKSUM_BYTES];
    out.copy_from_slice(&digest[..CHECKSUM_BYTES]);
    out
}

/// Reads records from the start of `file` until the end or the first bad record. Returns the
/// records and the length of the intact prefix. Short reads, oversize lengths, checksum mismatches
/// and undecodable payloads end the intact prefix; other I/O errors are returned.
fn read_intact<T: DeserializeOwned>(
    file: &File,
    file_len: u64,
    max_record_bytes: usize,
) -> Result<(Vec<T>, u64), WalError> {
    let mut reader = BufReader::new(file);
    reader.seek(SeekFrom::Start(0))?;
    let mut records = Vec::new();
    let mut offset: u64 = 0;
    let mut payload = Vec::new();
    loop {
        let remaining = file_len - offset;
        if remaining < HEADER_BYTES as u64 {
            // Clean end (0) or a torn header.
            break;
        }
        let mut header = [0u8; HEADER_BYTES];
        if !read_exact_or_eof(&mut reader, &mut header)? {
            break;
        }
        let mut len_bytes = [0u8; LEN_BYTES];
        len_bytes.copy_from_slice(&header[..LEN_BYTES]);
        let len = u32::from_le_bytes(len_bytes) as usize;
        // Both checks come before allocating, so a garbage length costs nothing.
        if len > max_record_bytes || len as u64 > remaining - HEADER_BYTES as u64 {
            break;
        }
        payload.clear();
        payload.resize(len, 0);
        if !read_exact_or_eof(&mut reader, &mut payload)? {
            break;
        }
        if checksum(&len_bytes, &payload)[..] != header[LEN_BYTES..] {
            break;
        }
        // A payload that passes its checksum but does not decode (e.g. written by a build with
        // another record type) is treated like corruption.
        let Ok(record) = codec::decode::<T>(&payload, max_record_bytes) else {
            break;
        };
        records.push(record);
        offset += (HEADER_BYTES + len) as u64;
    }
    Ok((records, offset))
}

/// `read_exact`, but a file that ends early (it shrank under us) is `Ok(false)`, not an error.
fn read_exact_or_eof(reader: &mut impl Read, buf: &mut [u8]) -> Result<bool, WalError> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Makes the directory entry of `path` durable (unix; elsewhere directories cannot be synced
/// this way and this is a no-op).
fn sync_parent_dir(path: &Path) -> Result<(), WalError> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
    struct R {
        n: u64,
        data: Vec<u8>,
    }

    const MAX: usize = 1024;

    fn r(n: u64) -> R {
        R {
            n,
            data: (0..(n % 23) as u8).collect(),
        }
    }

    fn open(path: &Path) -> (Wal, Recovered<R>) {
        Wal::open::<R>(path, MAX).expect("opens")
    }

    /// Writes records `0..count` and returns the file offset at which each record ends.
    fn write_records(path: &Path, count: u64) -> Vec<u64> {
        let (mut wal, rec) = open(path);
        assert!(rec.records.is_empty());
        let mut ends = Vec::new();
        for i in 0..count {
            wal.append(&r(i)).expect("append");
            wal.sync().expect("sync");
            ends.push(wal.len_bytes());
        }
        ends
    }

    fn file_len(path: &Path) -> u64 {
        std::fs::metadata(path).expect("metadata").len()
    }

    #[test]
    fn new_and_empty_file_open_with_no_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal");
        let (wal, rec) = open(&path);
        assert!(rec.records.is_empty());
        assert_eq!(rec.dropped_bytes, 0);
        assert_eq!(wal.len_bytes(), 0);
        assert!(path.exists());
        drop(wal);
        // Reopening the existing empty file is the same.
        let (wal, rec) = open(&path);
        assert!(rec.records.is_empty());
        assert_eq!(rec.dropped_bytes, 0);
        assert_eq!(wal.len_bytes(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal");
        let _ = open(&path);
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }

    #[test]
    fn round_trip_many_records_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal");
        let (mut wal, _) = open(&path);
        for i in 0..500 {
            wal.append(&r(i)).expect("append");
            if i % 7 == 0 {
                wal.sync().expect("sync");
            }
        }
        wal.sync().expect("sync");
        let len = wal.len_bytes();
        assert_eq!(file_len(&path), len);
        drop(wal);

        let (mut wal, rec) = open(&path);
        assert_eq!(rec.dropped_bytes, 0);
        assert_eq!(rec.records, (0..500).map(r).collect::<Vec<_>>());
        assert_eq!(wal.len_bytes(), len);

        // Appends after reopen go after the recovered records.
        wal.append(&r(500)).expect("append");
        wal.sync().expect("sync");
        drop(wal);
        let (_, rec) = open(&path);
        assert_eq!(rec.records, (0..501).map(r).collect::<Vec<_>>());
    }

    #[test]
    fn unsynced_records_are_not_on_disk_until_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal");
        let (mut wal, _) = open(&path);
        wal.append(&r(1)).expect("append");
        wal.append(&r(2)).expect("append");
        assert_eq!(file_len(&path), 0);
        assert_eq!(wal.len_bytes(), 0);
        let (_, rec) = open(&path);
        assert!(rec.records.is_empty());

        wal.sync().expect("sync");
        assert_eq!(file_len(&path), wal.len_bytes());
        assert!(wal.len_bytes() > 0);
        let (_, rec) = open(&path);
        assert_eq!(rec.records, vec![r(1), r(2)]);

        // Syncing with nothing buffered changes nothing.
        let before = wal.len_bytes();
        wal.sync().expect("sync");
        assert_eq!(wal.len_bytes(), before);
        assert_eq!(file_len(&path), before);
    }

    #[test]
    fn torn_tail_at_every_offset_recovers_intact_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let full = dir.path().join("full");
        let ends = write_records(&full, 5);
        let bytes = std::fs::read(&full).expect("read");
        assert_eq!(bytes.len() as u64, *ends.last().expect("records"));

        let path = dir.path().join("wal");
        // Every cut of the whole file, which includes every byte offset of the last record.
        for cut in 0..=bytes.len() {
            std::fs::write(&path, &bytes[..cut]).expect("write");
            let intact_count = ends.iter().filter(|&&e| e <= cut as u64).count();
            let intact_len = if intact_count == 0 {
                0
            } else {
                ends[intact_count - 1]
            };

            let (mut wal, rec) = open(&path);
            assert_eq!(
                rec.records,
                (0..intact_count as u64).map(r).collect::<Vec<_>>(),
                "cut {cut}"
            );
            assert_eq!(rec.dropped_bytes, cut as u64 - intact_len, "cut {cut}");
            assert_eq!(wal.len_bytes(), intact_len, "cut {cut}");
            assert_eq!(file_len(&path), intact_len, "file truncated, cut {cut}");

            // Appending after recovery lands right after the intact prefix and reads back.
            wal.append(&r(99)).expect("append");
            wal.sync().expect("sync");
            drop(wal);
            let (_, rec) = open(&path);
            let mut expected: Vec<R> = (0..intact_count as u64).map(r).collect();
            expected.push(r(99));
            assert_eq!(rec.records, expected, "cut {cut}");
            assert_eq!(rec.dropped_bytes, 0, "cut {cut}");
        }
    }

    #[test]
    fn flipped_byte_anywhere_in_last_record_drops_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let full = dir.path().join("full");
        let ends = write_records(&full, 4);
        let bytes = std::fs::read(&full).expect("read");
        let last_start = ends[2] as usize;
        let path = dir.path().join("wal");
        // Covers the length prefix, the checksum and the payload.
        for i in last_start..bytes.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut corrupt = bytes.clone();
                corrupt[i] ^= mask;
                std::fs::write(&path, &corrupt).expect("write");
                let (wal, rec) = open(&path);
                assert_eq!(
                    rec.records,
                    vec![r(0), r(1), r(2)],
                    "byte {i} mask {mask:#x}"
                );
                assert_eq!(rec.dropped_bytes, (bytes.len() - last_start) as u64);
                assert_eq!(wal.len_bytes(), ends[2]);
            }
        }
    }

    #[test]
    fn corrupt_middle_record_drops_everything_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal");
        let ends = write_records(&path, 5);
        let mut bytes = std::fs::read(&path).expect("read");
        // Flip a payload byte of record 1 (records 2.. are intact but follow it).
        bytes[ends[0] as usize + HEADER_BYTES] ^= 0x55;
        std::fs::write(&path, &bytes).expect("write");
        let (wal, rec) = open(&path);
        assert_eq!(rec.records, vec![r(0)]);
        assert_eq!(rec.dropped_bytes, bytes.len() as u64 - ends[0]);
        assert_eq!(wal.len_bytes(), ends[0]);
    }

    #[test]
    fn length_above_max_drops_tail_without_allocating() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal");
        let ends = write_records(&path, 2);
        let mut bytes = std::fs::read(&path).expect("read");
        // A header claiming a huge record, with a valid checksum for that length, then garbage.
        for claimed in [u32::MAX, (MAX + 1) as u32, (64u32 << 20) - 1] {
            let mut tail = bytes.clone();
            let len_bytes = claimed.to_le_bytes();
            tail.extend_from_slice(&len_bytes);
            tail.extend_from_slice(&checksum(&len_bytes, &[]));
            tail.extend_from_slice(&[7u8; 100]);
            std::fs::write(&path, &tail).expect("write");
            // Even with the largest allowed limit, a length past the end of the file is rejected
            // before any buffer is allocated.
            let (wal, rec) = Wal::open::<R>(&path, usize::MAX).expect("opens");
            assert_eq!(rec.records, vec![r(0), r(1)]);
            assert_eq!(rec.dropped_bytes, (tail.len() - bytes.len()) as u64);
            assert_eq!(wal.len_bytes(), ends[1]);
        }
        // A record that fits the file but exceeds the configured limit is dropped too.
        bytes.extend_from_slice(&[0u8; 2048]);
        let len_bytes = 2000u32.to_le_bytes();
        bytes[ends[1] as usize..ends[1] as usize + LEN_BYTES].copy_from_slice(&len_bytes);
        std::fs::write(&path, &bytes).expect("write");
        let (_, rec) = open(&path);
        assert_eq!(rec.records, vec![r(0), r(1)]);
        assert_eq!(rec.dropped_bytes, 2048);
    }

    #[test]
    fn undecodable_payload_with_valid_checksum_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal");
        let ends = write_records(&path, 1);
        let mut bytes = std::fs::read(&path).expect("read");
        let payload = [1u8, 2, 3];
        let len_bytes = (payload.len() as u32).to_le_bytes();
        bytes.extend_from_slice(&len_bytes);
        bytes.extend_from_slice(&checksum(&len_bytes, &payload));
        bytes.extend_from_slice(&payload);
        std::fs::write(&path, &bytes).expect("write");
        let (_, rec) = open(&path);
        assert_eq!(rec.records, vec![r(0)]);
        assert_eq!(rec.dropped_bytes, bytes.len() as u64 - ends[0]);
    }

    #[test]
    fn oversize_append_is_rejected_and_leaves_buffer_intact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal");
        let (mut wal, _) = open(&path);
        wal.append(&r(1)).expect("append");
        let big = R {
            n: 0,
            data: vec![0; MAX],
        };
        match wal.append(&big) {
            Err(WalError::RecordTooLarge { len, max }) => {
                assert_eq!(len, MAX + 16);
                assert_eq!(max, MAX);
            }
            other => panic!("expected RecordTooLarge, got {other:?}"),
        }
        // A record of exactly the limit is fine.
        let exact = R {
            n: 0,
            data: vec![0; MAX - 16],
        };
        wal.append(&exact).expect("append at limit");
        wal.sync().expect("sync");
        drop(wal);
        let (_, rec) = open(&path);
        assert_eq!(rec.records, vec![r(1), exact]);
    }

    #[test]
    fn reset_empties_the_log_and_later_appends_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal");
        let (mut wal, _) = open(&path);
        for i in 0..10 {
            wal.append(&r(i)).expect("append");
        }
        wal.sync().expect("sync");
        wal.append(&r(10)).expect("append"); // buffered, dropped by reset too
        wal.reset().expect("reset");
        assert_eq!(wal.len_bytes(), 0);
        assert_eq!(file_len(&path), 0);
        let (_, rec) = open(&path);
        assert!(rec.records.is_empty());

        wal.append(&r(42)).expect("append");
        wal.append(&r(43)).expect("append");
        wal.sync().expect("sync");
        assert_eq!(file_len(&path), wal.len_bytes());
        drop(wal);
        let (_, rec) = open(&path);
        assert_eq!(rec.records, vec![r(42), r(43)]);
        assert_eq!(rec.dropped_bytes, 0);
    }

    #[test]
    fn reset_of_a_log_with_nothing_durable_drops_what_is_buffered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal");
        let (mut wal, _) = open(&path);
        wal.append(&r(1)).expect("append");
        wal.reset().expect("reset");
        wal.sync().expect("sync");
        assert_eq!(file_len(&path), 0);
        wal.append(&r(2)).expect("append");
        wal.sync().expect("sync");
        drop(wal);
        let (_, rec) = open(&path);
        assert_eq!(rec.records, vec![r(2)]);
    }
}
