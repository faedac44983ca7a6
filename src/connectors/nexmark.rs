//! Nexmark load generator: the benchmark's person, auction and bid events (from the `nexmark`
//! crate) as Arrow batches for the tables in `sql/nexmark/schema.sql`.

use std::sync::Arc;

use datafusion::arrow::array::TimestampMicrosecondBuilder;
use datafusion::arrow::array::{ArrayRef, Int64Builder, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use nexmark::EventGenerator;
use nexmark::config::NexmarkConfig;
use nexmark::event::Event;

/// The three Nexmark tables' schemas, in the column order of `sql/nexmark/schema.sql`.
pub struct NexmarkSchemas {
    pub person: SchemaRef,
    pub auction: SchemaRef,
    pub bid: SchemaRef,
}

fn timestamp() -> DataType {
    DataType::Timestamp(crate::sql::types::TIMESTAMP_UNIT, None)
}

impl Default for NexmarkSchemas {
    fn default() -> Self {
        let text = |name: &str| Field::new(name, DataType::Utf8, true);
        let integer = |name: &str| Field::new(name, DataType::Int64, true);
        let time = |name: &str| Field::new(name, timestamp(), true);
        Self {
            person: Arc::new(Schema::new(vec![
                integer("id"),
                text("name"),
                text("email_address"),
                text("credit_card"),
                text("city"),
                text("state"),
                time("date_time"),
                text("extra"),
            ])),
            auction: Arc::new(Schema::new(vec![
                integer("id"),
                text("item_name"),
                text("description"),
                integer("initial_bid"),
                integer("reserve"),
                time("date_time"),
                time("expires"),
                integer("seller"),
                integer("category"),
                text("extra"),
            ])),
            bid: Arc::new(Schema::new(vec![
                integer("auction"),
                integer("bidder"),
                integer("price"),
                text("channel"),
                text("url"),
                time("date_time"),
                text("extra"),
            ])),
        }
    }
}

/// One chunk of generated events, split by table.
pub struct NexmarkBatch {
    pub person: RecordBatch,
    pub auction: RecordBatch,
    pub bid: RecordBatch,
}

impl NexmarkBatch {
    pub fn events(&self) -> usize {
        self.person.num_rows() + self.auction.num_rows() + self.bid.num_rows()
    }
}

/// The standard Nexmark event stream (`NexmarkConfig::default()`: 1 person, 3 auctions and
/// 46 bids in every 50 events), cut into batches of `batch_size` events.
pub struct NexmarkGenerator {
    events: EventGenerator,
    schemas: NexmarkSchemas,
}

impl Default for NexmarkGenerator {
    fn default() -> Self {
        Self {
            events: EventGenerator::new(NexmarkConfig::default()),
            schemas: NexmarkSchemas::default(),
        }
    }
}

/// Generated ids and prices are `usize`; the tables hold BIGINT.
fn integer(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Event times are milliseconds since 1970; TIMESTAMP columns hold microseconds.
fn micros(milliseconds: u64) -> i64 {
    i64::try_from(milliseconds)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000)
}

impl NexmarkGenerator {
    pub fn schemas(&self) -> &NexmarkSchemas {
        &self.schemas
    }

    /// The next `batch_size` events.
    pub fn next_batch(&mut self, batch_size: usize) -> Result<NexmarkBatch, ArrowError> {
        let mut person = PersonColumns::default();
        let mut auction = AuctionColumns::default();
        let mut bid = BidColumns::default();
        for event in self.events.by_ref().take(batch_size) {
            match event {
                Event::Person(p) => {
                    person.id.append_value(integer(p.id));
                    person.name.append_value(&p.name);
                    person.email_address.append_value(&p.email_address);
                    person.credit_card.append_value(&p.credit_card);
                    person.city.append_value(&p.city);
                    person.state.append_value(&p.state);
                    person.date_time.append_value(micros(p.date_time));
                    person.extra.append_value(&p.extra);
                }
                Event::Auction(a) => {
                    auction.id.append_value(integer(a.id));
                    auction.item_name.append_value(&a.item_name);
                    auction.description.append_value(&a.description);
                    auction.initial_bid.append_value(integer(a.initial_bid));
                    auction.reserve.append_value(integer(a.reserve));
                    auction.date_time.append_value(micros(a.date_time));
                    auction.expires.append_value(micros(a.expires));
                    auction.seller.append_value(integer(a.seller));
                    auction.category.append_value(integer(a.category));
                    auction.extra.append_value(&a.extra);
                }
                Event::Bid(b) => {
                    bid.auction.append_value(integer(b.auction));
                    bid.bidder.append_value(integer(b.bidder));
                    bid.price.append_value(integer(b.price));
                    bid.channel.append_value(&b.channel);
                    bid.url.append_value(&b.url);
                    bid.date_time.append_value(micros(b.date_time));
                    bid.extra.append_value(&b.extra);
                }
            }
        }
        let person = person.finish(&self.schemas.person)?;
        let auction = auction.finish(&self.schemas.auction)?;
        let bid = bid.finish(&self.schemas.bid)?;
        Ok(NexmarkBatch {
            person,
            auction,
            bid,
        })
    }
}

#[derive(Default)]
struct PersonColumns {
    id: Int64Builder,
    name: StringBuilder,
    email_address: StringBuilder,
    credit_card: StringBuilder,
    city: StringBuilder,
    state: StringBuilder,
    date_time: TimestampMicrosecondBuilder,
    extra: StringBuilder,
}

impl PersonColumns {
    fn finish(mut self, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.email_address.finish()),
            Arc::new(self.credit_card.finish()),
            Arc::new(self.city.finish()),
            Arc::new(self.state.finish()),
            Arc::new(self.date_time.finish()),
            Arc::new(self.extra.finish()),
        ];
        RecordBatch::try_new(Arc::clone(schema), columns)
    }
}

#[derive(Default)]
struct AuctionColumns {
    id: Int64Builder,
    item_name: StringBuilder,
    description: StringBuilder,
    initial_bid: Int64Builder,
    reserve: Int64Builder,
    date_time: TimestampMicrosecondBuilder,
    expires: TimestampMicrosecondBuilder,
    seller: Int64Builder,
    category: Int64Builder,
    extra: StringBuilder,
}

impl AuctionColumns {
    fn finish(mut self, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.item_name.finish()),
            Arc::new(self.description.finish()),
            Arc::new(self.initial_bid.finish()),
            Arc::new(self.reserve.finish()),
            Arc::new(self.date_time.finish()),
            Arc::new(self.expires.finish()),
            Arc::new(self.seller.finish()),
            Arc::new(self.category.finish()),
            Arc::new(self.extra.finish()),
        ];
        RecordBatch::try_new(Arc::clone(schema), columns)
    }
}

#[derive(Default)]
struct BidColumns {
    auction: Int64Builder,
    bidder: Int64Builder,
    price: Int64Builder,
    channel: StringBuilder,
    url: StringBuilder,
    date_time: TimestampMicrosecondBuilder,
    extra: StringBuilder,
}

impl BidColumns {
    fn finish(mut self, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.auction.finish()),
            Arc::new(self.bidder.finish()),
            Arc::new(self.price.finish()),
            Arc::new(self.channel.finish()),
            Arc::new(self.url.finish()),
            Arc::new(self.date_time.finish()),
            Arc::new(self.extra.finish()),
        ];
        RecordBatch::try_new(Arc::clone(schema), columns)
    }
}
