//! Kafka's RecordBatch v2 (magic 2): the header as stored and sent on the wire, its CRC-32C,
//! the in-place edits a leader makes on append (base offset, partition leader epoch, max
//! timestamp), and the validation a produce request goes through before it may touch a log
//! (Kafka's `ProduceRequest.validateRecords`, `UnifiedLog.analyzeAndValidateRecords` and
//! `LogValidator`).
//!
//! Records are never decoded into structs: validation walks their varint framing in place to
//! count them and check their offset deltas and keys, which is all the broker needs. A
//! compressed batch is walked through a decompressing reader, never inflated into one buffer:
//! a megabyte of gzip or zstd can expand to gigabytes, and Kafka streams them too, so memory
//! stays bounded whatever a producer sends.
//!
//! Layout of a batch (big-endian), byte offsets from the batch start:
//! ```text
//!  0 baseOffset i64 | 8 batchLength i32 | 12 partitionLeaderEpoch i32 | 16 magic i8 | 17 crc u32
//! 21 attributes i16 | 23 lastOffsetDelta i32 | 27 baseTimestamp i64 | 35 maxTimestamp i64
//! 43 producerId i64 | 51 producerEpoch i16 | 53 baseSequence i32 | 57 recordsCount i32 | 61 records
//! ```
//! The CRC covers bytes 21.. (attributes to the end), so a leader can set the base offset and
//! the leader epoch without recomputing it.

use std::io::{BufRead, BufReader, Read};
use std::ops::ControlFlow;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::records::{Compression, TimestampType};

/// Size of the base offset and length fields that precede every batch (Kafka's `LOG_OVERHEAD`).
pub const LOG_OVERHEAD: usize = 12;
/// The only record format weir stores.
pub const MAGIC_V2: i8 = 2;

const LENGTH_OFFSET: usize = 8;
const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const LAST_OFFSET_DELTA_OFFSET: usize = 23;
const BASE_TIMESTAMP_OFFSET: usize = 27;
const MAX_TIMESTAMP_OFFSET: usize = 35;
const PRODUCER_ID_OFFSET: usize = 43;
const PRODUCER_EPOCH_OFFSET: usize = 51;
const BASE_SEQUENCE_OFFSET: usize = 53;
const RECORDS_COUNT_OFFSET: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;
/// KIP-534: the base timestamp holds the delete horizon of the batch's tombstones.
pub(crate) const DELETE_HORIZON_BIT: i16 = 1 << 6;

/// Errors map 1:1 to Kafka error codes so the front can answer with them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// CRC mismatch, bad lengths, truncated data -> CORRUPT_MESSAGE (2).
    #[error("corrupt record batch: {0}")]
    CorruptMessage(String),
    /// Header and records disagree, several batches, control batch from a client ->
    /// INVALID_RECORD (87).
    #[error("invalid record batch: {0}")]
    InvalidRecord(String),
    /// A batch larger than `max.message.bytes` -> MESSAGE_TOO_LARGE (10).
    #[error("record batch of {size} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge { size: usize, max: usize },
    /// Magic other than 2. Kafka's `ProduceRequest.validateRecords` answers INVALID_RECORD (87)
    /// for it on Produce v3+, so that is what [`BatchError::kafka_code`] returns.
    #[error("record batch magic {0} is not supported (only v2)")]
    UnsupportedMagic(i8),
    /// Compression codec id outside 0..=4 -> UNSUPPORTED_COMPRESSION_TYPE (76).
    #[error("unsupported compression codec id {0}")]
    UnsupportedCompression(i16),
    /// A client set the LogAppendTime flag -> INVALID_TIMESTAMP (32).
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// Records a compacted topic cannot take (no key) -> INVALID_RECORD (87), naming each one
    /// by its index in the batch. Produce v8+ returns them as `record_errors` (KIP-467), and
    /// librdkafka then fails exactly those records with INVALID_RECORD and the batch's others
    /// with `_INVALID_DIFFERENT_RECORD`. The message is Kafka's `LogValidator` text.
    #[error(
        "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
        .0.len(),
        .0.iter().take(3).map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    RecordErrors(Vec<RecordError>),
}

/// One rejected record of a batch: its index in the batch and why (Kafka's `RecordError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub batch_index: i32,
    pub message: String,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RecordError(batchIndex={}, message='{}')",
            self.batch_index, self.message
        )
    }
}

impl BatchError {
    /// Kafka's error code for this error.
    pub fn kafka_code(&self) -> i16 {
        match self {
            BatchError::CorruptMessage(_) => 2,
            BatchError::InvalidRecord(_) => 87,
            BatchError::MessageTooLarge { .. } => 10,
            BatchError::UnsupportedMagic(_) => 87,
            BatchError::UnsupportedCompression(_) => 76,
            BatchError::InvalidTimestamp(_) => 32,
            BatchError::RecordErrors(_) => 87,
        }
    }
}

/// A RecordBatch v2 header, parsed without checking the CRC or touching the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}
fn be_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}
fn be_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}
fn be_i64(buf: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(b)
}

impl BatchHeader {
    /// Bytes from the batch start to the first record (Kafka's `RECORD_BATCH_OVERHEAD`).
    pub const SIZE: usize = 61;

