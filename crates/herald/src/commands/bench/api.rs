//! The server's HTTP API as the benchmarks that drive a whole server use it.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;

use crate::commands::http::Connection;

#[derive(Clone)]
pub struct Api {
    pub addr: SocketAddr,
    /// The publisher API key.
    pub key: Arc<str>,
}

impl Api {
    pub async fn connect(&self) -> Result<Connection, String> {
        Connection::open(self.addr)
            .await
            .map_err(|e| format!("cannot connect to the server: {e}"))
    }

    /// A request whose answer must have status `expected`; its body as JSON.
    pub async fn call(
        &self,
        conn: &mut Connection,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        expected: u16,
    ) -> Result<Value, String> {
        let response = conn
            .request(method, path, Some(&self.key), body)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if response.status != expected {
            return Err(format!(
                "{method} {path} answered {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            ));
        }
        serde_json::from_slice(&response.body).map_err(|e| format!("{method} {path}: {e}"))
    }

    /// `POST /v1/campaigns` with `request`; the new campaign's id.
    pub async fn create_campaign(
        &self,
        conn: &mut Connection,
        request: &Value,
    ) -> Result<String, String> {
        self.post_for_id(conn, "/v1/campaigns", request, 201).await
    }

    /// POSTs `body` to `path`, expecting `status`; the `id` of what it made.
    pub async fn post_for_id(
        &self,
        conn: &mut Connection,
        path: &str,
        body: &Value,
        status: u16,
    ) -> Result<String, String> {
        let answer = self
            .call(
                conn,
                "POST",
                path,
                Some(body.to_string().as_bytes()),
                status,
            )
            .await?;
        answer["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("POST {path}: the answer has no id: {answer}"))
    }
}
