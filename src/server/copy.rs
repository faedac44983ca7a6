//! COPY's messages: `TO STDOUT` sends CopyOutResponse, one CopyData per row and CopyDone;
//! `FROM STDIN` answers CopyInResponse, collects the client's CopyData until CopyDone, and only
//! then writes the rows, so a bad line or a CopyFail leaves the table as it was.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::ClientInfo;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::Format as ResultFormat;
use pgwire::api::results::{CopyResponse, Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail, CopyOutResponse};

use super::{CancelSignal, QueryHandler, encode, to_pgwire_error};
use crate::copy::Format;
use crate::error::{Error, ExecutionError};
use crate::statements::{CopyIn, CopyOut};

/// A COPY FROM STDIN between its CopyInResponse and the client's CopyDone or CopyFail: what
/// to write and the data so far.
pub(super) struct PendingCopy {
    copy: CopyIn,
    data: Vec<u8>,
}

impl QueryHandler {
    /// Starts a COPY FROM STDIN: pgwire sends the CopyInResponse and hands the client's copy
    /// messages to this handler's [`CopyHandler`].
    pub(super) fn start_copy_in(&self, copy: CopyIn) -> Response {
        let format = copy.options.format.wire_code();
        let columns = copy.column_count();
        *crate::error::lock(&self.copy_in) = Some(PendingCopy {
            copy,
            data: Vec::new(),
        });
        Response::CopyIn(CopyResponse::new(format, columns, futures::stream::empty()))
    }
}

/// Sends a COPY TO STDOUT's rows as they are made. Returns the completion, or the error that
/// stopped the rows (the caller reports it); a failure to send means the client is gone.
pub(super) async fn send_out<C>(
    client: &mut C,
    mut copy: CopyOut,
    cancel: &mut CancelSignal,
) -> PgWireResult<Result<Response, Error>>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let format = copy.options.format;
    let row_format = match format {
        Format::Binary => ResultFormat::UnifiedBinary,
        Format::Text | Format::Csv => ResultFormat::UnifiedText,
    };
    let fields = Arc::new(encode::fields(&copy.schema, &row_format)?);
    let names = copy.column_names();
    let code = format.wire_code();
    client
        .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            code,
            fields.len() as i16,
            vec![i16::from(code); fields.len()],
        )))
        .await?;
    // Postgres sends the header in the same message as the first row (or the trailer), and
    // readers of binary COPY (tokio-postgres's) expect it there.
    let mut header = match format {
        Format::Binary => crate::copy::binary_header(),
        Format::Text | Format::Csv if copy.options.header => copy.options.header_line(&names),
        Format::Text | Format::Csv => Vec::new(),
    };
    let mut rows = 0;
    loop {
        let batch = tokio::select! {
            batch = copy.next() => batch,
            _ = cancel.requested() => return Ok(Err(ExecutionError::QueryCanceled.into())),
        };
        let batch = match batch {
            None => break,
            Some(Ok(batch)) => batch,
            Some(Err(error)) => return Ok(Err(error)),
        };
        for row in encode::data_rows(&fields, std::slice::from_ref(&batch))? {
            let mut data = std::mem::take(&mut header);
            match format {
                Format::Binary => crate::copy::binary_row(&mut data, &row),
                Format::Text | Format::Csv => copy.options.line(&mut data, &row, &names),
            }
            client
                .feed(PgWireBackendMessage::CopyData(CopyData::new(data.into())))
                .await?;
            rows += 1;
        }
    }
    if format == Format::Binary {
        header.extend_from_slice(&crate::copy::BINARY_TRAILER);
    }
    if !header.is_empty() {
        client
            .feed(PgWireBackendMessage::CopyData(CopyData::new(header.into())))
            .await?;
    }
    client
        .send(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await?;
    Ok(Ok(Response::Execution(Tag::new("COPY").with_rows(rows))))
}

#[async_trait]
impl CopyHandler for QueryHandler {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(pending) = crate::error::lock(&self.copy_in).as_mut() {
            pending.data.extend_from_slice(&copy_data.data);
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(PendingCopy { copy, data }) = crate::error::lock(&self.copy_in).take() else {
            let error = ExecutionError::Internal("CopyDone without a COPY in progress".into());
            return Err(to_pgwire_error(&error.into()));
        };
        let tag = self
            .session
            .finish_copy(copy, &data)
            .await
            .map_err(|error| to_pgwire_error(&error))?;
        let rows = tag.rows.unwrap_or_default() as usize;
        client
            .send(PgWireBackendMessage::CommandComplete(
                Tag::new(&tag.command).with_rows(rows).into(),
            ))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        crate::error::lock(&self.copy_in).take();
        to_pgwire_error(&ExecutionError::CopyFailed(fail.message).into())
    }
}
