//! Fake push providers speaking the real protocols over TLS and HTTP/2.
