//! Preferences in the embedded engine: `preferences` maps each user to their preferences' JSON.

use fjall::{Database, Keyspace, Readable};
use herald_core::Preferences;

use super::overlay::{Overlay, backend};
use super::records::*;
use crate::Result;

/// Replaces the user's preferences.
pub fn put(overlay: &mut Overlay<'_>, user: &str, preferences: &Preferences) {
    overlay.put(PREFERENCES, user.as_bytes().to_vec(), to_json(preferences));
}

/// The preferences of `users` in the order asked, from one snapshot; `None` for users who set none.
pub fn of_users(
    db: &Database,
    keyspaces: &[Keyspace],
    users: &[String],
) -> Result<Vec<Option<Preferences>>> {
    let snap = db.snapshot();
    users
        .iter()
        .map(|user| {
            snap.get(&keyspaces[PREFERENCES], user.as_bytes())
                .map_err(backend)?
                .map(|raw| from_json(&raw))
                .transpose()
        })
        .collect()
}
