//! The fan-out's per-user stage: each listed or subscribed user gets what their preferences and
//! the category's rules allow: inbox and live entries, push sends (now, or when their quiet hours
//! end), and every decision counted in the notification's report and logged for the user.
//!
//! Every step is idempotent (deliveries, collapse claims, cap charges and sends are keyed by the
//! notification), so a batch interrupted by a crash is simply run again. Only the decision
//! counts of such a batch may then be counted twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use herald_core::policy::{
    Cap, Plan, PolicyDefaults, Verdict, caps_for, collapse_window_ms, over_cap, plan,
};
use herald_core::{Category, Channel, Device, Notification, Reason};
use herald_store::{
    CapCharge, CapRequest, CollapseClaim, DecisionCount, DecisionRecord, Delivery, EntryFlags,
    PushTask, Store, StoreError,
};

use super::push::Providers;
use crate::categories::Categories;

/// What the policy stage needs besides the store.
pub struct PolicyContext {
    pub categories: Arc<Categories>,
    pub defaults: PolicyDefaults,
}

/// Users whose devices are looked up per store call.
const DEVICE_LOOKUP_CHUNK: usize = 1000;

/// Delivers `n` to `users` (one page of a list or topic) as policy allows.
pub async fn deliver_to(
    store: &dyn Store,
    providers: &Providers,
    ctx: &PolicyContext,
    n: &Arc<Notification>,
    users: &[String],
) -> Result<(), StoreError> {
    if users.is_empty() {
        return Ok(());
    }
    let now = herald_core::time::now_ms();
    let category = ctx.categories.get(n.category.as_deref()).await?;
    let category = category.as_deref();
    let prefs = store.preferences_of(users).await?;
    let mut plans: Vec<Plan> = prefs
        .iter()
        .map(|p| plan(n, category, p.as_ref(), &ctx.defaults, now))
        .collect();

    let devices = reachable_devices(store, providers, users, &plans).await?;
    for (user, plan) in users.iter().zip(&mut plans) {
        // Nothing to push to: not a decision, just nobody to reach.
        if !devices.contains_key(user.as_str()) {
            plan.push = Verdict::Unused;
        }
    }
    let replaced = collapse(store, ctx, n, category, users, &mut plans, now).await?;
    cap(store, ctx, n, category, users, &mut plans, now).await?;

    let mut counts = Counts::default();
    let deliveries: Vec<Delivery> = users
        .iter()
        .zip(&plans)
        .filter(|(_, p)| p.inbox.goes_out() || p.realtime.goes_out())
        .map(|(user, p)| Delivery {
            user: user.clone(),
            notification: n.clone(),
            flags: EntryFlags {
                inbox: p.inbox.goes_out(),
                live: p.realtime.goes_out(),
            },
        })
        .collect();
    if !deliveries.is_empty() {
        // Only new deliveries count: a retried batch's repeats are skipped by the store.
        let delivered = store.deliver(&deliveries).await?;
        let inbox = delivered.iter().filter(|d| d.flags.inbox).count() as u64;
        let live = delivered.iter().filter(|d| d.flags.live).count() as u64;
        super::fanout::count(inbox, live);
        counts.add(Channel::Inbox, Reason::Delivered, inbox);
        counts.add(Channel::Realtime, Reason::Delivered, live);
    }
    // The replaced entry leaves the inbox once the new one is in (if the user has not read it).
    for (user, earlier) in replaced {
        store.archive_if_unread(&user, &earlier).await?;
    }

    let tasks: Vec<PushTask> = users
        .iter()
        .zip(&plans)
        .filter_map(|(user, p)| {
            let due_ms = match p.push {
                Verdict::Deliver => 0,
                Verdict::Defer { until_ms } => until_ms,
                _ => return None,
            };
            Some(devices[user.as_str()].iter().map(move |d| PushTask {
                due_ms,
                ..PushTask::device(&n.id, &d.id, user, n.priority)
            }))
        })
        .flatten()
        .collect();
    if !tasks.is_empty() && store.enqueue_push(&tasks).await? > 0 {
        providers.wake.notify_one();
    }

    let mut records = Vec::new();
    for (user, p) in users.iter().zip(&plans) {
        for (channel, verdict) in p.verdicts() {
            let Some(record) = DecisionRecord::of(&n.id, user, channel, verdict, now) else {
                continue;
            };
            counts.add(channel, record.reason, 1);
            records.push(record);
        }
    }
    let counts = counts.into_vec(&n.id);
    if !counts.is_empty() || !records.is_empty() {
        for (reason, n) in counts
            .iter()
            .filter(|c| c.reason != Reason::Delivered)
            .map(|c| (c.reason, c.n))
        {
            metrics::counter!("herald_policy_decisions_total", "reason" => reason.as_str())
                .increment(n);
        }
        store.record_decisions(&counts, &records).await?;
    }
    Ok(())
}

