//! Categories in the embedded engine: `categories` maps each name to the category's JSON, so
//! listing the keyspace lists them by name.

use fjall::Keyspace;
use herald_core::Category;

use super::overlay::{Overlay, backend};
use super::records::*;
use crate::Result;

/// Creates or replaces the category of its name.
pub fn put(overlay: &mut Overlay<'_>, category: &Category) {
    overlay.put(
        CATEGORIES,
        category.name.as_bytes().to_vec(),
        to_json(category),
    );
}

/// Removes the category; false if there was none by that name.
pub fn delete(overlay: &mut Overlay<'_>, name: &str) -> Result<bool> {
    if overlay.get(CATEGORIES, name.as_bytes())?.is_none() {
        return Ok(false);
    }
    overlay.delete(CATEGORIES, name.as_bytes().to_vec());
    Ok(true)
}

/// Every category, by name.
pub fn all(keyspace: &Keyspace) -> Result<Vec<Category>> {
    let mut categories = Vec::new();
    for guard in keyspace.iter() {
        let (_, value) = guard.into_inner().map_err(backend)?;
        categories.push(from_json(&value)?);
    }
    Ok(categories)
}
