//! Policy decisions on Redis. Counts go to the notification's delivery report
//! `{q}:push:report:ID` (field `channel:reason`), the HASH the outbox counts sends in, so one
//! report shows both; every report is on `{q}`, so a batch's counts are one script call. Records
//! go to each user's LIST `{u:USER}:dl`, newest first, trimmed to `decisions_per_user`.

use std::collections::BTreeMap;

use super::outbox::expires_at;
use super::policy::{Call, by_user};
use super::{RedisStore, backend, json_err, keys};
use crate::{DecisionCount, DecisionRecord, Result};

impl RedisStore {
    pub(super) async fn record_user_decisions(
        &self,
        counts: &[DecisionCount],
        records: &[DecisionRecord],
    ) -> Result<()> {
        if !counts.is_empty() {
            self.count_decisions(counts).await?;
        }
        if !records.is_empty() {
            self.log_decisions(records).await?;
        }
        Ok(())
    }

    async fn count_decisions(&self, counts: &[DecisionCount]) -> Result<()> {
        let mut by_notification: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
        for c in counts.iter().filter(|c| c.n > 0) {
            let field = format!("{}:{}", c.channel.as_str(), c.reason.as_str());
            *by_notification
                .entry(&c.notification)
                .or_default()
                .entry(field)
                .or_default() += c.n;
        }
        if by_notification.is_empty() {
            return Ok(());
        }
        let now = herald_core::time::now_ms();
        let retention = self.options.notification_retention_ms;
        let mut call = self.policy_scripts.count_decisions.prepare_invoke();
        for (notification, fields) in &by_notification {
            call.key(keys::push_report(notification))
                .arg(expires_at(notification, retention, now))
                .arg(fields.len());
            for (field, n) in fields {
                call.arg(field).arg(n);
            }
        }
        call.invoke_async::<()>(&mut self.conn())
            .await
            .map_err(backend)
    }

    /// One script per user; only the newest `decisions_per_user` of a batch are sent.
    async fn log_decisions(&self, records: &[DecisionRecord]) -> Result<()> {
        let max = self.options.decisions_per_user;
        let groups = by_user(records, |r| r.user.as_str());
        let mut calls = Vec::with_capacity(groups.len());
        for (user, positions) in &groups {
            let mut call = Call::default();
            // A quiet user's log goes when their notifications would (their retention).
            call.key(keys::user_decisions(user))
                .arg(max)
                .arg(self.options.notification_retention_ms.max(1));
            for &i in &positions[positions.len().saturating_sub(max)..] {
                call.arg(serde_json::to_string(&records[i]).map_err(json_err)?);
            }
            calls.push(call);
        }
        self.invoke_each::<()>(&self.policy_scripts.log_decisions, calls)
            .await?;
        Ok(())
    }

    pub(super) async fn newest_decisions(
        &self,
        user: &str,
        limit: usize,
    ) -> Result<Vec<DecisionRecord>> {
        self.newest_of_list(&keys::user_decisions(user), limit)
            .await
    }
}
