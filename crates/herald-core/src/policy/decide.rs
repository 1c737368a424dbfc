//! The per-user decision: for each channel a notification uses, deliver it, defer it, or skip it
//! and say why. Frequency caps and collapse keys need shared counters, so they are applied on
//! top of a plan by the fan-out ([`Plan::cap`], [`Plan::collapse`]).

use serde::{Deserialize, Serialize};

use super::category::{Cap, Category, OverCap};
use super::preferences::Preferences;
use super::reason::Reason;
use crate::notification::{Channel, Notification, Priority};
use crate::time::rfc3339_ms;

/// Server-wide rules (`[policy]` in `herald.toml`) for what categories do not say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyDefaults {
    /// Caps on push per user over every category together.
    pub user_caps: Vec<Cap>,
    /// What happens over a cap, for notifications without a category.
    pub over_cap: OverCap,
    /// Collapse window for notifications whose category sets none.
    pub collapse_window_seconds: u32,
    /// Whether `high` notifications without a category are pushed during quiet hours.
    pub high_bypasses_quiet_hours: bool,
}

impl Default for PolicyDefaults {
    fn default() -> Self {
        Self {
            user_caps: Vec::new(),
            over_cap: OverCap::InboxOnly,
            collapse_window_seconds: 3600,
            high_bypasses_quiet_hours: true,
        }
    }
}

/// What happens on one channel for one user.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The notification does not use this channel.
    Unused,
    Deliver,
    /// Push later, when the user's quiet hours end.
    Defer {
        until_ms: i64,
    },
    Skip {
        reason: Reason,
        detail: String,
    },
}

impl Verdict {
    fn skip(reason: Reason, detail: impl Into<String>) -> Self {
        Verdict::Skip {
            reason,
            detail: detail.into(),
        }
    }

    /// Delivered now or later.
    pub fn goes_out(&self) -> bool {
        matches!(self, Verdict::Deliver | Verdict::Defer { .. })
    }

    /// The decision as counted in the report; `None` for an unused channel.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Verdict::Unused => None,
            Verdict::Deliver => Some(Reason::Delivered),
            Verdict::Defer { .. } => Some(Reason::QuietDeferred),
            Verdict::Skip { reason, .. } => Some(*reason),
        }
    }

    /// Why, in words, for the per-user decision log; `None` when nothing stood in the way.
    pub fn explain(&self) -> Option<String> {
        match self {
            Verdict::Unused | Verdict::Deliver => None,
            Verdict::Defer { until_ms } => Some(format!(
                "in the user's quiet hours; pushed at {}",
                rfc3339_ms(*until_ms)
            )),
            Verdict::Skip { detail, .. } => Some(detail.clone()),
        }
    }
}

/// One user's verdicts for one notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub inbox: Verdict,
    pub realtime: Verdict,
    pub push: Verdict,
}

impl Plan {
    pub fn verdicts(&self) -> [(Channel, &Verdict); 3] {
        [
            (Channel::Inbox, &self.inbox),
            (Channel::Realtime, &self.realtime),
            (Channel::Push, &self.push),
        ]
    }

    /// Over a frequency cap: nothing interrupts the user, and with [`OverCap::Drop`] the inbox
    /// does not get it either.
    pub fn cap(&mut self, over_cap: OverCap, detail: &str) {
        let capped = |v: &mut Verdict| {
            if v.goes_out() {
                *v = Verdict::skip(Reason::Capped, detail);
            }
        };
        capped(&mut self.push);
        capped(&mut self.realtime);
        if over_cap == OverCap::Drop {
            capped(&mut self.inbox);
        }
    }

    /// An earlier notification with the same collapse key reached the user within the window:
    /// this one replaces it in the inbox and is not pushed again.
    pub fn collapse(&mut self, earlier: &str) {
        if self.push.goes_out() {
            self.push = Verdict::skip(
                Reason::Collapsed,
                format!("replaces {earlier} (same collapse key), which was already pushed"),
            );
        }
    }
}

/// Whether users may turn off (or quiet) this notification's category.
pub fn mandatory(category: Option<&Category>) -> bool {
    category.is_some_and(|c| !c.opt_out)
}

