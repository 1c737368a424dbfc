//! Delivery reports in the embedded engine: `push_reports` maps `notification \0 channel` to
//! that channel's [`ChannelCounts`]. Counters change in the same batch as the tasks (or policy
//! decisions) they count, so a report is exact.

use std::collections::HashMap;

use fjall::Keyspace;
use herald_core::{Channel, Reason};

use super::keys;
use super::overlay::{Overlay, backend};
use super::records::*;
use crate::{ChannelCounts, DeliveryReport, Result, SendStatus};

/// The count changes of one operation, written to the stored counters at once.
#[derive(Default)]
pub struct ReportDeltas(HashMap<(String, &'static str), ChannelCounts>);

impl ReportDeltas {
    fn entry(&mut self, notification: &str, channel: &'static str) -> &mut ChannelCounts {
        self.0
            .entry((notification.to_owned(), channel))
            .or_default()
    }

    pub fn queued(&mut self, notification: &str, channel: &'static str) {
        self.entry(notification, channel).queued += 1;
    }

    pub fn finished(&mut self, notification: &str, channel: &'static str, status: SendStatus) {
        self.entry(notification, channel).add(status, 1);
    }

    pub fn decided(&mut self, notification: &str, channel: &'static str, reason: Reason, n: u64) {
        self.entry(notification, channel).add_reason(reason, n);
    }

    pub fn apply(self, overlay: &mut Overlay<'_>) -> Result<()> {
        for ((notification, channel), delta) in self.0 {
            let key = keys::push_report(&notification, channel);
            let mut counts: ChannelCounts = match overlay.get(PUSH_REPORTS, &key)? {
                Some(raw) => from_json(&raw)?,
                None => ChannelCounts::default(),
            };
            counts.merge(&delta);
            overlay.put(PUSH_REPORTS, key, to_json(&counts));
        }
        Ok(())
    }
}

/// One point read per channel rather than a prefix scan: a report being counted is rewritten
/// with every batch, and a scan would walk every version of it still in the memtable.
pub fn read(keyspace: &Keyspace, notification: &str) -> Result<DeliveryReport> {
    let mut report = DeliveryReport::new();
    for channel in Channel::ALL {
        let key = keys::push_report(notification, channel.as_str());
        if let Some(value) = keyspace.get(key).map_err(backend)? {
            report.insert(channel.as_str().to_owned(), from_json(&value)?);
        }
    }
    Ok(report)
}

/// Drops the reports of notifications older than `cutoff` (a notification id), at most `max`.
pub fn purge(
    overlay: &mut Overlay<'_>,
    keyspace: &Keyspace,
    cutoff: &str,
    max: usize,
) -> Result<()> {
    for guard in keyspace.range(..cutoff.as_bytes()).take(max) {
        let key = guard.key().map_err(backend)?;
        overlay.delete(PUSH_REPORTS, key.to_vec());
    }
    Ok(())
}
