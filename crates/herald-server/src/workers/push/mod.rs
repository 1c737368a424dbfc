//! Push delivery: the outbox is filled by the fan-out ([`enqueue`]) and drained by the
//! [`sender`] through the configured [`providers`].

pub mod answer;
pub mod enqueue;
pub mod gate;
pub mod providers;
pub mod sender;
pub mod stats;

pub use providers::Providers;