/// Each user's devices that a configured provider can reach, for users who may get push.
pub(super) async fn reachable_devices(
    store: &dyn Store,
    providers: &Providers,
    users: &[String],
    plans: &[Plan],
) -> Result<HashMap<String, Vec<Device>>, StoreError> {
    let wanting: Vec<String> = users
        .iter()
        .zip(plans)
        .filter(|(_, p)| p.push != Verdict::Unused)
        .map(|(u, _)| u.clone())
        .collect();
    let mut devices: HashMap<String, Vec<Device>> = HashMap::new();
    for chunk in wanting.chunks(DEVICE_LOOKUP_CHUNK) {
        for device in store.devices_of(chunk).await? {
            if providers.takes(device.platform) {
                devices.entry(device.user.clone()).or_default().push(device);
            }
        }
    }
    Ok(devices)
}

/// Claims the collapse key for every user the notification reaches; a user who got an earlier
/// one within the window is not pushed again, and the earlier inbox entry is to be replaced.
/// Returns `(user, earlier notification)` for the inbox entries to replace.
async fn collapse(
    store: &dyn Store,
    ctx: &PolicyContext,
    n: &Notification,
    category: Option<&Category>,
    users: &[String],
    plans: &mut [Plan],
    now: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    let Some(key) = &n.collapse_key else {
        return Ok(Vec::new());
    };
    let window_ms = collapse_window_ms(category, &ctx.defaults);
    let reached: Vec<usize> = (0..users.len())
        .filter(|&i| {
            let p = &plans[i];
            p.inbox.goes_out() || p.realtime.goes_out() || p.push.goes_out()
        })
        .collect();
    let claims: Vec<CollapseClaim> = reached
        .iter()
        .map(|&i| CollapseClaim {
            user: users[i].clone(),
            key: key.clone(),
            notification: n.id.clone(),
            window_ms,
        })
        .collect();
    let mut replaced = Vec::new();
    for (i, earlier) in reached
        .into_iter()
        .zip(store.claim_collapse(&claims, now).await?)
    {
        if let Some(earlier) = earlier.filter(|e| *e != n.id) {
            plans[i].collapse(&earlier);
            if plans[i].inbox.goes_out() {
                replaced.push((users[i].clone(), earlier));
            }
        }
    }
    Ok(replaced)
}

/// Charges each push against the category's and the user's overall caps; over a cap, the
/// notification stays out of push and live (and out of the inbox with `over_cap = "drop"`).
async fn cap(
    store: &dyn Store,
    ctx: &PolicyContext,
    n: &Notification,
    category: Option<&Category>,
    users: &[String],
    plans: &mut [Plan],
    now: i64,
) -> Result<(), StoreError> {
    let caps = caps_for(category, &ctx.defaults);
    if caps.is_empty() {
        return Ok(());
    }
    let charges: Vec<CapCharge> = caps
        .iter()
        .map(|(key, cap)| CapCharge {
            key: key.clone(),
            limit: cap.limit,
            window_ms: cap.window_ms(),
        })
        .collect();
    let pushing: Vec<usize> = (0..users.len())
        .filter(|&i| plans[i].push.goes_out())
        .collect();
    let requests: Vec<CapRequest> = pushing
        .iter()
        .map(|&i| CapRequest {
            user: users[i].clone(),
            notification: n.id.clone(),
            charges: charges.clone(),
        })
        .collect();
    if requests.is_empty() {
        return Ok(());
    }
    let detail = describe_caps(category, &caps);
    let over = over_cap(category, &ctx.defaults);
    for (i, allowed) in pushing
        .into_iter()
        .zip(store.take_caps(&requests, now).await?)
    {
        if !allowed {
            plans[i].cap(over, &detail);
        }
    }
    Ok(())
}

fn describe_caps(category: Option<&Category>, caps: &[(String, Cap)]) -> String {
    let parts: Vec<String> = caps
        .iter()
        .map(|(key, cap)| {
            let scope = match category {
                Some(c) if key.starts_with("c:") => format!("category {}", c.name),
                _ => "all categories".to_owned(),
            };
            format!("{} push per {} s ({scope})", cap.limit, cap.window_seconds)
        })
        .collect();
    format!("over a frequency cap: {}", parts.join(", "))
}

/// Decision counts of one notification, summed before they are written.
#[derive(Default)]
struct Counts(BTreeMap<(Channel, Reason), u64>);

impl Counts {
    fn add(&mut self, channel: Channel, reason: Reason, n: u64) {
        if n > 0 {
            *self.0.entry((channel, reason)).or_default() += n;
        }
    }

    fn into_vec(self, notification: &str) -> Vec<DecisionCount> {
        self.0
            .into_iter()
            .map(|((channel, reason), n)| DecisionCount {
                notification: notification.to_owned(),
                channel,
                reason,
                n,
            })
            .collect()
    }
}
