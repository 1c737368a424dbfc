//! Drives every fake with a real HTTP/2 client over TLS, as Herald's provider clients will.

mod apns;
mod common;
mod fcm;
mod server;
mod steering;
mod webhook;
mod webpush;
