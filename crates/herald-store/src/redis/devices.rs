//! Devices on Redis: `dev:{id}` holds a device's JSON (found by id whoever owns it) and the
//! owner's `{u:USER}:d` ZSET indexes their device ids by registration time.
//!
//! The record and the index are on different slots, so changing them is not one atomic step.
//! Writes go record first, then the old owner's index, then the new owner's; each step is
//! idempotent, and reads trust the record: an index entry whose record is gone or names another
//! user is skipped. A crash between steps thus leaves at worst a stale index entry, never a
//! device listed for two users. The owners index across users follows each user's index (see
//! `owners`).

use ::redis::{Cmd, FromRedisValue, Script};
use futures_util::{StreamExt, TryStreamExt, stream};
use herald_core::Device;

use super::connection::Conn;
use super::{CONCURRENCY, RedisStore, backend, json_err, keys, scripts};
use crate::Result;

pub struct DeviceScripts {
    register: Script,
    delete_own: Script,
    pub unindex: Script,
}

impl DeviceScripts {
    pub fn new() -> Self {
        Self {
            register: Script::new(scripts::REGISTER_DEVICE),
            delete_own: Script::new(scripts::DELETE_OWN_DEVICE),
            unindex: Script::new(scripts::UNINDEX_DEVICE),
        }
    }
}

fn parse(json: &str) -> Result<Device> {
    serde_json::from_str(json).map_err(json_err)
}

impl RedisStore {
    pub(super) async fn register_user_device(&self, device: &Device) -> Result<()> {
        let json = serde_json::to_string(device).map_err(json_err)?;
        let mut conn = self.conn();
        let previous: Option<String> = ::redis::cmd("SET")
            .arg(keys::device(&device.id))
            .arg(json)
            .arg("GET")
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        if let Some(previous) = previous {
            let previous = parse(&previous)?;
            if previous.user != device.user {
                self.unindex_device(&previous.user, &device.id).await?;
            }
        }
        let dropped: Vec<String> = self
            .device_scripts
            .register
            .key(keys::user_devices(&device.user))
            .arg(device.registered_at)
            .arg(&device.id)
            .arg(self.options.devices_per_user)
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        self.note_owner(&device.user).await?;
        for id in dropped {
            self.delete_own_device(&device.user, &id).await?;
        }
        Ok(())
    }

    /// Deletes the device's record if `user` owns it.
    async fn delete_own_device(&self, user: &str, id: &str) -> Result<bool> {
        let deleted: i64 = self
            .device_scripts
            .delete_own
            .key(keys::device(id))
            .arg(user)
            .invoke_async(&mut self.conn())
            .await
            .map_err(backend)?;
        Ok(deleted == 1)
    }

    pub(super) async fn remove_user_device(&self, user: &str, id: &str) -> Result<bool> {
        let owned = self.delete_own_device(user, id).await?;
        // Also clears an index entry left behind by an interrupted move.
        self.unindex_device(user, id).await?;
        Ok(owned)
    }

    pub(super) async fn prune_any_device(&self, id: &str) -> Result<bool> {
        let mut conn = self.conn();
        let stored: Option<String> = ::redis::cmd("GETDEL")
            .arg(keys::device(id))
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        let Some(stored) = stored else {
            return Ok(false);
        };
        self.unindex_device(&parse(&stored)?.user, id).await?;
        Ok(true)
    }

    /// Two round trips for any number of users: every user's index, then every record in one MGET
    /// (which the Cluster client splits per slot).
    pub(super) async fn devices_of_users(&self, users: &[String]) -> Result<Vec<Device>> {
        let mut unique: Vec<&String> = Vec::with_capacity(users.len());
        let mut seen = std::collections::HashSet::new();
        unique.extend(users.iter().filter(|u| seen.insert(u.as_str())));
        let indexes: Vec<Vec<String>> = self
            .query_each(
                unique
                    .iter()
                    .map(|user| {
                        let mut cmd = ::redis::cmd("ZRANGE");
                        cmd.arg(keys::user_devices(user)).arg(0).arg(-1).arg("REV");
                        cmd
                    })
                    .collect(),
            )
            .await?;
        let owned: Vec<(&str, &str)> = unique
            .iter()
            .zip(&indexes)
            .flat_map(|(user, ids)| ids.iter().map(move |id| (user.as_str(), id.as_str())))
            .collect();
        if owned.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<Option<String>> = ::redis::cmd("MGET")
            .arg(
                owned
                    .iter()
                    .map(|(_, id)| keys::device(id))
                    .collect::<Vec<_>>(),
            )
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let mut devices = Vec::with_capacity(owned.len());
        for ((user, _), record) in owned.into_iter().zip(records) {
            let Some(json) = record else { continue };
            let device = parse(&json)?;
            if device.user == user {
                devices.push(device);
            }
        }
        Ok(devices)
    }

    /// Runs commands on keys of many slots: one pipeline on a single server, concurrent commands
    /// on a Cluster (where a pipeline cannot span slots; the connection multiplexes them).
    pub(super) async fn query_each<T: FromRedisValue + Send>(
        &self,
        cmds: Vec<Cmd>,
    ) -> Result<Vec<T>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        match self.conn() {
            Conn::Cluster(_) => stream::iter(cmds)
                .map(|cmd| {
                    let mut conn = self.conn();
                    async move { cmd.query_async::<T>(&mut conn).await }
                })
                .buffered(CONCURRENCY)
                .try_collect()
                .await
                .map_err(backend),
            mut conn => {
                let mut pipe = ::redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query_async(&mut conn).await.map_err(backend)
            }
        }
    }
}