/// The caps a push of this notification counts against: the category's, then the user's
/// overall ones, each as `(counter key, cap)`. Mandatory categories are never capped.
pub fn caps_for(category: Option<&Category>, defaults: &PolicyDefaults) -> Vec<(String, Cap)> {
    if mandatory(category) {
        return Vec::new();
    }
    let own = category.into_iter().flat_map(|c| {
        c.caps
            .iter()
            .map(move |cap| (format!("c:{}", c.name), *cap))
    });
    let overall = defaults
        .user_caps
        .iter()
        .map(|cap| ("all".to_owned(), *cap));
    own.chain(overall)
        .map(|(scope, cap)| (format!("{scope}:{}", cap.window_seconds), cap))
        .collect()
}

/// What to do with an over-cap notification.
pub fn over_cap(category: Option<&Category>, defaults: &PolicyDefaults) -> OverCap {
    category.map_or(defaults.over_cap, |c| c.over_cap)
}

/// How long a collapse key replaces, in milliseconds.
pub fn collapse_window_ms(category: Option<&Category>, defaults: &PolicyDefaults) -> i64 {
    let seconds = category
        .and_then(|c| c.collapse_window_seconds)
        .unwrap_or(defaults.collapse_window_seconds);
    i64::from(seconds) * 1000
}

