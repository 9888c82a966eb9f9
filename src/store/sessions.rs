//! `user_sessions`: when each web-app user was last active.

use super::error::{Context, Result};
use super::sqlite::Sqlite;

/// One user's last activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub usrid: i64,
    pub last_activity_at: Option<i64>,
}

impl Sqlite {
    /// Every session row.
    pub fn sessions(&self) -> Result<Vec<Session>> {
        let mut stmt = self
            .conn()
            .prepare("SELECT usrid, last_activity_at FROM user_sessions")
            .context("read sessions")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Session {
                    usrid: r.get(0)?,
                    last_activity_at: r.get(1)?,
                })
            })
            .context("read sessions")?
            .collect::<rusqlite::Result<Vec<_>>>()
            .context("read sessions")?;
        Ok(rows)
    }

    /// Marks `usrid` active at `now` (`session touch`).
    pub fn touch_session(&mut self, usrid: i64, now: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO user_sessions (usrid, last_activity_at) VALUES (?, ?) \
                 ON CONFLICT (usrid) DO UPDATE SET last_activity_at = excluded.last_activity_at",
                [usrid, now],
            )
            .context(format!("touch the session of user {usrid}"))?;
            Ok(())
        })
    }

    /// Ends `usrid`'s session (`session end`): the user counts as logged out.
    pub fn end_session(&mut self, usrid: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM user_sessions WHERE usrid = ?", [usrid])
                .context(format!("end the session of user {usrid}"))?;
            Ok(())
        })
    }
}
