//! The on-disk encoding shared by the write-ahead log and checkpoints: little-endian numbers,
//! length-prefixed bytes, Arrow IPC streams for rows, and CRC-32 checksums.

use std::io::Cursor;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;

/// Why bytes could not be decoded; the caller names the file.
pub type DecodeError = String;

/// Appends values to a byte buffer.
#[derive(Default)]
pub struct Encoder {
    bytes: Vec<u8>,
}

impl Encoder {
    pub fn u8(&mut self, value: u8) -> &mut Self {
        self.bytes.push(value);
        self
    }

    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub fn i64(&mut self, value: i64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub fn i128(&mut self, value: i128) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub fn f64(&mut self, value: f64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.u64(value.len() as u64);
        self.bytes.extend_from_slice(value);
        self
    }

    pub fn string(&mut self, value: &str) -> &mut Self {
        self.bytes(value.as_bytes())
    }

    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads values back in the order an [`Encoder`] wrote them. Every read checks the length left,
/// so a truncated or garbled buffer is an error, never a panic.
pub struct Decoder<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.position >= self.bytes.len()
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .position
            .checked_add(length)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "needs {length} more bytes at offset {} of {}",
                    self.position,
                    self.bytes.len()
                )
            })?;
        let taken = &self.bytes[self.position..end];
        self.position = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub fn i128(&mut self) -> Result<i128, DecodeError> {
        Ok(i128::from_le_bytes(self.array()?))
    }

    pub fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    /// A count of things that follow; refused when it could not fit in what is left, so a
    /// corrupted count cannot make the reader allocate without bound.
    pub fn count(&mut self) -> Result<usize, DecodeError> {
        let count = self.u64()?;
        let left = (self.bytes.len() - self.position) as u64;
        if count > left {
            return Err(format!("a count of {count} with {left} bytes left"));
        }
        Ok(count as usize)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let length = self.count()?;
        self.take(length)
    }

    pub fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|error| error.to_string())
    }
}

/// Rows as one Arrow IPC stream (schema first, then the batches).
pub fn encode_batches(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let mut writer = StreamWriter::try_new(&mut bytes, schema).map_err(|e| e.to_string())?;
    for batch in batches {
        writer.write(batch).map_err(|error| error.to_string())?;
    }
    writer.finish().map_err(|error| error.to_string())?;
    drop(writer);
    Ok(bytes)
}

pub fn decode_batches(bytes: &[u8]) -> Result<Vec<RecordBatch>, DecodeError> {
    let reader =
        StreamReader::try_new(Cursor::new(bytes), None).map_err(|error| error.to_string())?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| error.to_string())
}

/// CRC-32 (IEEE), the checksum of every log record and checkpoint file.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(bytes);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_truncation_is_an_error() {
        let mut encoder = Encoder::default();
        encoder
            .u8(7)
            .u64(u64::MAX)
            .i64(-5)
            .i128(-1 << 100)
            .f64(2.5)
            .string("naïve");
        let bytes = encoder.finish();
        let mut decoder = Decoder::new(&bytes);
        assert_eq!(decoder.u8(), Ok(7));
        assert_eq!(decoder.u64(), Ok(u64::MAX));
        assert_eq!(decoder.i64(), Ok(-5));
        assert_eq!(decoder.i128(), Ok(-1 << 100));
        assert_eq!(decoder.f64(), Ok(2.5));
        assert_eq!(decoder.string().as_deref(), Ok("naïve"));
        assert!(decoder.is_empty());
        let mut truncated = Decoder::new(&bytes[..bytes.len() - 1]);
        let _ = (truncated.u8(), truncated.u64(), truncated.i64());
        let _ = (truncated.i128(), truncated.f64());
        assert!(truncated.string().is_err());
        assert!(Decoder::new(&bytes[..3]).u64().is_err());
        assert!(Decoder::new(&[0xff; 8]).count().is_err());
    }
}
