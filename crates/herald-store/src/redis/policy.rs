//! Delivery policy settings on Redis: every category's JSON in one HASH `policy:categories`
//! (name → JSON; few and small, read whole), and each user's preferences as JSON in
//! `{u:USER}:p`. Also what the other policy files share: their scripts, and the grouping of a
//! batch per user (one script call per user, on that user's slot).

use std::collections::HashMap;

use ::redis::{AsyncCommands, FromRedisValue, Script};
use futures_util::{StreamExt, TryStreamExt, stream};
use herald_core::{Category, Preferences};

use super::{CONCURRENCY, RedisStore, backend, json_err, keys, scripts};
use crate::Result;

pub struct PolicyScripts {
    pub take_caps: Script,
    pub claim_collapse: Script,
    pub count_decisions: Script,
    pub log_decisions: Script,
}

impl PolicyScripts {
    pub fn new() -> Self {
        Self {
            take_caps: Script::new(scripts::TAKE_CAPS),
            claim_collapse: Script::new(scripts::CLAIM_COLLAPSE),
            count_decisions: Script::new(scripts::COUNT_DECISIONS),
            log_decisions: Script::new(scripts::LOG_DECISIONS),
        }
    }
}

/// The positions of a batch's items per user, users in first-seen order and each user's items
/// in batch order: a user's items go to one script, which handles them one after the other.
pub(super) fn by_user<T>(items: &[T], user: impl Fn(&T) -> &str) -> Vec<(&str, Vec<usize>)> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let u = user(item);
        let g = *index.entry(u).or_insert_with(|| {
            groups.push((u, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    groups
}

/// One script call's keys and arguments, owned, so calls can be built first and run concurrently.
#[derive(Default)]
pub(super) struct Call {
    pub keys: Vec<String>,
    pub args: Vec<String>,
}

impl Call {
    pub fn key(&mut self, key: String) -> &mut Self {
        self.keys.push(key);
        self
    }

    pub fn arg(&mut self, arg: impl ToString) -> &mut Self {
        self.args.push(arg.to_string());
        self
    }
}

impl RedisStore {
    /// Runs `script` once per call, concurrently, answers in call order. Each call's keys are one
    /// user's (one slot); the multiplexed connection pipelines them, on a Cluster per node.
    pub(super) async fn invoke_each<T: FromRedisValue + Send>(
        &self,
        script: &Script,
        calls: Vec<Call>,
    ) -> Result<Vec<T>> {
        stream::iter(calls)
            .map(|call| {
                let mut conn = self.conn();
                async move {
                    let mut invocation = script.prepare_invoke();
                    for key in &call.keys {
                        invocation.key(key);
                    }
                    for arg in &call.args {
                        invocation.arg(arg);
                    }
                    invocation.invoke_async::<T>(&mut conn).await
                }
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await
            .map_err(backend)
    }

    pub(super) async fn store_category(&self, category: &Category) -> Result<()> {
        let json = serde_json::to_string(category).map_err(json_err)?;
        self.conn()
            .hset(keys::CATEGORIES, &category.name, json)
            .await
            .map_err(backend)
    }

    pub(super) async fn remove_category(&self, name: &str) -> Result<bool> {
        let removed: u64 = self
            .conn()
            .hdel(keys::CATEGORIES, name)
            .await
            .map_err(backend)?;
        Ok(removed == 1)
    }

    pub(super) async fn all_categories(&self) -> Result<Vec<Category>> {
        let stored: HashMap<String, String> = self
            .conn()
            .hgetall(keys::CATEGORIES)
            .await
            .map_err(backend)?;
        let mut categories = stored
            .values()
            .map(|json| serde_json::from_str(json).map_err(json_err))
            .collect::<Result<Vec<Category>>>()?;
        categories.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(categories)
    }

    pub(super) async fn store_preferences(
        &self,
        user: &str,
        preferences: &Preferences,
    ) -> Result<()> {
        let json = serde_json::to_string(preferences).map_err(json_err)?;
        self.conn()
            .set(keys::user_preferences(user), json)
            .await
            .map_err(backend)
    }

    /// One MGET, or on a Cluster one pipeline per master.
    pub(super) async fn preferences_of_users(
        &self,
        users: &[String],
    ) -> Result<Vec<Option<Preferences>>> {
        let keys: Vec<String> = users.iter().map(|u| keys::user_preferences(u)).collect();
        let stored = self.get_many(&keys).await?;
        stored
            .into_iter()
            .map(|json| {
                json.map(|j| serde_json::from_str(&j).map_err(json_err))
                    .transpose()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_first_seen_users_and_batch_order() {
        let items = ["a", "b", "a", "c", "b"];
        assert_eq!(
            by_user(&items, |u| u),
            [("a", vec![0, 2]), ("b", vec![1, 4]), ("c", vec![3])]
        );
    }
}
