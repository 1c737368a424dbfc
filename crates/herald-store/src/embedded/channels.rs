//! Realtime channel history on the embedded engine.
//!
//! Messages live in their own keyspace, written directly rather than through the writer thread:
//! a channel only needs its positions given in order, which a lock does, and a log line should
//! not wait behind a fan-out batch. Large payloads go to one file per upload under
//! `channel-uploads/`, written and read a chunk at a time, so a 100 MB message never sits in
//! memory (the page cache holds it, not the process).
//!
//! Keys: `channel 0x00 position(u64 BE)` → an encoded [`ChannelMessage`];
//! `channel 0x01` → the head (`position u64 BE, last publish ms i64 BE`), so positions survive a
//! restart after the history itself has expired. Channel names never hold bytes below `-`, so
//! the two prefixes cannot collide across channels.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use fjall::{Database, Keyspace, PersistMode};
use tokio::sync::mpsc;

use super::overlay::backend;
use crate::{
    ChannelMessage, ChannelNotice, ChannelOptions, ChannelRead, NewChannelMessage, Result,
    StoreError,
};

const MESSAGE: u8 = 0;
const HEAD: u8 = 1;
/// Notices waiting for the realtime hub; past it they are dropped (readers fill holes).
const NOTICE_QUEUE: usize = 64 * 1024;

#[derive(Clone, Copy)]
struct Head {
    position: u64,
    /// Oldest position possibly still stored (trimming by count starts here).
    oldest: u64,
    last_ms: i64,
}

pub struct ChannelLog {
    db: Database,
    keyspace: Keyspace,
    uploads: PathBuf,
    options: ChannelOptions,
    heads: Mutex<HashMap<String, Head>>,
    notices: mpsc::Sender<ChannelNotice>,
    notices_rx: Mutex<Option<mpsc::Receiver<ChannelNotice>>>,
}

fn message_key(channel: &str, position: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(channel.len() + 9);
    key.extend_from_slice(channel.as_bytes());
    key.push(MESSAGE);
    key.extend_from_slice(&position.to_be_bytes());
    key
}

fn head_key(channel: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(channel.len() + 1);
    key.extend_from_slice(channel.as_bytes());
    key.push(HEAD);
    key
}

fn encode_head(head: &Head) -> [u8; 16] {
    let mut v = [0; 16];
    v[..8].copy_from_slice(&head.position.to_be_bytes());
    v[8..].copy_from_slice(&head.last_ms.to_be_bytes());
    v
}

/// Upload ids name files, so only ULID-like ids are taken.
fn check_upload(upload: &str) -> Result<()> {
    if upload.is_empty() || upload.len() > 64 || !upload.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(StoreError::Backend(format!("bad upload id {upload:?}")));
    }
    Ok(())
}

impl ChannelLog {
    pub fn open(db: &Database, dir: &Path, options: ChannelOptions) -> Result<Self> {
        let keyspace = db
            .keyspace("channel_messages", fjall::KeyspaceCreateOptions::default)
            .map_err(backend)?;
        let uploads = dir.join("channel-uploads");
        fs::create_dir_all(&uploads).map_err(backend)?;
        let (notices, rx) = mpsc::channel(NOTICE_QUEUE);
        Ok(Self {
            db: db.clone(),
            keyspace,
            uploads,
            options,
            heads: Mutex::new(HashMap::new()),
            notices,
            notices_rx: Mutex::new(Some(rx)),
        })
    }

    /// A channel is never forgotten while its history may still hold messages.
    fn idle_ms(&self) -> i64 {
        self.options.idle_ms.max(self.options.history_ms)
    }

    pub fn events(&self) -> Option<mpsc::Receiver<ChannelNotice>> {
        self.notices_rx.lock().expect("notices lock").take()
    }

    fn upload_path(&self, upload: &str) -> Result<PathBuf> {
        check_upload(upload)?;
        Ok(self.uploads.join(upload))
    }

