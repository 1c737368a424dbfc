//! Device owners on Redis: the ZSET `devices:owners` of every user with a device (score 0, so
//! in id order), which a push to everyone walks with ZRANGEBYLEX.
//!
//! It is on another slot than the users' device indexes `{u:USER}:d`, so it follows them a step
//! behind rather than atomically. A user is added after a device enters their index (on every
//! registration: idempotent, and it mends an add a crash missed), and removed after their index
//! is found empty. That removal is check-then-act across slots, so it checks again afterwards
//! and adds the user back if a device arrived meanwhile: a registration racing it either put
//! its device in the index before that second check (which sees it) or after it, and then adds
//! the user itself after the removal. So once writes finish the set misses no owner; it may
//! hold a user left without devices (a crash before the removal), whom reads skip and drop.

use ::redis::AsyncCommands;

use super::campaigns::count;
use super::{RedisStore, backend, keys};
use crate::Result;

impl RedisStore {
    /// After a device entered the user's index.
    pub(super) async fn note_owner(&self, user: &str) -> Result<()> {
        self.conn()
            .zadd(keys::DEVICE_OWNERS, user, 0)
            .await
            .map_err(backend)
    }

    /// Takes a device out of the user's index, and the user out of the owners if it was their last.
    pub(super) async fn unindex_device(&self, user: &str, id: &str) -> Result<()> {
        let left: u64 = self
            .device_scripts
            .unindex
            .key(keys::user_devices(user))
            .arg(id)
            .invoke_async(&mut self.conn())
            .await
            .map_err(backend)?;
        if left == 0 {
            self.forget_owner(user).await?;
        }
        Ok(())
    }

    /// Removes a user whose index was seen empty, then puts them back if a device arrived since.
    async fn forget_owner(&self, user: &str) -> Result<()> {
        let mut conn = self.conn();
        let _: () = conn
            .zrem(keys::DEVICE_OWNERS, user)
            .await
            .map_err(backend)?;
        let left: u64 = conn
            .zcard(keys::user_devices(user))
            .await
            .map_err(backend)?;
        if left > 0 {
            self.note_owner(user).await?;
        }
        Ok(())
    }

    /// Fetches again past users found without devices, so a short page means the end.
    pub(super) async fn owners_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let mut owners = Vec::new();
        let mut min = after.map_or_else(|| "-".to_owned(), |user| format!("({user}"));
        while owners.len() < limit {
            let want = limit - owners.len();
            let page: Vec<String> = self
                .conn()
                .zrangebylex_limit(keys::DEVICE_OWNERS, &min, "+", 0, count(want))
                .await
                .map_err(backend)?;
            let Some(last) = page.last() else { break };
            min = format!("({last}");
            let end = page.len() < want;
            let devices: Vec<u64> = self
                .query_each(
                    page.iter()
                        .map(|user| {
                            let mut cmd = ::redis::cmd("ZCARD");
                            cmd.arg(keys::user_devices(user));
                            cmd
                        })
                        .collect(),
                )
                .await?;
            for (user, n) in page.into_iter().zip(devices) {
                if n > 0 {
                    owners.push(user);
                } else {
                    self.forget_owner(&user).await?;
                }
            }
            if end {
                break;
            }
        }
        Ok(owners)
    }
}
