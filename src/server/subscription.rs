//! Streams a subscription to its client: as data rows of one result that never completes, or
//! as COPY data, each epoch's changes flushed as soon as they are published, until the client
//! cancels (57014), the subscription ends, or the client goes away.

use std::fmt::Debug;
use std::sync::Arc;

use futures::{Sink, SinkExt};
use pgwire::api::portal::Format;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyOutResponse};
use pgwire::messages::data::RowDescription;

use super::CancelSignal;
use super::encode;
use crate::error::{Error, ExecutionError};
use crate::statements::SubscriptionRows;

/// How the rows reach the client.
pub(super) enum Output {
    /// COPY data in text format (COPY (SUBSCRIBE ...) TO STDOUT).
    Copy,
    /// Data rows; with `describe`, a RowDescription first (the simple protocol; the extended
    /// protocol's Describe sent it already).
    Rows { describe: bool, format: Format },
}

impl Output {
    /// COPY data when `copy`, else data rows in `format`, after a RowDescription if `describe`.
    pub(super) fn new(copy: bool, format: Format, describe: bool) -> Self {
        if copy {
            Output::Copy
        } else {
            Output::Rows { describe, format }
        }
    }
}

/// Streams until the subscription stops; returns why, for the caller to report as the
/// statement's error. A failure to send means the client is gone: that ends the connection.
pub(super) async fn stream<C>(
    client: &mut C,
    mut rows: SubscriptionRows,
    output: Output,
    cancel: &mut CancelSignal,
) -> PgWireResult<Error>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let format = match &output {
        Output::Copy => Format::UnifiedText,
        Output::Rows { format, .. } => format.clone(),
    };
    let fields = Arc::new(encode::fields(rows.schema(), &format)?);
    match &output {
        Output::Copy => {
            let columns = fields.len() as i16;
            const TEXT: i8 = 0;
            client
                .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
                    TEXT,
                    columns,
                    vec![TEXT as i16; fields.len()],
                )))
                .await?;
        }
        Output::Rows { describe: true, .. } => {
            let description = RowDescription::new(fields.iter().map(Into::into).collect());
            client
                .send(PgWireBackendMessage::RowDescription(description))
                .await?;
        }
        Output::Rows {
            describe: false, ..
        } => {}
    }
    let copy_text = crate::copy::text_options();
    loop {
        let batch = tokio::select! {
            batch = rows.next_batch() => batch,
            _ = cancel.requested() => return Ok(ExecutionError::QueryCanceled.into()),
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(error) => return Ok(error),
        };
        for row in encode::data_rows(&fields, std::slice::from_ref(&batch))? {
            let message = match output {
                Output::Copy => PgWireBackendMessage::CopyData(CopyData::new({
                    let mut line = Vec::new();
                    copy_text.line(&mut line, &row, &[]);
                    line.into()
                })),
                Output::Rows { .. } => PgWireBackendMessage::DataRow(row),
            };
            client.feed(message).await?;
        }
        // Each epoch reaches the client as soon as it is published.
        client.flush().await?;
    }
}
