//! `user_sessions` on PostgreSQL.

use super::super::error::Result;
use super::super::Session;
use super::{get, Postgres};

impl Postgres {
    /// Every session row.
    pub fn sessions(&self) -> Result<Vec<Session>> {
        self.rows(
            "SELECT usrid, last_activity_at FROM user_sessions",
            &[],
            "read sessions",
        )?
        .iter()
        .map(|r| {
            Ok(Session {
                usrid: get(r, 0)?,
                last_activity_at: get(r, 1)?,
            })
        })
        .collect()
    }

    /// Marks `usrid` active at `now`.
    pub fn touch_session(&mut self, usrid: i64, now: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO user_sessions (usrid, last_activity_at) VALUES ($1, $2) \
                 ON CONFLICT (usrid) DO UPDATE SET last_activity_at = excluded.last_activity_at",
                &[&usrid, &now],
                format!("touch the session of user {usrid}"),
            )?;
            Ok(())
        })
    }

    /// Ends `usrid`'s session.
    pub fn end_session(&mut self, usrid: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM user_sessions WHERE usrid = $1",
                &[&usrid],
                format!("end the session of user {usrid}"),
            )?;
            Ok(())
        })
    }
}
