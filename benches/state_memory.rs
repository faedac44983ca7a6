//! Bytes of operator state: how much memory the incremental operators keep per group and per
//! row, measured by a counting allocator around the operators themselves (the bytes they
//! request; the allocator's own overhead comes on top).
//!
//! `cargo bench --bench state_memory` prints:
//! - GROUP BY an integer key with sum and count: state bytes per group;
//! - an equality join on an integer key: state bytes per row held on one side;
//! - a top-3 per group (ROW_NUMBER): state bytes per input row.
//!
//! `TRIBUTARY_BENCH_GROUPS` overrides the number of groups / rows (default 1,000,000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use datafusion::arrow::array::{Int32Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::physical_expr::expressions::col;
use tributary::dataflow::aggregate::{Aggregate, AggregateCall, AggregateFunction};
use tributary::dataflow::join::{Join, JoinDefinition, JoinKind};
use tributary::dataflow::top_n::{SortKey, TopN, TopNDefinition};
use tributary::dataflow::{ChangeBatch, Operator};

/// Counts the bytes currently allocated through it.
struct Counting;

static ALLOCATED: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            ALLOCATED.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        ALLOCATED.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            ALLOCATED.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        moved
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocated() -> isize {
    ALLOCATED.load(Ordering::Relaxed)
}

const BATCH: usize = 65_536;

fn schema(value: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int32, true),
        Field::new(value, DataType::Int64, true),
    ]))
}

/// Rows `(k, k * 7)` for k in `range`, as insertions.
fn rows(schema: &SchemaRef, range: std::ops::Range<usize>) -> ChangeBatch {
    let keys: Int32Array = range.clone().map(|k| k as i32).collect();
    let values: Int64Array = range.map(|k| k as i64 * 7).collect();
    let batch = RecordBatch::try_new(Arc::clone(schema), vec![Arc::new(keys), Arc::new(values)])
        .expect("batch");
    ChangeBatch::insertions(batch)
}

/// Feeds `count` distinct keys to `operator` on `port`, closes the epoch, drops the output,
/// and returns the bytes the operator holds afterwards per key.
fn state_per_key(
    operator: &mut dyn Operator,
    port: usize,
    schema: &SchemaRef,
    count: usize,
    before: isize,
) -> f64 {
    let mut start = 0;
    while start < count {
        let end = (start + BATCH).min(count);
        let output = operator
            .process(port, rows(schema, start..end))
            .expect("process");
        drop(output);
        start = end;
    }
    drop(operator.barrier(1).expect("barrier"));
    (allocated() - before) as f64 / count as f64
}

fn main() {
    let count: usize = std::env::var("TRIBUTARY_BENCH_GROUPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let left = schema("v");
    let right = schema("w");

    let before = allocated();
    let output_schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int32, true),
        Field::new("total", DataType::Int64, true),
        Field::new("n", DataType::Int64, true),
    ]));
    let calls = vec![
        AggregateCall {
            function: AggregateFunction::Sum,
            argument: col("v", &left).expect("column"),
            input_type: DataType::Int64,
            output_type: DataType::Int64,
            distinct: false,
            filter: None,
            order_by: Vec::new(),
            delimiter: String::new(),
        },
        AggregateCall {
            function: AggregateFunction::Count,
            argument: col("v", &left).expect("column"),
            input_type: DataType::Int64,
            output_type: DataType::Int64,
            distinct: false,
            filter: None,
            order_by: Vec::new(),
            delimiter: String::new(),
        },
    ];
    let mut aggregate = Aggregate::new(
        vec![col("k", &left).expect("column")],
        vec![DataType::Int32],
        calls,
        output_schema,
    )
    .expect("aggregate");
    let per_group = state_per_key(&mut aggregate, 0, &left, count, before);
    drop(aggregate);
    println!(
        "GROUP BY integer key, sum and count: {per_group:.1} bytes of state per group ({count} groups; target 64)"
    );

    let before = allocated();
    let joined = Arc::new(Schema::new(
        left.fields()
            .iter()
            .chain(right.fields().iter())
            .cloned()
            .collect::<Vec<_>>(),
    ));
    let mut join = Join::new(JoinDefinition {
        kind: JoinKind::Inner,
        left_keys: vec![col("k", &left).expect("column")],
        right_keys: vec![col("k", &right).expect("column")],
        key_types: vec![DataType::Int32],
        filter: None,
        nulls_equal: false,
        null_aware: false,
        left_schema: Arc::clone(&left),
        right_schema: Arc::clone(&right),
        output_schema: joined,
    })
    .expect("join");
    let per_row = state_per_key(&mut join, 0, &left, count, before);
    drop(join);
    println!(
        "equality join on an integer key: {per_row:.1} bytes of state per row held ({count} rows, one key each)"
    );

    let before = allocated();
    let numbered = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int32, true),
        Field::new("v", DataType::Int64, true),
        Field::new("n", DataType::UInt64, true),
    ]));
    let mut top_n = TopN::new(TopNDefinition {
        partition_by: vec![col("k", &left).expect("column")],
        partition_types: vec![DataType::Int32],
        order_by: vec![SortKey {
            expression: col("v", &left).expect("column"),
            data_type: DataType::Int64,
            descending: true,
            nulls_first: true,
        }],
        offset: 0,
        limit: Some(3),
        row_number: true,
        input_schema: Arc::clone(&left),
        output_schema: numbered,
    })
    .expect("top-n");
    let per_row = state_per_key(&mut top_n, 0, &left, count, before);
    drop(top_n);
    println!(
        "top 3 per group (ROW_NUMBER): {per_row:.1} bytes of state per input row ({count} rows, one per group)"
    );
}
