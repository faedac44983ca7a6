//! Checks every message a client sends before pgwire decodes it: a malformed one ends its
//! connection with a protocol error (08P01) instead of panicking a decoder.
//!
//! pgwire 0.41 trusts what a message says about itself: a length below 4 (the length counts
//! itself) underflows, and its decoders read the counts and lengths inside Bind, Parse or a
//! SASL response past the message's end. [`CheckedStream`] sits between the socket (after TLS)
//! and pgwire's codec: it holds each message back until it has all of it, checks its layout
//! against the protocol (the fields each type has, strings ended inside it, counts and lengths
//! that fit, nothing left over), and only then lets pgwire read it. CopyData, the one message
//! that may be large and has no layout, passes through as it arrives.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Postgres refuses a startup packet longer than this (`MAX_STARTUP_PACKET_LENGTH`).
const MAX_STARTUP_LENGTH: usize = 10_000;
/// Postgres refuses any message longer than 1 GB (`PQ_LARGE_MESSAGE_LIMIT`).
const MAX_MESSAGE_LENGTH: usize = 1 << 30;
/// The request codes an untagged first message may carry instead of a protocol version.
const CANCEL_REQUEST_CODE: i32 = 80_877_102;
const SSL_REQUEST_CODE: i32 = 80_877_103;
const GSS_REQUEST_CODE: i32 = 80_877_104;

/// A client's byte stream with each message checked before it can be read.
pub struct CheckedStream<S> {
    inner: S,
    /// Bytes read from the client whose message is not whole yet, or not checked yet.
    unchecked: BytesMut,
    /// Checked bytes pgwire has not read yet.
    checked: BytesMut,
    /// The next message is the startup packet, which has no type byte.
    expect_startup: bool,
    /// No SASL initial response has been seen: Tributary authenticates only with SCRAM, so
    /// the first password message must have that layout (pgwire reads it without checking).
    expect_sasl_initial: bool,
    /// Bytes of a CopyData message still to pass through.
    passing: usize,
    /// Why the stream failed: every later read reports it.
    failed: Option<String>,
    /// While set, flushes are put off (see [`WriteCoalescing`]); the message loop and the
    /// connection's handlers hold the other ends.
    coalescing: Arc<WriteCoalescing>,
    /// What was written and not yet sent to `inner`.
    pending: BytesMut,
}

/// Answers to a client's pipelined messages (Bind, Execute, Sync sent together, as pgbench and
/// most drivers do) go out in one write, as Postgres sends them, instead of one system call per
/// message: while the message loop says more input is already waiting, flushes only keep what
/// was written. The loop flushes for real before it waits for input, and anything that makes
/// the client wait for more than a whole answer (COPY, SUBSCRIBE, rows streamed as they are
/// made) stops the holding first.
#[derive(Debug, Default)]
pub struct WriteCoalescing(std::sync::atomic::AtomicBool);

impl WriteCoalescing {
    pub fn hold(&self, holding: bool) {
        self.0.store(holding, std::sync::atomic::Ordering::Relaxed);
    }