/// The verdicts that preferences, quiet hours and the TTL give for one user.
pub fn plan(
    n: &Notification,
    category: Option<&Category>,
    prefs: Option<&Preferences>,
    defaults: &PolicyDefaults,
    now_ms: i64,
) -> Plan {
    let category_name = n.category.as_deref();
    let respected = if mandatory(category) { None } else { prefs };
    let verdict = |channel: Channel| {
        if !n.channels.contains(channel) {
            return Verdict::Unused;
        }
        if let Some(detail) = respected.and_then(|p| p.turned_off(category_name, channel)) {
            return Verdict::skip(Reason::Muted, detail);
        }
        if channel != Channel::Inbox && n.expired_at(now_ms) {
            return Verdict::skip(Reason::Expired, "its TTL ran out before fan-out");
        }
        Verdict::Deliver
    };
    let mut plan = Plan {
        inbox: verdict(Channel::Inbox),
        realtime: verdict(Channel::Realtime),
        push: verdict(Channel::Push),
    };
    if plan.push == Verdict::Deliver
        && let Some(until_ms) = respected.and_then(|p| p.quiet_until(now_ms))
    {
        let bypass = category.map_or(defaults.high_bypasses_quiet_hours, |c| {
            c.high_bypasses_quiet_hours
        });
        let expires = n
            .ttl_seconds
            .map(|ttl| n.created_at + i64::from(ttl) * 1000);
        plan.push = if bypass && n.priority == Priority::High {
            Verdict::Deliver
        } else if expires.is_some_and(|at| at <= until_ms) {
            Verdict::skip(
                Reason::Expired,
                "its TTL runs out before the user's quiet hours end",
            )
        } else {
            Verdict::Defer { until_ms }
        };
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_780_000_000_000;

    fn notification(json: serde_json::Value) -> Notification {
        let mut base =
            serde_json::json!({"id":"n1","to":{"users":["u"]},"title":"t","created_at":NOW});
        base.as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    fn category(json: serde_json::Value) -> Category {
        serde_json::from_value(json).unwrap()
    }

    fn prefs(json: serde_json::Value) -> Preferences {
        serde_json::from_value(json).unwrap()
    }

    /// Quiet hours that cover NOW in UTC and end an hour later.
    fn quiet_now() -> Preferences {
        let hour = (NOW / 3_600_000) % 24;
        prefs(serde_json::json!({"quiet_hours": {
            "start": format!("{:02}:00", hour),
            "end": format!("{:02}:00", (hour + 1) % 24),
        }}))
    }

    #[test]
    fn with_no_preferences_everything_requested_is_delivered() {
        let n = notification(serde_json::json!({"channels":["inbox","push"]}));
        let p = plan(&n, None, None, &PolicyDefaults::default(), NOW);
        assert_eq!(p.inbox, Verdict::Deliver);
        assert_eq!(p.realtime, Verdict::Unused);
        assert_eq!(p.push, Verdict::Deliver);
    }

    #[test]
    fn muted_categories_skip_push_unless_the_category_is_mandatory() {
        let n = notification(serde_json::json!({"category":"billing"}));
        let off = prefs(serde_json::json!({"categories":{"billing":{"push":false}}}));
        let p = plan(&n, None, Some(&off), &PolicyDefaults::default(), NOW);
        assert_eq!(p.push.reason(), Some(Reason::Muted));
        assert_eq!(p.inbox, Verdict::Deliver);
        let billing = category(serde_json::json!({"name":"billing","opt_out":false}));
        let p = plan(
            &n,
            Some(&billing),
            Some(&off),
            &PolicyDefaults::default(),
            NOW,
        );
        assert_eq!(p.push, Verdict::Deliver);
    }

    #[test]
    fn quiet_hours_defer_push_until_they_end() {
        let n = notification(serde_json::json!({}));
        let p = plan(
            &n,
            None,
            Some(&quiet_now()),
            &PolicyDefaults::default(),
            NOW,
        );
        let Verdict::Defer { until_ms } = p.push else {
            panic!("{p:?}")
        };
        assert!(until_ms > NOW && until_ms <= NOW + 3_600_000);
        assert_eq!(p.inbox, Verdict::Deliver);
        assert_eq!(p.realtime, Verdict::Deliver);
    }

    #[test]
    fn quiet_hours_drop_what_would_expire_and_let_high_through_where_allowed() {
        let short = notification(serde_json::json!({"ttl_seconds": 1}));
        let p = plan(
            &short,
            None,
            Some(&quiet_now()),
            &PolicyDefaults::default(),
            NOW,
        );
        assert_eq!(p.push.reason(), Some(Reason::Expired));

        let high = notification(serde_json::json!({"priority":"high","category":"alerts"}));
        let defaults = PolicyDefaults::default();
        let strict = category(serde_json::json!({"name":"alerts"}));
        let p = plan(&high, Some(&strict), Some(&quiet_now()), &defaults, NOW);
        assert_eq!(p.push.reason(), Some(Reason::QuietDeferred));
        let bypass =
            category(serde_json::json!({"name":"alerts","high_bypasses_quiet_hours":true}));
        let p = plan(&high, Some(&bypass), Some(&quiet_now()), &defaults, NOW);
        assert_eq!(p.push, Verdict::Deliver);
    }

    #[test]
    fn expired_notifications_are_still_listed_but_not_announced_or_pushed() {
        let n = notification(serde_json::json!({"ttl_seconds": 1}));
        let p = plan(&n, None, None, &PolicyDefaults::default(), NOW + 5000);
        assert_eq!(p.inbox, Verdict::Deliver);
        assert_eq!(p.realtime.reason(), Some(Reason::Expired));
        assert_eq!(p.push.reason(), Some(Reason::Expired));
    }

    #[test]
    fn caps_and_collapse_adjust_a_plan() {
        let n = notification(serde_json::json!({}));
        let mut p = plan(&n, None, None, &PolicyDefaults::default(), NOW);
        p.cap(OverCap::InboxOnly, "3 pushes a day");
        assert_eq!(p.inbox, Verdict::Deliver);
        assert_eq!(p.push.reason(), Some(Reason::Capped));
        assert_eq!(p.realtime.reason(), Some(Reason::Capped));
        p.cap(OverCap::Drop, "3 pushes a day");
        assert_eq!(p.inbox.reason(), Some(Reason::Capped));

        let mut p = plan(&n, None, None, &PolicyDefaults::default(), NOW);
        p.collapse("n0");
        assert_eq!(p.push.reason(), Some(Reason::Collapsed));
        assert_eq!(p.inbox, Verdict::Deliver);
    }

    #[test]
    fn cap_keys_name_the_scope_and_window_and_spare_mandatory_categories() {
        let defaults = PolicyDefaults {
            user_caps: vec![Cap {
                limit: 10,
                window_seconds: 86400,
            }],
            ..Default::default()
        };
        let news =
            category(serde_json::json!({"name":"news","caps":[{"limit":3,"window_seconds":3600}]}));
        let keys: Vec<_> = caps_for(Some(&news), &defaults)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["c:news:3600", "all:86400"]);
        let security = category(serde_json::json!({"name":"security","opt_out":false}));
        assert!(caps_for(Some(&security), &defaults).is_empty());
        assert_eq!(caps_for(None, &defaults).len(), 1);
    }
}
