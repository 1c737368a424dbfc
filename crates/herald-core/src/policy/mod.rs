//! Delivery policy: what the publisher's categories and each user's preferences allow, decided
//! per user and channel before anything is written or sent. Pure rules; the counters they need
//! (frequency caps, collapse keys) live in the store and are applied by the fan-out.

mod category;
mod decide;
mod preferences;
mod quiet_hours;
mod reason;

pub use category::{Cap, Category, OverCap};
pub use decide::{
    Plan, PolicyDefaults, Verdict, caps_for, collapse_window_ms, mandatory, over_cap, plan,
};
pub use preferences::{Preferences, QuietHours};
pub use quiet_hours::quiet_until;
pub use reason::Reason;