    /// Parses the header at the start of `buf`. Checks the magic, that the length field can
    /// hold a header, and the compression codec; not the CRC (see [`verify_crc`]).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() <= MAGIC_OFFSET {
            return Err(BatchError::CorruptMessage(format!(
                "{} bytes cannot hold a record batch header",
                buf.len()
            )));
        }
        let magic = buf[MAGIC_OFFSET] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        if buf.len() < Self::SIZE {
            return Err(BatchError::CorruptMessage(format!(
                "record batch header truncated at {} of {} bytes",
                buf.len(),
                Self::SIZE
            )));
        }
        let batch_length = be_i32(buf, LENGTH_OFFSET);
        if batch_length < (Self::SIZE - LOG_OVERHEAD) as i32 {
            return Err(BatchError::CorruptMessage(format!(
                "record batch length {batch_length} is smaller than the header"
            )));
        }
        let attributes = be_i16(buf, ATTRIBUTES_OFFSET);
        let codec = attributes & COMPRESSION_MASK;
        if codec > 4 {
            return Err(BatchError::UnsupportedCompression(codec));
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length,
            partition_leader_epoch: be_i32(buf, PARTITION_LEADER_EPOCH_OFFSET),
            magic,
            crc: be_u32(buf, CRC_OFFSET),
            attributes,
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_OFFSET),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP_OFFSET),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_OFFSET),
            producer_id: be_i64(buf, PRODUCER_ID_OFFSET),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH_OFFSET),
            base_sequence: be_i32(buf, BASE_SEQUENCE_OFFSET),
            records_count: be_i32(buf, RECORDS_COUNT_OFFSET),
        })
    }

    /// The header as stored: the 61 bytes [`BatchHeader::parse`] reads, from these fields
    /// (the CRC field as it is: callers that change a field inside the CRC recompute it).
    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[..8].copy_from_slice(&self.base_offset.to_be_bytes());
        b[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&self.batch_length.to_be_bytes());
        b[PARTITION_LEADER_EPOCH_OFFSET..PARTITION_LEADER_EPOCH_OFFSET + 4]
            .copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
        b[MAGIC_OFFSET] = self.magic as u8;
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&self.crc.to_be_bytes());
        b[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&self.attributes.to_be_bytes());
        b[LAST_OFFSET_DELTA_OFFSET..LAST_OFFSET_DELTA_OFFSET + 4]
            .copy_from_slice(&self.last_offset_delta.to_be_bytes());
        b[BASE_TIMESTAMP_OFFSET..BASE_TIMESTAMP_OFFSET + 8]
            .copy_from_slice(&self.base_timestamp.to_be_bytes());
        b[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8]
            .copy_from_slice(&self.max_timestamp.to_be_bytes());
        b[PRODUCER_ID_OFFSET..PRODUCER_ID_OFFSET + 8]
            .copy_from_slice(&self.producer_id.to_be_bytes());
        b[PRODUCER_EPOCH_OFFSET..PRODUCER_EPOCH_OFFSET + 2]
            .copy_from_slice(&self.producer_epoch.to_be_bytes());
        b[BASE_SEQUENCE_OFFSET..BASE_SEQUENCE_OFFSET + 4]
            .copy_from_slice(&self.base_sequence.to_be_bytes());
        b[RECORDS_COUNT_OFFSET..RECORDS_COUNT_OFFSET + 4]
            .copy_from_slice(&self.records_count.to_be_bytes());
        b
    }

    /// Sets the timestamp type and max timestamp (both inside the CRC) and recomputes the CRC
    /// over the new header and `records` (the batch's bytes after its header), without
    /// touching the records.
    pub(crate) fn with_max_timestamp(
        mut self,
        timestamp_type: TimestampType,
        max_timestamp: i64,
        records: &[u8],
    ) -> BatchHeader {
        let attributes = match timestamp_type {
            TimestampType::LogAppend => self.attributes | TIMESTAMP_TYPE_BIT,
            TimestampType::Creation => self.attributes & !TIMESTAMP_TYPE_BIT,
        };
        if attributes == self.attributes && max_timestamp == self.max_timestamp {
            return self;
        }
        self.attributes = attributes;
        self.max_timestamp = max_timestamp;
        let header = self.encode();
        self.crc = crc32c::crc32c_append(crc32c::crc32c(&header[ATTRIBUTES_OFFSET..]), records);
        self
    }

    /// Whole batch size on disk: the 12 bytes of offset and length plus `batch_length`.
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Saturating: the base offset is outside the CRC, so a damaged one must not overflow.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(self.last_offset_delta as i64)
    }

    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    pub fn compression(&self) -> Compression {
        match self.attributes & COMPRESSION_MASK {
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            // `parse` refuses ids above 4.
            _ => Compression::None,
        }
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppend
        } else {
            TimestampType::Creation
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// KIP-534's delete horizon, set by the log cleaner on a batch holding tombstones: they
    /// may go from the first clean at or after this time. Stored in the base timestamp.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes & DELETE_HORIZON_BIT != 0).then_some(self.base_timestamp)
    }
}

/// CRC-32C (Castagnoli) of a whole batch's checksummed part.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..])
}

/// Checks the stored CRC of one whole batch (`batch` is exactly `total_size` bytes).
pub fn verify_crc(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    let actual = compute_crc(batch);
    if actual != header.crc {
        return Err(BatchError::CorruptMessage(format!(
            "record batch CRC-32C is {actual:#010x}, header says {:#010x}",
            header.crc
        )));
    }
    Ok(())
}

/// Sets the base offset in place (outside the CRC). Tests only: the log writes headers from
/// [`BatchHeader::encode`].
#[cfg(test)]
pub(crate) fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Sets the partition leader epoch in place (outside the CRC).
#[cfg(test)]
pub(crate) fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[PARTITION_LEADER_EPOCH_OFFSET..PARTITION_LEADER_EPOCH_OFFSET + 4]
        .copy_from_slice(&epoch.to_be_bytes());
}

/// Sets max timestamp and timestamp type (both inside the CRC) and recomputes the CRC;
/// returns the new header. The in-place twin of [`BatchHeader::with_max_timestamp`].
#[cfg(test)]
pub(crate) fn set_max_timestamp(
    batch: &mut [u8],
    header: &BatchHeader,
    timestamp_type: TimestampType,
    max_timestamp: i64,
) -> BatchHeader {
    let mut header = *header;
    let attributes = match timestamp_type {
        TimestampType::LogAppend => header.attributes | TIMESTAMP_TYPE_BIT,
        TimestampType::Creation => header.attributes & !TIMESTAMP_TYPE_BIT,
    };
    if attributes == header.attributes && max_timestamp == header.max_timestamp {
        return header;
    }
    header.attributes = attributes;
    header.max_timestamp = max_timestamp;
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8]
        .copy_from_slice(&max_timestamp.to_be_bytes());
    header.crc = compute_crc(batch);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&header.crc.to_be_bytes());
    header
}

/// What a produce request's `records` field holds after validation (Kafka's LogValidator):
/// exactly one batch, magic 2, CRC-32C valid, record count and lastOffsetDelta agree with
/// its records (decompressing when compressed), no larger than `max_batch_bytes`.
///
/// The bytes are the request's own (a slice of the frame read from the socket), never copied:
/// what the broker changes before storing a batch (base offset, leader epoch, and the max
/// timestamp with its CRC) all lies in the 61-byte header, so `headers` holds the header to
/// store and the log writes it followed by the client's records in one vectored write.
#[derive(Debug, Clone)]
pub struct ValidatedBatches {
    /// The batches as the client sent them; each one's header is superseded by `headers`.
    pub bytes: Bytes,
    /// One header per batch in `bytes`, in order (Produce v3+ allows exactly one): the
    /// header to store.
    pub headers: Vec<BatchHeader>,
    /// Records over all batches.
    pub record_count: usize,
}

impl ValidatedBatches {
    /// The batches as they would be stored: each header from `headers`, then its records
    /// (one copy; the log itself never needs it).
    pub fn stored_bytes(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(self.bytes.len());
        let mut position = 0;
        for h in &self.headers {
            out.extend_from_slice(&h.encode());
            out.extend_from_slice(
                &self.bytes[position + BatchHeader::SIZE..position + h.total_size()],
            );
            position += h.total_size();
        }
        out
    }
}

