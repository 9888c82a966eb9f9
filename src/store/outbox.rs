//! `email_outbox`: outgoing mail queued by the web application.

use super::Store;
use crate::error::{Context, Result};

impl Store {
    /// Number of outgoing messages by state.
    pub fn outbox_counts(&self) -> Result<Vec<(String, i64)>> {
        let mut stmt = self
            .conn()
            .prepare("SELECT state, COUNT(*) FROM email_outbox GROUP BY state ORDER BY state")
            .context("count the outbox")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .context("count the outbox")?;
        Ok(rows)
    }
}
