//! One client connection's message loop: pgwire's TLS negotiation and message handling, with
//! every message the client sends checked by [`frames`](super::frames) before pgwire decodes it.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::ErrorInfo;
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use super::frames::{CheckedStream, WriteCoalescing};

/// A client that has not finished its startup and authentication by then is dropped (as
/// pgwire and Postgres's `authentication_timeout` do).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves one client until it leaves, breaks the protocol, or fails to start up in time.
/// `coalescing` is shared with the connection's handlers, which stop it before they stream.
pub async fn process_socket<H: PgWireServerHandlers>(
    socket: TcpStream,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    handlers: H,
    coalescing: std::sync::Arc<WriteCoalescing>,
) -> std::io::Result<()> {
    let startup_deadline = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_deadline);
    let negotiated = tokio::select! {
        _ = &mut startup_deadline => return Ok(()),
        negotiated = negotiate_tls(socket, tls) => negotiated?,
    };
    // A direct TLS connection to a server without TLS.
    let Some(negotiated) = negotiated else {
        return Ok(());
    };
    let parts = negotiated.into_parts();
    let mut checked_parts = FramedParts::new(
        CheckedStream::new(parts.io, parts.read_buf, std::sync::Arc::clone(&coalescing)),
        parts.codec,
    );
    checked_parts.write_buf = parts.write_buf;
    let mut socket = Framed::from_parts(checked_parts);

    let startup = handlers.startup_handler();
    let simple_query = handlers.simple_query_handler();
    let extended_query = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let next = if starting {
            tokio::select! {
                _ = &mut startup_deadline => None,
                next = socket.next() => next,
            }
        } else {
            socket.next().await
        };
        // What is held goes out with whatever comes next (an error, or nothing: the end).
        coalescing.hold(false);
        let message = match next {
            None => break,
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                // What the client sent cannot be read: say why, as Postgres does, and close.
                let info = ErrorInfo::new(
                    "FATAL".to_owned(),
                    "08P01".to_owned(),
                    format!("invalid frontend message: {error}"),
                );
                let _ = socket
                    .send(PgWireBackendMessage::ErrorResponse(info.into()))
                    .await;
                break;
            }
        };
        // The client is leaving: closing is the answer (some clients wait for it).
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let in_extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        // The answers to pipelined extended-protocol messages wait for the last of them.
        let more_input = !socket.read_buffer().is_empty() || socket.get_ref().has_input();
        coalescing.hold(
            more_input
                && matches!(
                    message,
                    PgWireFrontendMessage::Parse(_)
                        | PgWireFrontendMessage::Bind(_)
                        | PgWireFrontendMessage::Describe(_)
                        | PgWireFrontendMessage::Execute(_)
                        | PgWireFrontendMessage::Close(_)
                ),
        );
        if let Err(mut error) = process_message(
            message,
            &mut socket,
            startup.clone(),
            simple_query.clone(),
            extended_query.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await
        {
            errors.on_error(&socket, &mut error);
            process_error(&mut socket, error, in_extended_query).await?;
        }
        // Nothing more to answer before the client sends again: what was held goes out now.
        if socket.read_buffer().is_empty() && !socket.get_ref().has_input() {
            coalescing.hold(false);
            socket.flush().await?;
        }
    }
    // Answers held for messages the client sent before it left.
    coalescing.hold(false);
    let _ = socket.flush().await;
    Ok(())
}