/// Validates a produce request's records for one partition as Kafka does before an append.
/// `require_keys` is set for compacted topics (Kafka: every record needs a key).
///
/// Departures from Kafka, all on inputs no real client sends: bytes after the one batch are
/// refused (Kafka silently drops a trailing partial batch), compressed batches whose inner
/// offset deltas are not 0,1,2.. are refused (Kafka rewrites them), and the LogAppendTime flag
/// from a client is always refused.
pub fn validate_client_batches(
    records: Bytes,
    max_batch_bytes: usize,
    require_keys: bool,
) -> Result<ValidatedBatches, BatchError> {
    if records.is_empty() {
        return Err(BatchError::InvalidRecord(
            "produce request holds no record batch".into(),
        ));
    }
    let header = BatchHeader::parse(&records)?;
    let size = header.total_size();
    if size > records.len() {
        return Err(BatchError::CorruptMessage(format!(
            "record batch declares {size} bytes but the request holds {}",
            records.len()
        )));
    }
    if size < records.len() {
        return Err(BatchError::InvalidRecord(
            "produce requests may contain exactly one record batch per partition".into(),
        ));
    }
    if header.base_offset != 0 {
        return Err(BatchError::InvalidRecord(format!(
            "the base offset of a produced record batch must be 0, not {}",
            header.base_offset
        )));
    }
    if size > max_batch_bytes {
        return Err(BatchError::MessageTooLarge {
            size,
            max: max_batch_bytes,
        });
    }
    verify_crc(&records, &header)?;
    check_client_header(&header)?;

    let mut max_delta = i64::MIN;
    let mut record_errors = Vec::new();
    let count = walk_batch_records(
        header.compression(),
        records.slice(BatchHeader::SIZE..),
        header.records_count,
        |record| {
            if record.offset_delta != record.index as i32 {
                return Err(BatchError::InvalidRecord(format!(
                    "record {} has offset delta {}, expected {}",
                    record.index, record.offset_delta, record.index
                )));
            }
            if require_keys && !record.has_key {
                record_errors.push(RecordError {
                    batch_index: record.index as i32,
                    message: "Compacted topic cannot accept message without key.".into(),
                });
            }
            max_delta = max_delta.max(record.timestamp_delta);
            Ok(ControlFlow::Continue(()))
        },
    )?;
    if count != header.records_count as usize {
        return Err(BatchError::InvalidRecord(format!(
            "batch declares {} records but holds {count}",
            header.records_count
        )));
    }
    if !record_errors.is_empty() {
        return Err(BatchError::RecordErrors(record_errors));
    }

    // Kafka's LogValidator stores the max of the record timestamps as the batch max timestamp.
    let max_timestamp = header.base_timestamp.saturating_add(max_delta);
    let header = header.with_max_timestamp(
        TimestampType::Creation,
        max_timestamp,
        &records[BatchHeader::SIZE..],
    );
    Ok(ValidatedBatches {
        bytes: records,
        headers: vec![header],
        record_count: count,
    })
}

/// The header checks Kafka's `LogValidator.validateBatch` makes for client appends.
fn check_client_header(header: &BatchHeader) -> Result<(), BatchError> {
    if header.last_offset_delta < 0 {
        return Err(BatchError::InvalidRecord(format!(
            "batch has an invalid offset range: last offset delta {}",
            header.last_offset_delta
        )));
    }
    if header.records_count <= 0 {
        return Err(BatchError::InvalidRecord(format!(
            "invalid reported record count {}",
            header.records_count
        )));
    }
    if header.last_offset_delta as i64 + 1 != header.records_count as i64 {
        return Err(BatchError::InvalidRecord(format!(
            "inconsistent last offset delta {} and record count {}",
            header.last_offset_delta, header.records_count
        )));
    }
    if header.is_control() {
        return Err(BatchError::InvalidRecord(
            "clients are not allowed to write control records".into(),
        ));
    }
    if header.has_producer_id() && header.base_sequence < 0 {
        return Err(BatchError::InvalidRecord(format!(
            "invalid sequence number {} for producer id {}",
            header.base_sequence, header.producer_id
        )));
    }
    if header.timestamp_type() == TimestampType::LogAppend {
        return Err(BatchError::InvalidTimestamp(
            "producers must not set the timestamp type to LogAppendTime".into(),
        ));
    }
    Ok(())
}

/// Walks the records section `data` of a batch compressed with `compression` (see
/// [`walk_records`]), decompressing as it goes (gzip, lz4 and zstd through a streaming
/// decoder, snappy one block at a time), so memory stays bounded however far the records
/// expand.
pub(crate) fn walk_batch_records(
    compression: Compression,
    data: Bytes,
    expected: i32,
    visit: impl FnMut(RecordView) -> Result<ControlFlow<()>, BatchError>,
) -> Result<usize, BatchError> {
    let corrupt = |e: std::io::Error| {
        BatchError::CorruptMessage(format!("cannot decompress {compression:?} records: {e}"))
    };
    match compression {
        Compression::None => walk_records(&mut SliceSource::new(&data), expected, visit),
        Compression::Snappy => walk_records(&mut SnappySource::new(data)?, expected, visit),
        // Java's GZIPInputStream reads concatenated members too.
        Compression::Gzip => walk_records(
            &mut StreamSource::new(
                flate2::read::MultiGzDecoder::new(data.reader()),
                compression,
            ),
            expected,
            visit,
        ),
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(data.reader()).map_err(corrupt)?;
            walk_records(
                &mut StreamSource::new(decoder, compression),
                expected,
                visit,
            )
        }
        Compression::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::with_buffer(data.reader()).map_err(corrupt)?;
            walk_records(
                &mut StreamSource::new(decoder, compression),
                expected,
                visit,
            )
        }
    }
}

/// Where [`walk_records`] reads a records section from.
pub(crate) trait RecordSource {
    /// The next byte; `None` at the end of the records section.
    fn next_byte(&mut self) -> Result<Option<u8>, BatchError>;
    /// Skips `n` bytes; false when the section ends first.
    fn skip(&mut self, n: usize) -> Result<bool, BatchError>;
    /// Bytes of the (decompressed) section consumed so far.
    fn position(&self) -> usize;
}

/// Records in memory: uncompressed, or decompressed whole.
pub(crate) struct SliceSource<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> SliceSource<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        SliceSource { buf, pos: 0 }
    }
}

impl RecordSource for SliceSource<'_> {
    fn position(&self) -> usize {
        self.pos
    }

    fn next_byte(&mut self) -> Result<Option<u8>, BatchError> {
        let b = self.buf.get(self.pos).copied();
        self.pos += b.is_some() as usize;
        Ok(b)
    }

    fn skip(&mut self, n: usize) -> Result<bool, BatchError> {
        if n > self.buf.len() - self.pos {
            self.pos = self.buf.len();
            return Ok(false);
        }
        self.pos += n;
        Ok(true)
    }
}