    pub async fn put_chunk(&self, upload: &str, index: u32, data: Bytes) -> Result<()> {
        let path = self.upload_path(upload)?;
        let offset = u64::from(index) * self.options.chunk_bytes as u64;
        blocking(move || {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(backend)?;
            file.write_all_at(&data, offset).map_err(backend)
        })
        .await
    }

    pub async fn chunk(&self, upload: &str, index: u32) -> Result<Option<Bytes>> {
        let path = self.upload_path(upload)?;
        let size = self.options.chunk_bytes;
        let offset = u64::from(index) * size as u64;
        blocking(move || {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(backend(e)),
            };
            let mut buf = vec![0; size];
            let mut filled = 0;
            while filled < size {
                match file.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(backend(e)),
                }
            }
            if filled == 0 {
                return Ok(None);
            }
            buf.truncate(filled);
            Ok(Some(Bytes::from(buf)))
        })
        .await
    }

    pub async fn discard(&self, upload: &str) -> Result<()> {
        let path = self.upload_path(upload)?;
        blocking(move || match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(backend(e)),
            _ => Ok(()),
        })
        .await
    }

    /// The head of `channel`, loaded from disk the first time this process sees it.
    fn head_of<'a>(
        &self,
        heads: &'a mut HashMap<String, Head>,
        channel: &str,
    ) -> Result<&'a mut Head> {
        if !heads.contains_key(channel) {
            let head = match self.keyspace.get(head_key(channel)).map_err(backend)? {
                Some(v) if v.len() == 16 => {
                    let position = u64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
                    let last_ms = i64::from_be_bytes(v[8..].try_into().expect("8 bytes"));
                    let oldest = self
                        .keyspace
                        .prefix(message_prefix(channel))
                        .next()
                        .map(|g| g.key().map_err(backend))
                        .transpose()?
                        .map_or(position + 1, |k| position_of(&k));
                    Head {
                        position,
                        oldest,
                        last_ms,
                    }
                }
                _ => Head {
                    position: 0,
                    oldest: 1,
                    last_ms: 0,
                },
            };
            heads.insert(channel.to_owned(), head);
        }
        Ok(heads.get_mut(channel).expect("just inserted"))
    }

    pub fn publish(
        &self,
        channel: &str,
        messages: Vec<NewChannelMessage>,
        now_ms: i64,
    ) -> Result<Vec<u64>> {
        let mut published = Vec::with_capacity(messages.len());
        {
            let mut heads = self.heads.lock().expect("heads lock");
            let idle_ms = self.idle_ms();
            let head = self.head_of(&mut heads, channel)?;
            if head.position > 0 && now_ms - head.last_ms > idle_ms {
                // Forgotten: positions start again, as on Redis when its counter expires. What
                // is left of the old history is older than the history time, so never read.
                *head = Head {
                    position: 0,
                    oldest: 1,
                    last_ms: now_ms,
                };
            }
            let mut next = *head;
            let mut batch = self.db.batch();
            for m in messages {
                next.position += 1;
                let message = ChannelMessage {
                    position: next.position,
                    published_ms: now_ms,
                    content_type: m.content_type,
                    bytes: m.bytes,
                    body: m.body,
                };
                batch.insert(
                    &self.keyspace,
                    message_key(channel, next.position),
                    message.encode().to_vec(),
                );
                published.push(message);
            }
            next.last_ms = now_ms;
            // Trim by count: everything at or below `keep_from - 1` goes.
            let keep_from = next
                .position
                .saturating_sub(self.options.history_messages as u64)
                + 1;
            while next.oldest < keep_from {
                batch.remove(&self.keyspace, message_key(channel, next.oldest));
                next.oldest += 1;
            }
            batch.insert(&self.keyspace, head_key(channel), encode_head(&next));
            batch.commit().map_err(backend)?;
            // Into the OS's hands, so a killed process keeps what it acknowledged.
            self.db.persist(PersistMode::Buffer).map_err(backend)?;
            *head = next;
        }
        let channel: std::sync::Arc<str> = channel.into();
        let positions = published.iter().map(|m| m.position).collect();
        for message in published {
            let notice = ChannelNotice {
                channel: channel.clone(),
                message: message.into(),
            };
            // A full queue drops the notice; subscribers read the hole from history.
            let _ = self.notices.try_send(notice);
        }
        Ok(positions)
    }

    pub fn read(&self, channel: &str, after: u64, max: usize, now_ms: i64) -> Result<ChannelRead> {
        let head = {
            let mut heads = self.heads.lock().expect("heads lock");
            *self.head_of(&mut heads, channel)?
        };
        if head.position == 0 || now_ms - head.last_ms > self.idle_ms() {
            return Ok(ChannelRead {
                messages: Vec::new(),
                head: 0,
            });
        }
        let fresh_from = now_ms - self.options.history_ms;
        let from = (after + 1).max(head.oldest);
        let mut messages = Vec::new();
        if max > 0 && from <= head.position {
            // Expired messages sit at the front until purged (positions follow publish time):
            // they are skipped, and do not count against `max`.
            for guard in self
                .keyspace
                .range(message_key(channel, from)..head_key(channel))
            {
                let value = guard.value().map_err(backend)?;
                if published_ms(&value)? < fresh_from {
                    continue;
                }
                messages.push(ChannelMessage::decode(&Bytes::from(value.to_vec()))?);
                if messages.len() >= max {
                    break;
                }
            }
        }
        Ok(ChannelRead {
            messages,
            head: head.position,
        })
    }

    /// Drops expired messages, forgets idle channels and sweeps old upload files. Returns the
    /// number of messages dropped.
    pub fn purge(&self, now_ms: i64) -> Result<u64> {
        let fresh_from = now_ms - self.options.history_ms;
        let idle_from = now_ms - self.idle_ms();
        let mut removed = 0;
        let mut batch = self.db.batch();
        let mut forgotten = Vec::new();
        for guard in self.keyspace.iter() {
            let (key, value) = guard.into_inner().map_err(backend)?;
            if key.len() > 9 && key[key.len() - 9] == MESSAGE {
                if published_ms(&value)? < fresh_from {
                    batch.remove(&self.keyspace, key.to_vec());
                    removed += 1;
                }
            } else if key.last() == Some(&HEAD) && value.len() == 16 {
                let last_ms = i64::from_be_bytes(value[8..].try_into().expect("8 bytes"));
                if last_ms < idle_from {
                    batch.remove(&self.keyspace, key.to_vec());
                    forgotten.push(String::from_utf8_lossy(&key[..key.len() - 1]).into_owned());
                }
            }
        }
        {
            let mut heads = self.heads.lock().expect("heads lock");
            // A channel published to since the scan is not idle any more.
            forgotten.retain(|c| heads.get(c).is_none_or(|h| h.last_ms < idle_from));
            for channel in &forgotten {
                heads.remove(channel);
            }
            batch.commit().map_err(backend)?;
        }
        self.sweep_uploads(now_ms)?;
        Ok(removed)
    }

    fn sweep_uploads(&self, now_ms: i64) -> Result<()> {
        let cutoff = now_ms - self.options.history_ms - self.options.upload_grace_ms;
        for entry in fs::read_dir(&self.uploads).map_err(backend)? {
            let entry = entry.map_err(backend)?;
            let name = entry.file_name();
            let Some(started) = name
                .to_str()
                .and_then(|n| ulid::Ulid::from_string(n).ok())
                .map(|u| u.timestamp_ms() as i64)
            else {
                continue;
            };
            if started < cutoff {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

fn message_prefix(channel: &str) -> Vec<u8> {
    let mut key = channel.as_bytes().to_vec();
    key.push(MESSAGE);
    key
}

fn published_ms(encoded: &[u8]) -> Result<i64> {
    ChannelMessage::published_ms_of(encoded)
        .ok_or_else(|| StoreError::Backend("corrupt channel message".into()))
}

fn position_of(key: &[u8]) -> u64 {
    u64::from_be_bytes(key[key.len() - 8..].try_into().expect("8 bytes"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend(format!("channel file task: {e}")))?
}
