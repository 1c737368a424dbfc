//! Devices in the embedded engine: `devices` holds each device by id (so a device is found
//! whoever owns it), `user_devices` indexes them per user as `user \0 registered_at id`, oldest
//! first, with a copy of the device as its value, so the fan-out and the sender read a user's
//! devices with one prefix scan and no lookup per device. Both are written and removed in the
//! same batch (on the writer thread), so the copy never differs from the record.

use std::collections::HashSet;

use fjall::{Database, Keyspace, Readable};
use herald_core::Device;

use super::keys::{self, user_prefix};
use super::overlay::{Overlay, backend};
use super::records::*;
use crate::Result;

/// Stores `device` for its user, taking it from any previous owner, then drops that user's
/// least recently registered devices beyond `per_user`.
pub fn register(overlay: &mut Overlay<'_>, device: &Device, per_user: usize) -> Result<()> {
    if let Some(previous) = stored(overlay, &device.id)? {
        unindex(overlay, &previous);
    }
    let json = to_json(device);
    overlay.put(DEVICES, device.id.as_bytes().to_vec(), json.clone());
    overlay.put(
        USER_DEVICES,
        keys::user_device(&device.user, device.registered_at, &device.id),
        json,
    );
    let prefix = user_prefix(&device.user);
    let owned = overlay.scan_prefix(USER_DEVICES, &prefix, usize::MAX)?;
    let excess = owned.len().saturating_sub(per_user);
    for (key, _) in owned.into_iter().take(excess) {
        let id = key[prefix.len() + 8..].to_vec();
        overlay.delete(USER_DEVICES, key);
        overlay.delete(DEVICES, id);
    }
    Ok(())
}

/// Removes the device if `user` owns it.
pub fn remove(overlay: &mut Overlay<'_>, user: &str, id: &str) -> Result<bool> {
    match stored(overlay, id)? {
        Some(device) if device.user == user => {
            delete(overlay, &device);
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Removes the device whoever owns it.
pub fn prune(overlay: &mut Overlay<'_>, id: &str) -> Result<bool> {
    match stored(overlay, id)? {
        Some(device) => {
            delete(overlay, &device);
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The devices of `users`, each user's most recently registered first, from one snapshot.
pub fn of_users(db: &Database, keyspaces: &[Keyspace], users: &[String]) -> Result<Vec<Device>> {
    let snap = db.snapshot();
    let mut devices = Vec::new();
    let mut seen = HashSet::new();
    for user in users {
        if !seen.insert(user.as_str()) {
            continue;
        }
        let prefix = user_prefix(user);
        for guard in snap.prefix(&keyspaces[USER_DEVICES], &prefix).rev() {
            let (key, copy) = guard.into_inner().map_err(backend)?;
            if !copy.is_empty() {
                devices.push(from_json(&copy)?);
                continue;
            }
            // Indexed before the index kept a copy: read the record.
            let id = &key[prefix.len() + 8..];
            if let Some(raw) = snap.get(&keyspaces[DEVICES], id).map_err(backend)? {
                devices.push(from_json(&raw)?);
            }
        }
    }
    Ok(devices)
}

/// Up to `limit` users with a device, in id order, after `after`. The index keys start with
/// `user \0`, so one forward scan meets a user's few devices together; `after \x01` is just past
/// every key of `after`.
pub fn owners(keyspace: &Keyspace, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
    let start = after.map_or_else(Vec::new, |after| {
        let mut k = after.as_bytes().to_vec();
        k.push(1);
        k
    });
    let mut users: Vec<String> = Vec::with_capacity(limit.min(16 * 1024));
    if limit == 0 {
        return Ok(users);
    }
    for guard in keyspace.range(start..) {
        let key = guard.key().map_err(backend)?;
        let end = key
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| backend("corrupt device index key"))?;
        let user = &key[..end];
        if users.last().is_some_and(|last| last.as_bytes() == user) {
            continue;
        }
        if users.len() == limit {
            break;
        }
        users.push(String::from_utf8(user.to_vec()).map_err(backend)?);
    }
    Ok(users)
}

fn stored(overlay: &Overlay<'_>, id: &str) -> Result<Option<Device>> {
    overlay
        .get(DEVICES, id.as_bytes())?
        .map(|raw| from_json(&raw))
        .transpose()
}

fn unindex(overlay: &mut Overlay<'_>, device: &Device) {
    overlay.delete(
        USER_DEVICES,
        keys::user_device(&device.user, device.registered_at, &device.id),
    );
}

fn delete(overlay: &mut Overlay<'_>, device: &Device) {
    unindex(overlay, device);
    overlay.delete(DEVICES, device.id.as_bytes().to_vec());
}