/// Snappy records as Kafka clients send them: Java's xerial framing (an 8-byte magic, version
/// and compatibility words, then blocks of a big-endian u32 length and a raw snappy block,
/// each 32 KiB uncompressed) or, from librdkafka, one raw snappy block. Blocks are
/// decompressed one at a time, each after checking that the length its header declares is one
/// snappy can produce from its size, so a lying header cannot make the broker allocate
/// gigabytes.
struct SnappySource {
    /// The compressed blocks not decompressed yet.
    rest: Bytes,
    framed: bool,
    /// The current block, decompressed.
    block: Vec<u8>,
    pos: usize,
    /// Decompressed bytes consumed before the current block.
    before_block: usize,
}

impl SnappySource {
    const XERIAL_MAGIC: &'static [u8] = b"\x82SNAPPY\x00";
    const XERIAL_HEADER: usize = 16;
    /// A copy tag of 3 bytes yields at most 64 bytes: no valid block expands further.
    const MAX_EXPANSION: usize = 22;

    fn new(data: Bytes) -> Result<Self, BatchError> {
        let framed = data.len() >= Self::XERIAL_HEADER && data.starts_with(Self::XERIAL_MAGIC);
        let mut source = SnappySource {
            rest: data,
            framed,
            block: Vec::new(),
            pos: 0,
            before_block: 0,
        };
        if framed {
            source.rest.advance(Self::XERIAL_HEADER);
        } else {
            let raw = std::mem::take(&mut source.rest);
            source.decompress(&raw)?;
        }
        Ok(source)
    }

    fn corrupt(why: impl std::fmt::Display) -> BatchError {
        BatchError::CorruptMessage(format!("cannot decompress Snappy records: {why}"))
    }

    fn decompress(&mut self, compressed: &[u8]) -> Result<(), BatchError> {
        let len = snap::raw::decompress_len(compressed).map_err(Self::corrupt)?;
        if len > compressed.len().saturating_mul(Self::MAX_EXPANSION) {
            return Err(Self::corrupt(format!(
                "a block of {} bytes claims {len} bytes uncompressed",
                compressed.len()
            )));
        }
        self.before_block += self.block.len();
        self.block.clear();
        self.block.resize(len, 0);
        let n = snap::raw::Decoder::new()
            .decompress(compressed, &mut self.block)
            .map_err(Self::corrupt)?;
        self.block.truncate(n);
        self.pos = 0;
        Ok(())
    }

    /// Makes the current block hold unread bytes; false at the end of the records.
    fn fill(&mut self) -> Result<bool, BatchError> {
        while self.pos == self.block.len() {
            if !self.framed || self.rest.is_empty() {
                return Ok(false);
            }
            if self.rest.len() < 4 {
                return Err(Self::corrupt("truncated block length"));
            }
            let len = self.rest.get_u32() as usize;
            if len > self.rest.len() {
                return Err(Self::corrupt(format!(
                    "a block of {len} bytes with {} left",
                    self.rest.len()
                )));
            }
            let compressed = self.rest.split_to(len);
            self.decompress(&compressed)?;
        }
        Ok(true)
    }
}

impl RecordSource for SnappySource {
    fn position(&self) -> usize {
        self.before_block + self.pos
    }

    fn next_byte(&mut self) -> Result<Option<u8>, BatchError> {
        if !self.fill()? {
            return Ok(None);
        }
        self.pos += 1;
        Ok(Some(self.block[self.pos - 1]))
    }

    fn skip(&mut self, mut n: usize) -> Result<bool, BatchError> {
        while n > 0 {
            if !self.fill()? {
                return Ok(false);
            }
            let k = (self.block.len() - self.pos).min(n);
            self.pos += k;
            n -= k;
        }
        Ok(true)
    }
}

/// Records read through a decompressing reader: a decoder failure is a corrupt batch.
struct StreamSource<R> {
    reader: BufReader<R>,
    compression: Compression,
    /// Decompressed bytes consumed.
    consumed: usize,
}

impl<R: Read> StreamSource<R> {
    /// Enough to amortize the per-read cost of a decoder.
    const BUFFER: usize = 64 * 1024;

    fn new(decoder: R, compression: Compression) -> Self {
        StreamSource {
            reader: BufReader::with_capacity(Self::BUFFER, decoder),
            compression,
            consumed: 0,
        }
    }

    fn fill(&mut self) -> Result<&[u8], BatchError> {
        let compression = self.compression;
        self.reader.fill_buf().map_err(|e| {
            BatchError::CorruptMessage(format!("cannot decompress {compression:?} records: {e}"))
        })
    }
}

impl<R: Read> RecordSource for StreamSource<R> {
    fn position(&self) -> usize {
        self.consumed
    }

    fn next_byte(&mut self) -> Result<Option<u8>, BatchError> {
        let b = self.fill()?.first().copied();
        if b.is_some() {
            self.reader.consume(1);
            self.consumed += 1;
        }
        Ok(b)
    }

    fn skip(&mut self, mut n: usize) -> Result<bool, BatchError> {
        while n > 0 {
            let available = self.fill()?.len();
            if available == 0 {
                return Ok(false);
            }
            let k = available.min(n);
            self.reader.consume(k);
            self.consumed += k;
            n -= k;
        }
        Ok(true)
    }
}

/// The records section of a stored batch, decompressed whole (the log cleaner rewrites
/// batches it has already accepted; client batches are validated as they decompress,
/// through [`walk_batch_records`], never inflated like this).
pub(crate) fn decompress(compression: Compression, mut data: Bytes) -> Result<Bytes, BatchError> {
    fn take(buf: &mut Bytes) -> anyhow::Result<Bytes> {
        Ok(std::mem::take(buf))
    }
    let result = match compression {
        Compression::None => return Ok(data),
        Compression::Gzip => <Gzip as Decompressor<Bytes>>::decompress(&mut data, take),
        Compression::Snappy => <Snappy as Decompressor<Bytes>>::decompress(&mut data, take),
        Compression::Lz4 => <Lz4 as Decompressor<Bytes>>::decompress(&mut data, take),
        Compression::Zstd => <Zstd as Decompressor<Bytes>>::decompress(&mut data, take),
    };
    result.map_err(|e| {
        BatchError::CorruptMessage(format!("cannot decompress {compression:?} records: {e:#}"))
    })
}

/// The records section compressed with `compression` (the codec a rewritten batch keeps).
pub(crate) fn compress(compression: Compression, records: &[u8]) -> Result<Bytes, BatchError> {
    fn put(records: &[u8]) -> impl FnOnce(&mut BytesMut) -> anyhow::Result<()> + '_ {
        move |buf| {
            buf.extend_from_slice(records);
            Ok(())
        }
    }
    let mut out = BytesMut::new();
    let result = match compression {
        Compression::None => return Ok(Bytes::copy_from_slice(records)),
        Compression::Gzip => <Gzip as Compressor<BytesMut>>::compress(&mut out, put(records)),
        Compression::Snappy => <Snappy as Compressor<BytesMut>>::compress(&mut out, put(records)),
        Compression::Lz4 => <Lz4 as Compressor<BytesMut>>::compress(&mut out, put(records)),
        Compression::Zstd => <Zstd as Compressor<BytesMut>>::compress(&mut out, put(records)),
    };
    result.map_err(|e| {
        BatchError::CorruptMessage(format!("cannot compress {compression:?} records: {e:#}"))
    })?;
    Ok(out.freeze())
}

