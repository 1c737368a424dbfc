//! The configured providers and webhooks, each with its own concurrency and rate limit.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use herald_core::{Platform, Priority};
use herald_push::config::{ProviderLimits, RetryConfig};
use herald_push::http::HttpOptions;
use herald_push::webhook::Webhook;
use herald_push::{Provider, apns::Apns, fcm::Fcm, webpush::WebPush};
use tokio::sync::Notify;

use super::gate::{LaneGate, Slot};
use crate::config::Config;

/// A provider (or webhook) and the limits it is driven under.
pub struct Limited<P: ?Sized> {
    pub outlet: Arc<P>,
    slots: Arc<LaneGate>,
    rate: Option<DefaultDirectRateLimiter>,
}

impl<P: ?Sized> Limited<P> {
    fn new(outlet: Arc<P>, limits: &ProviderLimits) -> Self {
        Self {
            outlet,
            slots: LaneGate::new(limits.concurrency.max(1)),
            rate: NonZeroU32::new(limits.rate_per_second)
                .map(|rate| RateLimiter::direct(Quota::per_second(rate))),
        }
    }

    /// Waits for a free slot (higher lanes first) and the rate limit; the slot is held until
    /// it drops.
    pub async fn ready(&self, lane: Priority) -> Slot {
        let slot = self.slots.acquire(lane).await;
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
        slot
    }
}

pub struct Providers {
    platforms: HashMap<Platform, Limited<dyn Provider>>,
    /// In configuration order; there are few, so a name is found by looking.
    webhooks: Vec<Limited<Webhook>>,
    pub dry_run: bool,
    pub retry: RetryConfig,
    /// Wakes the sender when the fan-out put work in the outbox.
    pub wake: Notify,
}

impl Providers {
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let extra_ca = match &config.tls.extra_ca {
            Some(path) => {
                Some(Arc::new(std::fs::read(path).map_err(|e| {
                    format!("tls.extra_ca {}: {e}", path.display())
                })?))
            }
            None => None,
        };
        let http = |limits: &ProviderLimits| HttpOptions {
            connections: limits.connections.max(1),
            timeout: Duration::from_millis(limits.timeout_ms.max(1)),
            extra_ca_pem: extra_ca.clone(),
            http2_only: false,
        };
        let mut platforms: HashMap<Platform, Limited<dyn Provider>> = HashMap::new();
        let push = &config.push;
        if let Some(fcm) = &push.fcm {
            let provider: Arc<dyn Provider> = Arc::new(Fcm::new(fcm, http(&fcm.limits))?);
            platforms.insert(Platform::Fcm, Limited::new(provider, &fcm.limits));
        }
        if let Some(apns) = &push.apns {
            let provider: Arc<dyn Provider> = Arc::new(Apns::new(apns, http(&apns.limits))?);
            platforms.insert(Platform::Apns, Limited::new(provider, &apns.limits));
        }
        if let Some(webpush) = &push.webpush {
            let provider: Arc<dyn Provider> =
                Arc::new(WebPush::new(webpush, http(&webpush.limits))?);
            platforms.insert(Platform::Webpush, Limited::new(provider, &webpush.limits));
        }
        let webhooks = config
            .webhooks
            .iter()
            .enumerate()
            .map(|(i, hook)| {
                let webhook = Webhook::new(hook, i, http(&hook.limits))?;
                Ok(Limited::new(Arc::new(webhook), &hook.limits))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            platforms,
            webhooks,
            dry_run: push.dry_run,
            retry: push.retry.clone(),
            wake: Notify::new(),
        })
    }

    /// Whether sends to this platform are queued: it is configured, or everything is a dry run.
    /// Opens the push providers' connections and fetches their credentials in the background,
    /// ahead of a burst known in advance (a scheduled campaign).
    pub fn warm(self: &Arc<Self>) {
        if self.dry_run {
            return;
        }
        let providers = self.clone();
        tokio::spawn(async move {
            let warming = providers.platforms.iter().map(|(platform, limited)| async move {
                if let Err(e) = limited.outlet.warm().await {
                    tracing::warn!(?platform, error = %e, "could not warm the provider's connections; sends will open them");
                }
            });
            futures_util::future::join_all(warming).await;
        });
    }

    pub fn takes(&self, platform: Platform) -> bool {
        self.dry_run || self.platforms.contains_key(&platform)
    }

    pub fn provider(&self, platform: Platform) -> Option<&Limited<dyn Provider>> {
        self.platforms.get(&platform)
    }

    pub fn webhook(&self, name: &str) -> Option<&Limited<Webhook>> {
        self.webhooks.iter().find(|w| w.outlet.name() == name)
    }

    /// The names of the webhooks that want a notification of this category.
    pub fn webhooks_for(&self, category: Option<&str>) -> impl Iterator<Item = &str> {
        self.webhooks
            .iter()
            .filter(move |w| w.outlet.wants(category))
            .map(|w| w.outlet.name())
    }

    /// Names of what is configured, for the startup log.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Platform::ALL
            .iter()
            .filter(|p| self.platforms.contains_key(p))
            .map(|p| p.as_str().to_owned())
            .collect();
        parts.extend(
            self.webhooks
                .iter()
                .map(|w| format!("webhook:{}", w.outlet.name())),
        );
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}
