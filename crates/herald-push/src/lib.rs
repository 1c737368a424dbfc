//! Herald's push providers, each in its own module behind [`Provider`]: FCM HTTP v1, APNs,
//! Web Push, and signed webhooks. They share pooled HTTP/2 clients ([`http`]) and report every
//! send as a [`SendResult`] the sender turns into sent, retried, pruned or failed.
//!
//! Adding a vendor channel (e.g. Huawei Push Kit) means one new module implementing [`Provider`].

pub mod apns;
pub mod config;
mod decimal;
pub mod fcm;
pub mod h2;
pub mod http;
pub mod message;
pub mod provider;
pub mod retry;
pub mod webhook;
pub mod webpush;

pub use config::PushConfig;
pub use message::PushMessage;
pub use provider::{Provider, SendResult};