    fn holding(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Held writes are sent anyway past this many bytes, so holding never buffers a large result.
const MAX_HELD_BYTES: usize = 64 * 1024;

impl<S> CheckedStream<S> {
    /// Wraps `inner`, whose first bytes (`already_read`, what TLS negotiation read past) are
    /// checked like the rest; the next message is the startup packet.
    pub fn new(inner: S, already_read: BytesMut, coalescing: Arc<WriteCoalescing>) -> Self {
        Self {
            inner,
            unchecked: already_read,
            checked: BytesMut::new(),
            expect_startup: true,
            expect_sasl_initial: true,
            passing: 0,
            failed: None,
            coalescing,
            pending: BytesMut::new(),
        }
    }

    /// Whether bytes from the client are here that have not been read yet.
    pub fn has_input(&self) -> bool {
        !self.checked.is_empty() || !self.unchecked.is_empty()
    }

    /// Moves what can be checked from `unchecked` to `checked`: true when something moved,
    /// false when more bytes are needed.
    fn check_available(&mut self) -> Result<bool, String> {
        if self.passing > 0 {
            let length = self.passing.min(self.unchecked.len());
            self.checked
                .extend_from_slice(&self.unchecked.split_to(length));
            self.passing -= length;
            return Ok(length > 0);
        }
        // The startup packet has no type byte and at least a protocol version in its body.
        let (tag, header, least, most) = match self.unchecked.first() {
            _ if self.expect_startup => (None, 4, 8, MAX_STARTUP_LENGTH),
            Some(&tag) => (Some(tag), 5, 4, MAX_MESSAGE_LENGTH),
            None => return Ok(false),
        };
        let Some(length_field) = self.unchecked.get(header - 4..header) else {
            return Ok(false);
        };
        let declared = i32::from_be_bytes([
            length_field[0],
            length_field[1],
            length_field[2],
            length_field[3],
        ]);
        let length = usize::try_from(declared)
            .ok()
            .filter(|length| (least..=most).contains(length))
            .ok_or_else(|| format!("invalid message length {declared}"))?;
        if tag == Some(b'd') {
            self.checked
                .extend_from_slice(&self.unchecked.split_to(header));
            self.passing = length - 4;
            return Ok(true);
        }
        let whole = header - 4 + length;
        if self.unchecked.len() < whole {
            self.unchecked.reserve(whole - self.unchecked.len());
            return Ok(false);
        }
        let body = &self.unchecked[header..whole];
        match tag {
            None => check_startup(body)?,
            Some(tag) => {
                check_message(tag, body, self.expect_sasl_initial)?;
                if tag == b'p' {
                    self.expect_sasl_initial = false;
                }
            }
        }
        self.expect_startup = false;
        self.checked
            .extend_from_slice(&self.unchecked.split_to(whole));
        Ok(true)
    }
}

/// The startup packet's body: a protocol version and NUL-ended names and values, ended by an
/// empty name; or one of the requests whose code stands where the version would.
fn check_startup(body: &[u8]) -> Result<(), String> {
    let mut fields = Fields(body);
    let code = fields.int32()?;
    if matches!(
        code,
        CANCEL_REQUEST_CODE | SSL_REQUEST_CODE | GSS_REQUEST_CODE
    ) {
        // pgwire reads these by their fixed layout, inside the length checked above.
        return Ok(());
    }
    while !fields.string()?.is_empty() {
        fields.string()?;
    }
    fields.end()
}

/// A typed message's body, by the layout of its type in the protocol.
fn check_message(tag: u8, body: &[u8], expect_sasl_initial: bool) -> Result<(), String> {
    let mut fields = Fields(body);
    match tag {
        // Query, CopyFail.
        b'Q' | b'f' => {
            fields.string()?;
        }
        // Parse: statement name, query, parameter types.
        b'P' => {
            fields.string()?;
            fields.string()?;
            let types = fields.count()?;
            fields.skip(types * 4)?;
        }
        // Bind: portal, statement, parameter formats, parameters, result formats.
        b'B' => {
            fields.string()?;
            fields.string()?;
            let formats = fields.count()?;
            fields.skip(formats * 2)?;
            for _ in 0..fields.count()? {
                fields.value()?;
            }
            let result_formats = fields.count()?;
            fields.skip(result_formats * 2)?;
        }
        // Describe, Close: what (statement or portal) and its name.
        b'D' | b'C' => {
            fields.skip(1)?;
            fields.string()?;
        }
        // Execute: portal and row limit.
        b'E' => {
            fields.string()?;
            fields.int32()?;
        }
        // Sync, Flush, Terminate, CopyDone carry nothing.
        b'S' | b'H' | b'X' | b'c' => {}
        // SASLInitialResponse: mechanism and its data; later password messages are opaque.
        b'p' if expect_sasl_initial => {
            fields.string()?;
            fields.value()?;
        }
        b'p' => return Ok(()),
        // Any other type is refused by pgwire's decoder without reading its body.
        _ => return Ok(()),
    }
    fields.end()
}

/// Reads a message's fields in order; each read fails when the body ends before it does.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn skip(&mut self, length: usize) -> Result<(), String> {
        if self.0.len() < length {
            return Err("a message ends inside a field".to_string());
        }
        self.0 = &self.0[length..];
        Ok(())
    }

    fn int32(&mut self) -> Result<i32, String> {
        let mut bytes = [0; 4];
        bytes.copy_from_slice(self.0.get(..4).ok_or("a message ends inside a field")?);
        self.0 = &self.0[4..];
        Ok(i32::from_be_bytes(bytes))
    }

    /// An Int16 count, which may not be negative.
    fn count(&mut self) -> Result<usize, String> {
        let bytes = self.0.get(..2).ok_or("a message ends inside a field")?;
        let count = i16::from_be_bytes([bytes[0], bytes[1]]);
        self.0 = &self.0[2..];
        usize::try_from(count).map_err(|_| format!("invalid count {count}"))
    }

    /// A NUL-ended string (without its NUL).
    fn string(&mut self) -> Result<&[u8], String> {
        let end = self
            .0
            .iter()
            .position(|&byte| byte == 0)
            .ok_or("a string in a message is not ended")?;
        let string = &self.0[..end];
        self.0 = &self.0[end + 1..];
        Ok(string)
    }

    /// An Int32 length (-1 for NULL) and that many bytes.
    fn value(&mut self) -> Result<(), String> {
        let length = self.int32()?;
        if length == -1 {
            return Ok(());
        }
        let length = usize::try_from(length).map_err(|_| format!("invalid length {length}"))?;
        self.skip(length)
    }

