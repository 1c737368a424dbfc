//! A campaign's push sends resolved before `send_at`: per slice of the audience, the devices to
//! send to (policy judged, devices looked up), stored once and never changed, and which of them
//! are finished. At `send_at` the campaign only sends; no outbox entry per send.

use herald_core::Device;
use serde::{Deserialize, Serialize};

use crate::{DeadLetter, PushTask, SendStatus};

/// The push sends of audience positions `from .. to`, resolved ahead of the send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushStage {
    pub from: u64,
    pub to: u64,
    /// Sends due at once, each as [`staged_device`] keeps it; a send's index here is its place
    /// in the [`StagedProgress`].
    #[serde(with = "stored_sends")]
    pub sends: Vec<Device>,
    /// Sends held by quiet hours, queued in the outbox (with their due time) when the stage
    /// is sent.
    pub deferred: Vec<PushTask>,
}

/// What a stage keeps of a device: what a send uses (id, user, platform, address, app, keys),
/// not its locale, time zone or registration time.
pub fn staged_device(d: &Device) -> Device {
    Device {
        locale: None,
        timezone: None,
        registered_at: 0,
        ..d.clone()
    }
}

/// A stage's sends as stored: each as `[id, user, platform, address, app, keys]`, without the
/// field names or what [`staged_device`] leaves out, about a third less than a device's JSON (a
/// 4M-user campaign's stages are a gigabyte of devices). A send stored as a whole device (before
/// this form) still reads.
mod stored_sends {
    use std::fmt;

    use herald_core::{Device, Platform, WebPushKeys};
    use serde::de::{self, MapAccess, SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    type Stored<'a> = (
        &'a str,
        &'a str,
        Platform,
        &'a str,
        &'a Option<String>,
        &'a Option<WebPushKeys>,
    );

    pub fn serialize<S: Serializer>(sends: &[Device], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(sends.len()))?;
        for d in sends {
            let stored: Stored<'_> = (&d.id, &d.user, d.platform, &d.address, &d.app, &d.keys);
            seq.serialize_element(&stored)?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Device>, D::Error> {
        let sends = Vec::<Send>::deserialize(d)?;
        Ok(sends.into_iter().map(|s| s.0).collect())
    }

    struct Send(Device);

    impl<'de> Deserialize<'de> for Send {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(SendVisitor)
        }
    }

    struct SendVisitor;

    impl<'de> Visitor<'de> for SendVisitor {
        type Value = Send;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a staged send: [id, user, platform, address, app, keys] or a device")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Send, A::Error> {
            let missing = |i| de::Error::invalid_length(i, &"6 elements");
            let id: String = seq.next_element()?.ok_or_else(|| missing(0))?;
            let user: String = seq.next_element()?.ok_or_else(|| missing(1))?;
            let platform: Platform = seq.next_element()?.ok_or_else(|| missing(2))?;
            let address: String = seq.next_element()?.ok_or_else(|| missing(3))?;
            let app: Option<String> = seq.next_element()?.ok_or_else(|| missing(4))?;
            let keys: Option<WebPushKeys> = seq.next_element()?.ok_or_else(|| missing(5))?;
            // What `staged_device` leaves out is not stored.
            Ok(Send(Device {
                id,
                user,
                platform,
                address,
                keys,
                app,
                locale: None,
                timezone: None,
                registered_at: 0,
            }))
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Send, A::Error> {
            let device = Device::deserialize(de::value::MapAccessDeserializer::new(map))?;
            Ok(Send(super::staged_device(&device)))
        }
    }
}

/// Which sends of a [`PushStage`] are finished: bit `i` (most significant bit first in each
/// byte, as Redis `SETBIT` numbers them) for send `i`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StagedProgress(pub Vec<u8>);

impl StagedProgress {
    pub fn finished(&self, index: u32) -> bool {
        let byte = (index / 8) as usize;
        self.0
            .get(byte)
            .is_some_and(|b| b & (0x80 >> (index % 8)) != 0)
    }

    /// Marks send `index` finished; false if it was already.
    pub fn finish(&mut self, index: u32) -> bool {
        let byte = (index / 8) as usize;
        if self.0.len() <= byte {
            self.0.resize(byte + 1, 0);
        }
        let bit = 0x80 >> (index % 8);
        let fresh = self.0[byte] & bit == 0;
        self.0[byte] |= bit;
        fresh
    }

    /// How many sends are finished.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|b| u64::from(b.count_ones())).sum()
    }
}

/// How one staged send ended.
#[derive(Debug, Clone, PartialEq)]
pub struct StagedOutcome {
    /// The send's index in its stage.
    pub index: u32,
    /// `None`: handed on to the outbox (a retry), which counts it from then on.
    pub status: Option<SendStatus>,
    /// For a `Failed` send: the dead letter kept for it.
    pub letter: Option<DeadLetter>,
}

#[cfg(test)]
mod tests {
    use herald_core::{Platform, WebPushKeys};

    use super::*;

    fn device(platform: Platform, address: &str, keys: Option<WebPushKeys>) -> Device {
        Device {
            id: herald_core::device::device_id(platform, address),
            user: "user-1".into(),
            platform,
            address: address.into(),
            keys,
            app: (platform == Platform::Apns).then(|| "com.example.app".into()),
            locale: Some("de-DE".into()),
            timezone: Some("Europe/Berlin".into()),
            registered_at: 1_790_000_000_000,
        }
    }

    #[test]
    fn stages_keep_what_a_send_uses_in_a_compact_form() {
        let keys = WebPushKeys {
            p256dh: "BPub".into(),
            auth: "sec".into(),
        };
        let devices = vec![
            device(Platform::Fcm, "fcm-token-1", None),
            device(Platform::Apns, "0a1b2c", None),
            device(Platform::Webpush, "https://push.example/abc", Some(keys)),
        ];
        let stage = PushStage {
            from: 0,
            to: 3,
            sends: devices.clone(),
            deferred: Vec::new(),
        };
        let json = serde_json::to_string(&stage).unwrap();
        let read: PushStage = serde_json::from_str(&json).unwrap();
        let kept: Vec<Device> = devices.iter().map(staged_device).collect();
        assert_eq!(read.sends, kept);
        // A third or more smaller than the same stage stored with whole devices (the old form).
        let whole = serde_json::to_string(&devices).unwrap();
        let old = format!(r#"{{"from":0,"to":3,"sends":{whole},"deferred":[]}}"#);
        assert!(
            json.len() * 3 <= old.len() * 2,
            "{} vs {}",
            json.len(),
            old.len()
        );
        assert!(json.len() < whole.len());

        // A stage stored with whole devices still reads.
        let read: PushStage = serde_json::from_str(&old).unwrap();
        assert_eq!(read.sends, kept);
    }

    #[test]
    fn progress_bits_follow_redis_setbit_order() {
        let mut p = StagedProgress::default();
        assert!(p.finish(0));
        assert!(p.finish(9));
        assert!(!p.finish(9), "twice is once");
        assert_eq!(p.0, vec![0x80, 0x40]);
        assert!(p.finished(0) && p.finished(9));
        assert!(!p.finished(1) && !p.finished(100));
        assert_eq!(p.count(), 2);
    }
}
