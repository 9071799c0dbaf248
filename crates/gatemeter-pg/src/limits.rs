//! The timeout, row cap and result-byte cap of `POST /api/v1/sql`, applied
//! to the rows a PostgreSQL client reads. DataFusion produces rows lazily while the
//! client reads them, so the limits sit on the row stream: past the
//! deadline or the cap the stream ends with an error, and dropping it
//! cancels the query's tasks.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion_postgres::pgwire::api::results::{Response, SendableRowStream};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::data::DataRow;
use futures::Stream;
use gatemeter_query::executor::QueryLimits;
use tokio::time::{Instant, Sleep};

use crate::audit::{sqlstate, PendingAudit, CANCELLED};
use crate::error::{result_too_large, timed_out, too_many_rows};

/// Puts every row stream of `responses` under `limits`, counted from
/// `started`; each stream counts its rows into `audit`.
pub fn limit_responses(
    responses: Vec<Response>,
    limits: QueryLimits,
    started: Instant,
    audit: Option<&Arc<PendingAudit>>,
) -> Vec<Response> {
    responses
        .into_iter()
        .map(|response| limit_response(response, limits, started, audit))
        .collect()
}

pub fn limit_response(
    response: Response,
    limits: QueryLimits,
    started: Instant,
    audit: Option<&Arc<PendingAudit>>,
) -> Response {
    match response {
        Response::Query(mut query) => {
            let rows = std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
            query.data_rows = Box::pin(LimitedRows::new(rows, limits, started, audit.cloned()));
            Response::Query(query)
        }
        other => other,
    }
}

struct LimitedRows {
    rows: Option<SendableRowStream>,
    deadline: Pin<Box<Sleep>>,
    limits: QueryLimits,
    sent: usize,
    sent_bytes: usize,
    audit: Option<Arc<PendingAudit>>,
    /// The stream ended (its last row read, or an error sent).
    ended: bool,
}

impl LimitedRows {
    fn new(
        rows: SendableRowStream,
        limits: QueryLimits,
        started: Instant,
        audit: Option<Arc<PendingAudit>>,
    ) -> LimitedRows {
        LimitedRows {
            rows: Some(rows),
            deadline: Box::pin(tokio::time::sleep_until(started + limits.timeout)),
            limits,
            sent: 0,
            sent_bytes: 0,
            audit,
            ended: false,
        }
    }

    /// Ends the stream with `error`, dropping DataFusion's stream, which
    /// stops the query now.
    fn fail(&mut self, error: PgWireError) -> Poll<Option<PgWireResult<DataRow>>> {
        self.rows = None;
        self.ended = true;
        if let Some(audit) = &self.audit {
            audit.fail(&sqlstate(&error));
        }
        Poll::Ready(Some(Err(error)))
    }
}

impl Drop for LimitedRows {
    fn drop(&mut self) {
        if let (Some(audit), false) = (&self.audit, self.ended) {
            audit.fail(CANCELLED);
        }
    }
}

impl Stream for LimitedRows {
    type Item = PgWireResult<DataRow>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(rows) = this.rows.as_mut() else {
            return Poll::Ready(None);
        };
        if this.deadline.as_mut().poll(cx).is_ready() {
            return this.fail(timed_out(this.limits.timeout));
        }
        match rows.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(row))) => {
                this.sent += 1;
                if this.sent > this.limits.max_rows {
                    return this.fail(too_many_rows(this.limits.max_rows));
                }
                this.sent_bytes = this.sent_bytes.saturating_add(row.data.len());
                if this.sent_bytes > this.limits.max_result_bytes {
                    return this.fail(result_too_large(this.limits.max_result_bytes));
                }
                if let Some(audit) = &this.audit {
                    audit.add_row(row.data.len());
                }
                Poll::Ready(Some(Ok(row)))
            }
            Poll::Ready(Some(Err(error))) => this.fail(error),
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::time::Duration;

    fn rows(count: usize) -> SendableRowStream {
        Box::pin(futures::stream::iter(
            (0..count).map(|_| Ok(DataRow::default())),
        ))
    }

    fn code(error: &PgWireError) -> String {
        match error {
            PgWireError::UserError(info) => info.code.clone(),
            other => format!("{other}"),
        }
    }

    #[tokio::test]
    async fn the_row_cap_ends_the_stream_with_an_error() {
        let limits = QueryLimits {
            timeout: Duration::from_secs(60),
            max_rows: 3,
            ..QueryLimits::default()
        };
        let items: Vec<_> = LimitedRows::new(rows(10), limits, Instant::now(), None)
            .collect()
            .await;
        assert_eq!(items.len(), 4);
        assert!(items[..3].iter().all(Result::is_ok));
        assert_eq!(
            code(items[3].as_ref().expect_err("fourth row is refused")),
            "54000"
        );
        let exact: Vec<_> = LimitedRows::new(rows(3), limits, Instant::now(), None)
            .collect()
            .await;
        assert!(exact.len() == 3 && exact.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn the_byte_cap_ends_the_stream_with_an_error() {
        let limits = QueryLimits {
            max_result_bytes: 250,
            ..QueryLimits::default()
        };
        let wide: SendableRowStream =
            Box::pin(futures::stream::iter((0..10).map(|_| {
                Ok(DataRow::new(bytes::BytesMut::from(&[7u8; 100][..]), 1))
            })));
        let items: Vec<_> = LimitedRows::new(wide, limits, Instant::now(), None)
            .collect()
            .await;
        assert_eq!(
            items.len(),
            3,
            "two rows fit in 250 bytes, the third ends it"
        );
        assert_eq!(
            code(items[2].as_ref().expect_err("third row is refused")),
            "54000"
        );
    }

    #[tokio::test]
    async fn a_stream_past_its_deadline_is_cancelled() {
        let limits = QueryLimits {
            timeout: Duration::from_millis(50),
            max_rows: 100,
            ..QueryLimits::default()
        };
        let never_ending: SendableRowStream = Box::pin(futures::stream::pending());
        let items: Vec<_> = LimitedRows::new(never_ending, limits, Instant::now(), None)
            .collect()
            .await;
        assert_eq!(items.len(), 1);
        assert_eq!(code(items[0].as_ref().expect_err("timed out")), "57014");
    }
}