/// Appends one batch to `out`: the 61-byte header from `h` (its length, magic and CRC
/// computed here; `records_count` as given) followed by the (possibly compressed) records
/// section. Returns the header as written.
pub(crate) fn write_batch(out: &mut Vec<u8>, h: &BatchHeader, records: &[u8]) -> BatchHeader {
    let start = out.len();
    let batch_length = (BatchHeader::SIZE - LOG_OVERHEAD + records.len()) as i32;
    out.extend_from_slice(&h.base_offset.to_be_bytes());
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&h.partition_leader_epoch.to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&[0; 4]); // CRC, below
    out.extend_from_slice(&h.attributes.to_be_bytes());
    out.extend_from_slice(&h.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&h.base_timestamp.to_be_bytes());
    out.extend_from_slice(&h.max_timestamp.to_be_bytes());
    out.extend_from_slice(&h.producer_id.to_be_bytes());
    out.extend_from_slice(&h.producer_epoch.to_be_bytes());
    out.extend_from_slice(&h.base_sequence.to_be_bytes());
    out.extend_from_slice(&h.records_count.to_be_bytes());
    out.extend_from_slice(records);
    let crc = compute_crc(&out[start..]);
    out[start + CRC_OFFSET..start + CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    BatchHeader {
        batch_length,
        magic: MAGIC_V2,
        crc,
        ..*h
    }
}

/// Kafka's zig-zag varint (records' int32 fields).
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_unsigned_varint(out, ((v << 1) ^ (v >> 31)) as u32 as u64);
}

/// Kafka's zig-zag varlong (records' int64 fields).
pub(crate) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_unsigned_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_unsigned_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One record's framing as [`walk_records`] sees it. Ranges index the records section the
/// walk was given (decompressed).
#[derive(Debug, Clone)]
pub(crate) struct RecordView {
    /// Position of the record in its batch.
    pub index: usize,
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub has_key: bool,
    /// The key's bytes; `None` for a null key.
    pub key: Option<std::ops::Range<usize>>,
    /// False for a null value (a tombstone).
    pub has_value: bool,
    /// The whole record, its length varint included (what a rewrite copies as is).
    pub record: std::ops::Range<usize>,
    /// From the key length to the end of the record: what a rewrite that changes the
    /// timestamp delta copies after the re-encoded deltas.
    pub after_deltas: std::ops::Range<usize>,
}

/// Walks up to `expected` records of a records section, checking every length field, and
/// returns how many there were; `visit` may stop the walk early (then nothing after the
/// record it stopped at is checked). Trailing bytes after `expected` records, or fewer records
/// than `expected`, are errors (Kafka: "Incorrect declared batch size").
pub(crate) fn walk_records<S: RecordSource>(
    src: &mut S,
    expected: i32,
    mut visit: impl FnMut(RecordView) -> Result<ControlFlow<()>, BatchError>,
) -> Result<usize, BatchError> {
    let mut index = 0usize;
    while index < expected.max(0) as usize {
        let record_start = src.position();
        let Some(first) = src.next_byte()? else {
            return Err(BatchError::InvalidRecord(format!(
                "batch declares {expected} records but holds {index}"
            )));
        };
        let len = zigzag32(raw_varint(first, 5, || src.next_byte())?);
        if len < 0 {
            return Err(BatchError::InvalidRecord(format!(
                "record {index} declares {len} bytes"
            )));
        }
        let mut rec = RecordReader {
            src: &mut *src,
            index,
            left: len as usize,
        };
        rec.skip(1)?; // record attributes, unused in v2
        let timestamp_delta = rec.varlong()?;
        let offset_delta = rec.varint()?;
        let after_deltas = rec.src.position();
        let key_len = rec.varint()?;
        let key_start = rec.src.position();
        rec.skip_nullable(key_len, "key")?;
        let key = (key_len >= 0).then(|| key_start..rec.src.position());
        let value_len = rec.varint()?;
        rec.skip_nullable(value_len, "value")?;
        let headers = rec.varint()?;
        if headers < 0 {
            return Err(BatchError::InvalidRecord(format!(
                "record {index} has a negative header count {headers}"
            )));
        }
        for _ in 0..headers {
            let header_key_len = rec.varint()?;
            if header_key_len < 0 {
                return Err(BatchError::InvalidRecord(format!(
                    "record {index} has a header key of negative size {header_key_len}"
                )));
            }
            rec.skip(header_key_len as usize)?;
            let header_value_len = rec.varint()?;
            rec.skip_nullable(header_value_len, "header value")?;
        }
        if rec.left != 0 {
            return Err(BatchError::InvalidRecord(format!(
                "record {index} declares {len} bytes but its fields take {}",
                len as usize - rec.left
            )));
        }
        let end = src.position();
        let flow = visit(RecordView {
            index,
            offset_delta,
            timestamp_delta,
            has_key: key_len >= 0,
            key,
            has_value: value_len >= 0,
            record: record_start..end,
            after_deltas: after_deltas..end,
        })?;
        index += 1;
        if flow.is_break() {
            return Ok(index);
        }
    }
    if src.next_byte()?.is_some() {
        return Err(BatchError::InvalidRecord(format!(
            "bytes remain after the {expected} declared records"
        )));
    }
    Ok(index)
}

/// Reads one record's fields, never past the length the record declares.
struct RecordReader<'a, S> {
    src: &'a mut S,
    index: usize,
    /// Bytes of the record not read yet.
    left: usize,
}

impl<S: RecordSource> RecordReader<'_, S> {
    fn overrun(&self, what: String) -> BatchError {
        BatchError::InvalidRecord(format!("record {}: {what}", self.index))
    }

    fn skip(&mut self, n: usize) -> Result<(), BatchError> {
        if n > self.left {
            return Err(self.overrun(format!(
                "field of {n} bytes overruns the record ({} remain)",
                self.left
            )));
        }
        if !self.src.skip(n)? {
            return Err(self.overrun("the records section ends inside the record".into()));
        }
        self.left -= n;
        Ok(())
    }

    fn skip_nullable(&mut self, len: i32, what: &str) -> Result<(), BatchError> {
        match len {
            -1 => Ok(()),
            n if n < -1 => Err(self.overrun(format!("{what} has invalid size {n}"))),
            n => self.skip(n as usize),
        }
    }

    /// The next byte of the record; an error at its declared end or the section's end.
    fn byte(&mut self) -> Result<u8, BatchError> {
        if self.left == 0 {
            return Err(self.overrun("truncated in a varint".into()));
        }
        match self.src.next_byte()? {
            Some(b) => {
                self.left -= 1;
                Ok(b)
            }
            None => Err(self.overrun("the records section ends inside the record".into())),
        }
    }

    fn varint(&mut self) -> Result<i32, BatchError> {
        let first = self.byte()?;
        Ok(zigzag32(raw_varint(first, 5, || self.byte().map(Some))?))
    }

    fn varlong(&mut self) -> Result<i64, BatchError> {
        let first = self.byte()?;
        let raw = raw_varint(first, 10, || self.byte().map(Some))?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }
}