    fn end(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err("a message holds more than its fields".to_string())
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CheckedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.checked.is_empty() {
                let length = this.checked.len().min(buffer.remaining());
                buffer.put_slice(&this.checked[..length]);
                this.checked.advance(length);
                return Poll::Ready(Ok(()));
            }
            if let Some(reason) = &this.failed {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    reason.clone(),
                )));
            }
            match this.check_available() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(reason) => {
                    this.failed = Some(reason);
                    continue;
                }
            }
            this.unchecked.reserve(8 * 1024);
            let read = std::task::ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                context,
                &mut this.unchecked,
            ))?;
            if read == 0 {
                // The client closed; a message it left unfinished is dropped with it.
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> CheckedStream<S> {
    /// Sends every pending byte to `inner`.
    fn poll_send_pending(&mut self, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let written =
                std::task::ready!(Pin::new(&mut self.inner).poll_write(context, &self.pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.advance(written);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CheckedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.len() >= MAX_HELD_BYTES {
            std::task::ready!(this.poll_send_pending(context))?;
        }
        this.pending.extend_from_slice(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.coalescing.holding() && this.pending.len() < MAX_HELD_BYTES {
            return Poll::Ready(Ok(()));
        }
        std::task::ready!(this.poll_send_pending(context))?;
        Pin::new(&mut this.inner).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_send_pending(context))?;
        Pin::new(&mut this.inner).poll_shutdown(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    /// What a stream that received `bytes` after a good startup lets through, or its error.
    fn checked(bytes: &[u8]) -> Result<Vec<u8>, String> {
        let startup = b"\0\0\0\x15\0\x03\0\0user\0tester\0\0";
        let mut stream = CheckedStream::new((), BytesMut::from(&startup[..]), Arc::default());
        stream.unchecked.extend_from_slice(bytes);
        while stream.check_available()? {}
        let mut through = stream.checked.to_vec();
        assert_eq!(&through[..startup.len()], startup);
        through.drain(..startup.len());
        Ok(through)
    }

    #[test]
    fn well_formed_messages_pass_whole() {
        let mut bind = b"portal\0statement\0\0\x01\0\x01\0\x02".to_vec();
        bind.extend_from_slice(&[0, 0, 0, 2, b'4', b'2', 0xff, 0xff, 0xff, 0xff, 0, 0]);
        let sequence = [
            message(b'Q', b"SELECT 1\0"),
            message(b'P', b"\0SELECT $1\0\0\x01\0\0\0\x17"),
            message(b'B', &bind),
            message(b'D', b"P\0"),
            message(b'E', b"\0\0\0\0\0"),
            message(b'S', b""),
        ]
        .concat();
        assert_eq!(checked(&sequence), Ok(sequence.clone()));
        // A message not yet whole is held back.
        assert_eq!(
            checked(&sequence[..sequence.len() - 1]).map(|bytes| bytes.len()),
            { Ok(sequence.len() - 5) }
        );
    }

    #[test]
    fn malformed_messages_are_refused() {
        let refused = [
            b"E\0\0\0\0".to_vec(),
            b"Q\xff\xff\xff\xff".to_vec(),
            message(b'Q', b"SELECT 1"),
            message(b'P', b"\0SELECT\0\xff\xff"),
            message(b'P', b"\0SELECT\0\0\x02\0\0\0\x17"),
            message(b'B', b"\0\0\0\0\0\x01\0\0\0\x09ab\0\0"),
            message(b'B', b"\0\0\0\0\0\x01\xff\xff\xff\xfe\0\0"),
            message(b'E', b"\0\0\0"),
            message(b'S', b"\0\0\0\0"),
            message(b'p', b"SCRAM-SHA-256\0\0\0"),
        ];
        for bytes in refused {
            assert!(checked(&bytes).is_err(), "{bytes:?} was let through");
        }
    }

    #[test]
    fn copy_data_passes_as_it_arrives() {
        let mut bytes = message(b'd', &[7; 100]);
        bytes.truncate(50);
        assert_eq!(checked(&bytes).map(|through| through.len()), Ok(50));
    }

    #[test]
    fn startup_packets_must_hold_together() {
        for startup in [
            &b"\0\0\0\x04"[..],
            &b"\0\0\0\x0f\0\x03\0\0user\0tes"[..],
            &b"\0\0\0\x0c\0\x03\0\0user"[..],
        ] {
            let mut stream = CheckedStream::new((), BytesMut::from(startup), Arc::default());
            let mut outcome = Ok(true);
            while outcome == Ok(true) {
                outcome = stream.check_available();
            }
            assert!(outcome.is_err(), "{startup:?} was let through");
        }
        let cancel = b"\0\0\0\x10\x04\xd2\x16\x2e\0\0\0\x01\0\0\0\x02";
        let mut stream = CheckedStream::new((), BytesMut::from(&cancel[..]), Arc::default());
        assert_eq!(stream.check_available(), Ok(true));
    }
}
