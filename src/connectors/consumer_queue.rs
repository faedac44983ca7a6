//! Taking fetched messages from librdkafka many at a time: one call per batch instead of
//! rust-rdkafka's one poll per message (each with a clock read, an event and a reference count),
//! which made the source's thread the bottleneck of ingestion.

use rdkafka::bindings as native;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use super::decode::Message;

/// Messages taken in one call at most.
pub const MESSAGES_PER_CALL: usize = 1024;

/// A consumer's queue of fetched messages, read in batches. Holds librdkafka's handle on the
/// queue (released on drop), so it must be dropped before the consumer it came from.
pub struct ConsumerQueue {
    queue: *mut native::rd_kafka_queue_t,
    taken: Vec<*mut native::rd_kafka_message_t>,
}

// SAFETY: librdkafka's queues and messages may be used from any thread; the queue is read only by
// the source's thread that owns this value.
unsafe impl Send for ConsumerQueue {}

/// One message of a batch, or the event librdkafka put in its place.
pub type Taken<'a> = Result<Message<'a>, QueueEvent>;

/// What librdkafka put in a message's place: an error (the broker is unreachable, say; it keeps
/// its fetch positions and goes on by itself), or, for a consumer asked for them, the news that
/// a partition's end was reached.
#[derive(Debug)]
pub struct QueueEvent {
    pub partition: i32,
    pub end_of_partition: bool,
    pub reason: String,
}

impl std::fmt::Display for QueueEvent {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.reason)
    }
}

impl ConsumerQueue {
    /// The queue `consumer` delivers its assigned partitions' messages to; `None` if it has none.
    pub fn new<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Option<Self> {
        // SAFETY: the client pointer is valid while `consumer` lives, and the queue handle
        // returned holds a reference of its own until it is destroyed in `drop`.
        let queue = unsafe { native::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
        (!queue.is_null()).then(|| Self {
            queue,
            taken: Vec::with_capacity(MESSAGES_PER_CALL),
        })
    }

    /// Takes up to `limit` (at most [`MESSAGES_PER_CALL`]) of the messages waiting, waiting up
    /// to `wait` for the first, and hands each to `each`, borrowed for the call. Returns how many
    /// were taken: 0 when the queue stayed empty.
    pub fn take(
        &mut self,
        limit: usize,
        wait: std::time::Duration,
        mut each: impl FnMut(Taken<'_>),
    ) -> usize {
        let limit = limit.clamp(1, MESSAGES_PER_CALL);
        let wait_ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        self.taken.clear();
        // SAFETY: the array has room for `limit` pointers; librdkafka writes at most that many
        // and returns how many it wrote (or -1 on error, when it wrote none).
        let count = unsafe {
            native::rd_kafka_consume_batch_queue(
                self.queue,
                wait_ms,
                self.taken.as_mut_ptr(),
                limit,
            )
        };
        let Ok(count) = usize::try_from(count) else {
            return 0;
        };
        // SAFETY: librdkafka initialised the first `count` entries.
        unsafe { self.taken.set_len(count.min(limit)) };
        for &pointer in &self.taken {
            // SAFETY: each pointer is a valid message until destroyed below; the borrowed
            // slices do not outlive `each`.
            unsafe {
                let message = &*pointer;
                if message.err == native::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    let mut kind =
                        native::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
                    let timestamp = native::rd_kafka_message_timestamp(pointer, &mut kind);
                    each(Ok(Message {
                        payload: bytes(message.payload, message.len),
                        key: bytes(message.key, message.key_len),
                        partition: message.partition,
                        offset: message.offset,
                        timestamp: (kind
                            != native::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
                            && timestamp >= 0)
                            .then_some(timestamp),
                        headers: None,
                    }));
                } else {
                    let reason = native::rd_kafka_message_errstr(pointer);
                    let reason = if reason.is_null() {
                        format!("{:?}", message.err)
                    } else {
                        std::ffi::CStr::from_ptr(reason)
                            .to_string_lossy()
                            .into_owned()
                    };
                    each(Err(QueueEvent {
                        partition: message.partition,
                        end_of_partition: message.err
                            == native::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF,
                        reason,
                    }));
                }
                native::rd_kafka_message_destroy(pointer);
            }
        }
        self.taken.clear();
        count
    }
}

/// A message's payload or key: `None` for a null pointer (no value), as Kafka distinguishes a
/// missing value from an empty one.
///
/// # Safety
/// `pointer` must be null or point at `length` readable bytes that outlive the borrow.
unsafe fn bytes<'a>(pointer: *mut std::ffi::c_void, length: usize) -> Option<&'a [u8]> {
    if pointer.is_null() {
        return None;
    }
    // SAFETY: as the caller promises.
    Some(unsafe { std::slice::from_raw_parts(pointer as *const u8, length) })
}

impl Drop for ConsumerQueue {
    fn drop(&mut self) {
        // SAFETY: the handle came from rd_kafka_queue_get_consumer and is destroyed once.
        unsafe { native::rd_kafka_queue_destroy(self.queue) };
    }
}