/// An unsigned LEB128 varint of at most `max_bytes`, starting with `first`.
fn raw_varint(
    first: u8,
    max_bytes: usize,
    mut next: impl FnMut() -> Result<Option<u8>, BatchError>,
) -> Result<u64, BatchError> {
    let mut value = (first & 0x7f) as u64;
    let mut b = first;
    for i in 1..max_bytes {
        if b & 0x80 == 0 {
            return Ok(value);
        }
        b = next()?
            .ok_or_else(|| BatchError::InvalidRecord("record truncated in a varint".into()))?;
        value |= ((b & 0x7f) as u64) << (7 * i);
    }
    if b & 0x80 == 0 {
        Ok(value)
    } else {
        Err(BatchError::InvalidRecord("varint is too long".into()))
    }
}

/// Kafka's zig-zag decoding of a 32-bit varint.
fn zigzag32(raw: u64) -> i32 {
    let raw = raw as u32;
    ((raw >> 1) as i32) ^ -((raw & 1) as i32)
}

/// Calls `visit` with `(offset, timestamp)` of each record of one stored batch, in order,
/// until it breaks (decompressing as it reads). LogAppendTime batches report the batch max
/// timestamp for every record, as Kafka's `DefaultRecordBatch` does.
pub(crate) fn visit_record_offsets_and_timestamps(
    batch: &Bytes,
    header: &BatchHeader,
    mut visit: impl FnMut(i64, i64) -> ControlFlow<()>,
) -> Result<(), BatchError> {
    let log_append = header.timestamp_type() == TimestampType::LogAppend;
    walk_batch_records(
        header.compression(),
        batch.slice(BatchHeader::SIZE..header.total_size()),
        header.records_count,
        |r| {
            let ts = if log_append {
                header.max_timestamp
            } else {
                header.base_timestamp.saturating_add(r.timestamp_delta)
            };
            Ok(visit(
                header.base_offset.saturating_add(r.offset_delta as i64),
                ts,
            ))
        },
    )?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions};

    /// A batch exactly as a client encodes it: `n` records, timestamps `ts0 + i`.
    pub(crate) fn client_batch(n: usize, ts0: i64, compression: Compression, keyed: bool) -> Bytes {
        let keys: Vec<String> = (0..n).map(|i| format!("key-{i}")).collect();
        let values: Vec<String> = (0..n).map(|i| format!("value-{i}")).collect();
        let records: Vec<(Option<&str>, Option<&str>)> = (0..n)
            .map(|i| (keyed.then_some(keys[i].as_str()), Some(values[i].as_str())))
            .collect();
        records_batch(&records, ts0, None, compression)
    }

    /// A batch as a client encodes it from `(key, value)` pairs (`None`: null), timestamps
    /// `ts0, ts0 + 1, ...`; with `producer` = `(id, epoch, base sequence)`, an idempotent
    /// producer's batch.
    pub(crate) fn records_batch(
        records: &[(Option<&str>, Option<&str>)],
        ts0: i64,
        producer: Option<(i64, i16, i32)>,
        compression: Compression,
    ) -> Bytes {
        let (producer_id, producer_epoch, base_sequence) = producer.unwrap_or((-1, -1, -1));
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (key, value))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id,
                producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder splits batches where offset - sequence changes; this keeps one
                // batch (base sequence -1 without a producer, as a plain client sends).
                sequence: base_sequence.wrapping_add(i as i32),
                timestamp: ts0 + i as i64,
                key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
                value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encode a test batch");
        buf.freeze()
    }

    fn all_offsets_and_timestamps(batch: &Bytes, header: &BatchHeader) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        visit_record_offsets_and_timestamps(batch, header, |o, t| {
            out.push((o, t));
            ControlFlow::Continue(())
        })
        .unwrap();
        out
    }

    /// Rewrites a field inside the CRC and fixes the CRC, so only the field's check can fail.
    fn patch(batch: &Bytes, at: usize, bytes: &[u8]) -> Bytes {
        let mut b = BytesMut::from(&batch[..]);
        b[at..at + bytes.len()].copy_from_slice(bytes);
        let crc = compute_crc(&b);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        b.freeze()
    }

    #[test]
    fn header_parses_the_fields_a_client_wrote() {
        let batch = client_batch(3, 1_000, Compression::None, true);
        let h = BatchHeader::parse(&batch).unwrap();
        assert_eq!(h.base_offset, 0);
        assert_eq!(h.magic, 2);
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.base_timestamp, 1_000);
        assert_eq!(h.max_timestamp, 1_002);
        assert_eq!(h.total_size(), batch.len());
        assert_eq!(h.next_offset(), 3);
        assert_eq!(h.compression(), Compression::None);
        assert!(!h.has_producer_id());
        verify_crc(&batch, &h).unwrap();
    }

    #[test]
    fn crc_is_castagnoli_not_ieee() {
        let batch = client_batch(2, 0, Compression::None, false);
        let h = BatchHeader::parse(&batch).unwrap();
        assert_eq!(h.crc, crc32c::crc32c(&batch[21..]));
        assert_ne!(h.crc, crc32fast::hash(&batch[21..]));
    }

    #[test]
    fn valid_batches_pass_with_every_codec() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = client_batch(5, 100, codec, true);
            let v = validate_client_batches(batch.clone(), 1 << 20, true)
                .unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            assert_eq!(v.record_count, 5);
            assert_eq!(v.headers.len(), 1);
            assert_eq!(v.headers[0].compression(), codec);
            assert_eq!(
                &v.bytes[..],
                &batch[..],
                "{codec:?} bytes must be stored as sent"
            );
        }
    }

    #[test]
    fn crc_mismatch_is_corrupt_message() {
        let batch = client_batch(3, 0, Compression::None, false);
        let mut b = BytesMut::from(&batch[..]);
        let last = b.len() - 1;
        b[last] ^= 0x01;
        let err = validate_client_batches(b.freeze(), 1 << 20, false).unwrap_err();
        assert!(matches!(err, BatchError::CorruptMessage(_)), "{err}");
        assert_eq!(err.kafka_code(), 2);
    }

    #[test]
    fn truncated_batch_is_corrupt_message() {
        let batch = client_batch(3, 0, Compression::None, false);
        let err =
            validate_client_batches(batch.slice(..batch.len() - 4), 1 << 20, false).unwrap_err();
        assert!(matches!(err, BatchError::CorruptMessage(_)), "{err}");
    }

    #[test]
    fn record_count_disagreeing_with_records_is_invalid_record() {
        let batch = client_batch(3, 0, Compression::None, false);
        // Count 4 and lastOffsetDelta 3 agree with each other but not with the 3 records.
        let b = patch(&batch, LAST_OFFSET_DELTA_OFFSET, &3i32.to_be_bytes());
        let b = patch(&b, RECORDS_COUNT_OFFSET, &4i32.to_be_bytes());
        let err = validate_client_batches(b, 1 << 20, false).unwrap_err();
        assert!(matches!(err, BatchError::InvalidRecord(_)), "{err}");
        assert_eq!(err.kafka_code(), 87);
    }

    #[test]
    fn compressed_record_count_is_checked_after_decompression() {
        let batch = client_batch(3, 0, Compression::Lz4, false);
        let b = patch(&batch, LAST_OFFSET_DELTA_OFFSET, &1i32.to_be_bytes());
        let b = patch(&b, RECORDS_COUNT_OFFSET, &2i32.to_be_bytes());
        let err = validate_client_batches(b, 1 << 20, false).unwrap_err();
        assert!(matches!(err, BatchError::InvalidRecord(_)), "{err}");
    }

    #[test]
    fn last_offset_delta_disagreeing_with_count_is_invalid_record() {
        let batch = client_batch(3, 0, Compression::None, false);
        let b = patch(&batch, LAST_OFFSET_DELTA_OFFSET, &5i32.to_be_bytes());
        let err = validate_client_batches(b, 1 << 20, false).unwrap_err();
        assert!(matches!(err, BatchError::InvalidRecord(_)), "{err}");
    }

    #[test]
    fn keyless_record_on_compacted_topic_is_invalid_record() {
        let batch = client_batch(2, 0, Compression::Gzip, false);
        let err = validate_client_batches(batch.clone(), 1 << 20, true).unwrap_err();
        assert_eq!(err.kafka_code(), 87);
        validate_client_batches(batch, 1 << 20, false).unwrap();
    }

    #[test]
    fn keyless_records_on_compacted_topic_are_named_by_batch_index() {
        let records = [
            (None, Some("a")),
            (Some("k1"), Some("b")),
            (Some("k2"), Some("c")),
            (None, Some("d")),
            (Some("k4"), None),
        ];
        for compression in [Compression::None, Compression::Lz4] {
            let batch = records_batch(&records, 0, None, compression);
            let err = validate_client_batches(batch, 1 << 20, true).unwrap_err();
            let BatchError::RecordErrors(errors) = &err else {
                panic!("expected record errors, got {err}");
            };
            let indexes: Vec<i32> = errors.iter().map(|e| e.batch_index).collect();
            assert_eq!(indexes, vec![0, 3], "only the keyless records are named");
            assert_eq!(err.kafka_code(), 87);
            assert!(
                err.to_string().starts_with(
                    "One or more records have been rejected due to 2 record errors in total"
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn oversized_batch_is_message_too_large() {
        let batch = client_batch(10, 0, Compression::None, false);
        let err = validate_client_batches(batch.clone(), batch.len() - 1, false).unwrap_err();
        assert_eq!(
            err,
            BatchError::MessageTooLarge {
                size: batch.len(),
                max: batch.len() - 1
            }
        );
        assert_eq!(err.kafka_code(), 10);
    }

    #[test]
    fn old_magic_is_refused_as_kafka_does() {
        let batch = client_batch(1, 0, Compression::None, false);
        let mut b = BytesMut::from(&batch[..]);
        b[MAGIC_OFFSET] = 1;
        let err = validate_client_batches(b.freeze(), 1 << 20, false).unwrap_err();
        assert_eq!(err, BatchError::UnsupportedMagic(1));
    }

    #[test]
    fn unknown_codec_is_unsupported_compression() {
        let batch = client_batch(1, 0, Compression::None, false);
        let b = patch(&batch, ATTRIBUTES_OFFSET, &5i16.to_be_bytes());
        let err = validate_client_batches(b, 1 << 20, false).unwrap_err();
        assert_eq!(err, BatchError::UnsupportedCompression(5));
        assert_eq!(err.kafka_code(), 76);
    }

    #[test]
    fn two_batches_in_one_produce_are_invalid_record() {
        let a = client_batch(1, 0, Compression::None, false);
        let mut both = BytesMut::from(&a[..]);
        both.extend_from_slice(&a);
        let err = validate_client_batches(both.freeze(), 1 << 20, false).unwrap_err();
        assert!(matches!(err, BatchError::InvalidRecord(_)), "{err}");
    }

    #[test]
    fn control_batch_from_client_is_invalid_record() {
        let batch = client_batch(1, 0, Compression::None, false);
        let b = patch(&batch, ATTRIBUTES_OFFSET, &CONTROL_BIT.to_be_bytes());
        let err = validate_client_batches(b, 1 << 20, false).unwrap_err();
        assert!(matches!(err, BatchError::InvalidRecord(_)), "{err}");
    }

    #[test]
    fn nonzero_base_offset_from_client_is_invalid_record() {
        let batch = client_batch(1, 0, Compression::None, false);
        let mut b = BytesMut::from(&batch[..]);
        set_base_offset(&mut b, 7);
        let err = validate_client_batches(b.freeze(), 1 << 20, false).unwrap_err();
        assert!(matches!(err, BatchError::InvalidRecord(_)), "{err}");
    }

    #[test]
    fn empty_records_are_invalid_record() {
        let err = validate_client_batches(Bytes::new(), 1 << 20, false).unwrap_err();
        assert!(matches!(err, BatchError::InvalidRecord(_)), "{err}");
    }

    #[test]
    fn garbage_never_panics() {
        // Every prefix and a byte flip at every position of a valid batch: an error or a
        // success, never a panic.
        let batch = client_batch(4, 0, Compression::Snappy, true);
        for len in 0..batch.len() {
            let _ = validate_client_batches(batch.slice(..len), 1 << 20, true);
        }
        for i in 0..batch.len() {
            let b = patch(&batch, i.max(ATTRIBUTES_OFFSET), &[batch[i.max(21)] ^ 0xff]);
            let _ = validate_client_batches(b, 1 << 20, true);
        }
    }

    /// This process's peak resident memory (VmHWM), in bytes.
    fn peak_rss() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    }

    /// One record whose value is `value_len` zero bytes, compressed with `codec` as a stream
    /// (the test never holds the uncompressed bytes either), in a valid client batch.
    fn batch_expanding_to(value_len: usize, codec: Compression) -> Bytes {
        fn varint(out: &mut Vec<u8>, v: i64) {
            let mut z = ((v << 1) ^ (v >> 63)) as u64;
            while z >= 0x80 {
                out.push((z as u8) | 0x80);
                z >>= 7;
            }
            out.push(z as u8);
        }
        let mut body = vec![0u8]; // attributes
        varint(&mut body, 0); // timestamp delta
        varint(&mut body, 0); // offset delta
        varint(&mut body, -1); // null key
        varint(&mut body, value_len as i64);
        let mut record = Vec::new();
        varint(&mut record, (body.len() + value_len + 1) as i64);
        record.extend_from_slice(&body);
        let records = std::io::Read::chain(
            std::io::Read::chain(
                &record[..],
                std::io::Read::take(std::io::repeat(0), value_len as u64),
            ),
            &[0u8][..], // no headers
        );
        let mut compressed = Vec::new();
        match codec {
            Compression::Gzip => {
                let mut e =
                    flate2::write::GzEncoder::new(&mut compressed, flate2::Compression::fast());
                std::io::copy(&mut { records }, &mut e).unwrap();
                e.finish().unwrap();
            }
            Compression::Lz4 => {
                let mut e = lz4::EncoderBuilder::new().build(&mut compressed).unwrap();
                std::io::copy(&mut { records }, &mut e).unwrap();
                e.finish().1.unwrap();
            }
            Compression::Zstd => zstd::stream::copy_encode(records, &mut compressed, 1).unwrap(),
            other => panic!("{other:?} is not a streaming codec"),
        }
        let mut b = BytesMut::from(&client_batch(1, 0, codec, false)[..BatchHeader::SIZE]);
        b.extend_from_slice(&compressed);
        let length = (b.len() - LOG_OVERHEAD) as i32;
        b[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&length.to_be_bytes());
        let crc = compute_crc(&b);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        b.freeze()
    }

    #[test]
    fn compressed_batches_are_validated_without_inflating_them() {
        // 64 MiB of records in well under a megabyte: Kafka accepts it, and the broker must
        // not hold it uncompressed (a megabyte of zstd can claim terabytes).
        const EXPANDED: usize = 64 << 20;
        for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
            let batch = batch_expanding_to(EXPANDED, codec);
            assert!(batch.len() < 2 << 20, "{codec:?}: {} bytes", batch.len());
            let before = peak_rss();
            let v = validate_client_batches(batch.clone(), 4 << 20, false)
                .unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            assert_eq!(v.record_count, 1);
            let h = v.headers[0];
            let mut seen = Vec::new();
            visit_record_offsets_and_timestamps(&v.bytes, &h, |o, t| {
                seen.push((o, t));
                ControlFlow::Continue(())
            })
            .unwrap();
            assert_eq!(seen, vec![(0, 0)]);
            let grew = peak_rss().saturating_sub(before);
            assert!(
                grew < (EXPANDED / 2) as u64,
                "{codec:?}: peak memory grew by {} MiB",
                grew >> 20
            );
        }
    }

    #[test]
    fn snappy_block_claiming_more_than_it_can_hold_is_corrupt_message() {
        // A block header is a varint length; snappy cannot expand 5 bytes to 4 GB.
        let mut lying = vec![0x80, 0xd0, 0xac, 0xf3, 0x0e]; // 4 000 000 000
        lying.extend_from_slice(&[0; 3]);
        let mut framed = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        framed.extend_from_slice(&(lying.len() as u32).to_be_bytes());
        framed.extend_from_slice(&lying);
        for (what, payload) in [("raw", lying.clone()), ("xerial", framed)] {
            let mut b = BytesMut::from(
                &client_batch(1, 0, Compression::Snappy, false)[..BatchHeader::SIZE],
            );
            b.extend_from_slice(&payload);
            let length = (b.len() - LOG_OVERHEAD) as i32;
            b[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&length.to_be_bytes());
            let crc = compute_crc(&b);
            b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
            let before = peak_rss();
            let err = validate_client_batches(b.freeze(), 1 << 20, false).unwrap_err();
            assert_eq!(err.kafka_code(), 2, "{what}: {err}");
            assert!(peak_rss() - before < 64 << 20, "{what}: memory spiked");
        }
    }

    #[test]
    fn max_timestamp_is_recomputed_from_the_records() {
        let batch = client_batch(3, 1_000, Compression::None, false);
        let b = patch(&batch, MAX_TIMESTAMP_OFFSET, &5i64.to_be_bytes());
        let v = validate_client_batches(b, 1 << 20, false).unwrap();
        assert_eq!(v.headers[0].max_timestamp, 1_002);
        let stored = v.stored_bytes();
        let h = BatchHeader::parse(&stored).unwrap();
        assert_eq!(h, v.headers[0]);
        verify_crc(&stored, &h).unwrap();
        assert_eq!(&stored[BatchHeader::SIZE..], &batch[BatchHeader::SIZE..]);
    }

    #[test]
    fn header_encoding_round_trips_and_new_max_timestamp_matches_the_in_place_edit() {
        let batch = client_batch(4, 1_000, Compression::None, false);
        let h = BatchHeader::parse(&batch).unwrap();
        assert_eq!(&h.encode()[..], &batch[..BatchHeader::SIZE]);
        let mut b = BytesMut::from(&batch[..]);
        let in_place = set_max_timestamp(&mut b, &h, TimestampType::LogAppend, 99);
        let computed =
            h.with_max_timestamp(TimestampType::LogAppend, 99, &batch[BatchHeader::SIZE..]);
        assert_eq!(computed, in_place);
        assert_eq!(&computed.encode()[..], &b[..BatchHeader::SIZE]);
        verify_crc(&b, &computed).unwrap();
    }

    #[test]
    fn offsets_and_epoch_are_set_outside_the_crc() {
        let batch = client_batch(3, 0, Compression::None, false);
        let mut b = BytesMut::from(&batch[..]);
        set_base_offset(&mut b, 42);
        set_partition_leader_epoch(&mut b, 7);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (42, 7));
        verify_crc(&b, &h).unwrap();
    }

    #[test]
    fn log_append_time_rewrites_crc() {
        let batch = client_batch(3, 0, Compression::Zstd, false);
        let mut b = BytesMut::from(&batch[..]);
        let h = BatchHeader::parse(&b).unwrap();
        let h2 = set_max_timestamp(&mut b, &h, TimestampType::LogAppend, 99);
        assert_eq!(h2.timestamp_type(), TimestampType::LogAppend);
        assert_eq!(BatchHeader::parse(&b).unwrap(), h2);
        verify_crc(&b, &h2).unwrap();
        assert_eq!(
            all_offsets_and_timestamps(&b.freeze(), &h2),
            vec![(0, 99), (1, 99), (2, 99)]
        );
    }

    #[test]
    fn record_offsets_and_timestamps_follow_the_deltas() {
        let batch = client_batch(3, 500, Compression::Gzip, false);
        let mut b = BytesMut::from(&batch[..]);
        set_base_offset(&mut b, 10);
        let b = b.freeze();
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(
            all_offsets_and_timestamps(&b, &h),
            vec![(10, 500), (11, 501), (12, 502)]
        );
    }
}
