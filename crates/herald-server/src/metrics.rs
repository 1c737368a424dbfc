//! Prometheus metrics. The recorder is process-wide, so it is installed once.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder on first call; later calls share it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may exist when Herald is embedded in a program that set its own.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "herald_notifications_accepted_total",
        "Notifications accepted (202), by priority"
    );
    describe_counter!(
        "herald_notifications_duplicate_total",
        "Publishes answered from an idempotency key"
    );
    describe_counter!(
        "herald_deliveries_total",
        "Notifications delivered, by channel (inbox, realtime)"
    );
    describe_counter!(
        "herald_stream_disconnects_total",
        "Live connections cut off, by reason"
    );
    describe_gauge!(
        "herald_stream_connections",
        "Open SSE and WebSocket connections"
    );
    describe_counter!(
        "herald_channel_messages_published_total",
        "Realtime channel messages published"
    );
    describe_counter!(
        "herald_channel_bytes_published_total",
        "Payload bytes of realtime channel messages published"
    );
    describe_gauge!(
        "herald_channel_subscribers",
        "Open realtime channel subscriptions (SSE and WebSocket) on this node"
    );
    describe_counter!(
        "herald_channel_cutoffs_total",
        "Channel subscribers cut off for falling behind channels.subscriber_buffer_bytes"
    );
    describe_gauge!(
        "herald_queue_depth",
        "Queued fan-out jobs waiting, by priority lane"
    );
    describe_gauge!(
        "herald_push_queue_depth",
        "Push and webhook sends in the outbox, by priority lane"
    );
    describe_counter!(
        "herald_push_sends_total",
        "Push and webhook send attempts, by provider and result (sent, retry, pruned, failed, dry_run)"
    );
    describe_histogram!(
        "herald_accept_seconds",
        "Time to accept a notification durably"
    );
    describe_histogram!(
        "herald_fanout_seconds",
        "Time from accept to fan-out done, per notification"
    );
    describe_histogram!(
        "herald_http_request_seconds",
        "HTTP request latency, by route"
    );
    describe_counter!(
        "herald_http_requests_total",
        "HTTP requests, by route and status"
    );
}
