//! Subscriptions (SUBSCRIBE): a relation's rows as of one epoch, then every later epoch's changes,
//! handed to the client's session as the coordinator publishes them.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::datatypes::SchemaRef;
use tokio::sync::mpsc;

use crate::catalog::RelationId;
use crate::connectors::sink::SinkBatch;
use crate::dataflow::{ChangeBatch, Epoch};
use crate::error::ExecutionError;

/// How many epochs of changes may wait for a subscriber that reads slower than the relation
/// changes. Past that the subscription ends with an error rather than hold memory without bound.
pub const SUBSCRIPTION_BACKLOG: usize = 4096;

/// The session's end of a subscription.
pub struct Subscription {
    pub relation: String,
    pub schema: SchemaRef,
    /// The relation's rows as of the epoch the subscription began (all insertions), then each
    /// later epoch that changed it, in order. The coordinator holds the sending end; it closes
    /// when the subscription ends (see `ended`) or the server stops.
    pub changes: mpsc::Receiver<SinkBatch>,
    /// Why the coordinator ended the subscription; set before it closes `changes`.
    pub ended: Arc<OnceLock<ExecutionError>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Subscription")
            .field("relation", &self.relation)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next epoch's changes; `Err` once the subscription has ended.
    pub async fn next(&mut self) -> Result<SinkBatch, ExecutionError> {
        match self.changes.recv().await {
            Some(batch) => Ok(batch),
            None => Err(self
                .ended
                .get()
                .cloned()
                .unwrap_or(ExecutionError::Shutdown)),
        }
    }
}

/// The coordinator's end of a subscription.
pub(super) struct Subscriber {
    relation: RelationId,
    name: String,
    changes: mpsc::Sender<SinkBatch>,
    ended: Arc<OnceLock<ExecutionError>>,
}

impl Subscriber {
    /// A subscription whose first message is `contents`, the relation's rows at `epoch`.
    pub(super) fn start(
        relation: RelationId,
        name: String,
        schema: SchemaRef,
        epoch: Epoch,
        contents: Vec<ChangeBatch>,
    ) -> (Self, Subscription) {
        let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BACKLOG);
        let ended = Arc::new(OnceLock::new());
        // The channel is new and empty: this first send cannot fail.
        let _ = sender.try_send(SinkBatch {
            epoch,
            changes: contents,
        });
        let subscriber = Self {
            relation,
            name: name.clone(),
            changes: sender,
            ended: Arc::clone(&ended),
        };
        let subscription = Subscription {
            relation: name,
            schema,
            changes: receiver,
            ended,
        };
        (subscriber, subscription)
    }

    /// Hands the subscriber its relation's changes of one epoch, if any. False once the
    /// subscription is over: the client went away, or fell too far behind.
    pub(super) fn deliver(
        &self,
        deltas: &HashMap<RelationId, Vec<ChangeBatch>>,
        epoch: Epoch,
    ) -> bool {
        let Some(changes) = deltas.get(&self.relation) else {
            return !self.changes.is_closed();
        };
        match self.changes.try_send(SinkBatch {
            epoch,
            changes: changes.clone(),
        }) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.end(ExecutionError::SubscriptionLagged {
                    relation: self.name.clone(),
                    epochs: SUBSCRIPTION_BACKLOG,
                });
                false
            }
        }
    }

    /// Whether the subscription reads `relation`.
    pub(super) fn reads(&self, relation: RelationId) -> bool {
        self.relation == relation
    }

    /// Ends the subscription with `reason`; the coordinator drops the subscriber next, which
    /// closes the channel after what it holds.
    pub(super) fn end(&self, reason: ExecutionError) {
        let _ = self.ended.set(reason);
    }

    pub(super) fn relation_name(&self) -> &str {
        &self.name
    }
}
