//! Campaigns: one notification sent to an audience of any size at a chosen time, in checkpointed
//! batches that a restart resumes, each recipient once per channel.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::limits::Limits;
use crate::names::check_name;
use crate::notification::{Channel, Priority, Recipients};
use crate::publish::PublishRequest;
use crate::validation::{Checker, ValidationError};

/// Longest campaign name, in characters.
pub const MAX_CAMPAIGN_NAME_CHARS: usize = 200;
/// Malformed audience lines remembered per campaign (all are counted).
pub const MAX_MALFORMED_KEPT: usize = 100;

/// Who a campaign reaches.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// The users uploaded with `PUT /v1/campaigns/{id}/recipients`.
    #[default]
    List,
    /// A topic's subscribers when the campaign is sent.
    Topic(String),
    /// Everyone: the global feed for the inbox, every device owner for push.
    All,
}

/// What every recipient gets: the fields of `POST /v1/notifications` but `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignMessage {
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Channel>>)]
    pub channels: Option<Vec<Channel>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collapse_key: Option<String>,
}

/// `POST /v1/campaigns` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignRequest {
    pub name: String,
    pub message: CampaignMessage,
    /// `"list"` (default: upload recipients), `{"topic": "name"}` or `"all"`.
    #[serde(default)]
    pub audience: Audience,
    /// RFC 3339; absent: the campaign waits for `POST /v1/campaigns/{id}/start`.
    #[serde(default)]
    pub send_at: Option<String>,
    /// Most recipients handled per second; absent: as fast as the pipeline goes.
    #[serde(default)]
    pub rate_per_second: Option<u32>,
    /// Runs everything without delivering push (as on a publish).
    #[serde(default)]
    pub dry_run: bool,
}

/// Where a campaign stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignState {
    /// Waiting for `start`; recipients may be uploaded.
    Draft,
    /// Starts by itself at `send_at`.
    Scheduled,
    Sending,
    Paused,
    Completed,
    Cancelled,
}

impl CampaignState {
    /// No further change is possible.
    pub fn is_final(self) -> bool {
        matches!(self, CampaignState::Completed | CampaignState::Cancelled)
    }
}

/// An audience line that could not be read, kept to be reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MalformedLine {
    /// 1-based, within its upload.
    pub line: u64,
    pub reason: String,
}

/// A campaign as stored. Changes go through a compare-and-set on `version`, so two nodes (or a
/// double-pressed button) never both apply a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    /// A ULID.
    pub id: String,
    pub name: String,
    pub message: CampaignMessage,
    pub audience: Audience,
    pub dry_run: bool,
    /// Unix milliseconds.
    pub send_at: Option<i64>,
    pub rate_per_second: Option<u32>,
    pub state: CampaignState,
    /// The notification every recipient gets, stored once when sending begins.
    pub notification: Option<String>,
    /// Recipients handled so far (list: positions; topic and all: users walked).
    pub done: u64,
    /// Where a topic or device-owner walk stopped (the last user id handled).
    pub walk_cursor: Option<String>,
    /// Audience lines that were not user ids, in all uploads.
    pub malformed: u64,
    pub malformed_lines: Vec<MalformedLine>,
    /// Audience entries already in the list (each user gets it once).
    pub duplicates: u64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The node sending it and until when its claim holds (Unix ms); another node takes over
    /// a campaign whose claim ran out.
    pub owner: Option<String>,
    pub lease_until: i64,
    pub version: u64,
    /// The uploaded recipient list was deleted, some time after the campaign ended (its count
    /// is kept).
    #[serde(default)]
    pub recipients_dropped: bool,
    /// The list's inbox and live entry is one shared entry of the global feed, shown to the
    /// listed users (set when it is published); see `Store::deliver_shared`.
    #[serde(default)]
    pub shared: bool,
    /// Listed users judged for the shared entry (positions below this one): whose preferences
    /// keep it out of their inbox or live streams.
    #[serde(default)]
    pub staged: u64,
    /// Who is listed was deleted too, once the shared entry left the global feed.
    #[serde(default)]
    pub members_dropped: bool,
    /// Listed users whose push sends were resolved before `send_at` (positions below this one;
    /// see `Store::stage_push`).
    #[serde(default)]
    pub push_staged: u64,
    /// The push stages were deleted, once the campaign ended (they are worth their space only
    /// while it may send).
    #[serde(default)]
    pub stages_dropped: bool,
}

impl CampaignRequest {
    pub fn validate(&self, limits: &Limits, now_ms: i64) -> Result<(), ValidationError> {
        let mut c = Checker::default();
        let name_chars = self.name.chars().count();
        if self.name.trim().is_empty() || name_chars > MAX_CAMPAIGN_NAME_CHARS {
            c.fail("name", format!("1 to {MAX_CAMPAIGN_NAME_CHARS} characters"));
        }
        if let Audience::Topic(topic) = &self.audience {
            c.check("audience.topic", check_name("topic", topic));
        }
        match self.send_at.as_deref().map(parse_rfc3339_ms) {
            Some(Err(e)) => c.fail("send_at", e),
            Some(Ok(at)) if at < now_ms - 60_000 => c.fail(
                "send_at",
                "is in the past; leave it out and call start instead",
            ),
            _ => {}
        }
        if self.rate_per_second == Some(0) {
            c.fail("rate_per_second", "must be at least 1, or left out");
        }
        // The message follows every rule of a publish.
        if let Err(e) = self
            .message
            .as_publish(Recipients::All, false)
            .validate(limits)
        {
            for error in e.errors {
                c.fail(format!("message.{}", error.field), error.message);
            }
        }
        c.finish()
    }

    /// The campaign as first stored. Call after [`validate`](Self::validate).
    pub fn into_campaign(self, id: String, now_ms: i64) -> Campaign {
        let send_at = self
            .send_at
            .as_deref()
            .and_then(|s| parse_rfc3339_ms(s).ok());
        Campaign {
            id,
            name: self.name,
            message: self.message,
            audience: self.audience,
            dry_run: self.dry_run,
            send_at,
            rate_per_second: self.rate_per_second,
            state: if send_at.is_some() {
                CampaignState::Scheduled
            } else {
                CampaignState::Draft
            },
            notification: None,
            done: 0,
            walk_cursor: None,
            malformed: 0,
            malformed_lines: Vec::new(),
            duplicates: 0,
            created_at: now_ms,
            started_at: None,
            finished_at: None,
            owner: None,
            lease_until: 0,
            version: 0,
            recipients_dropped: false,
            shared: false,
            staged: 0,
            members_dropped: false,
            push_staged: 0,
            stages_dropped: false,
        }
    }
}

impl CampaignMessage {
    /// The message as a publish to `to`, for validation and for storing its notification.
    pub fn as_publish(&self, to: Recipients, dry_run: bool) -> PublishRequest {
        PublishRequest {
            to,
            title: self.title.clone(),
            body: self.body.clone(),
            category: self.category.clone(),
            data: self.data.clone(),
            priority: self.priority,
            ttl_seconds: self.ttl_seconds,
            channels: self.channels.clone(),
            idempotency_key: None,
            collapse_key: self.collapse_key.clone(),
            dry_run,
        }
    }
}

/// What a publisher asks of a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignAction {
    Start,
    Pause,
    Resume,
    Cancel,
}

impl CampaignAction {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "start" => Some(CampaignAction::Start),
            "pause" => Some(CampaignAction::Pause),
            "resume" => Some(CampaignAction::Resume),
            "cancel" => Some(CampaignAction::Cancel),
            _ => None,
        }
    }
}

impl Campaign {
    /// Applies an action: `Ok(true)` if the campaign changed, `Ok(false)` if it already was
    /// where the action leads (pressing start twice starts once), `Err` with the reason if the
    /// action makes no sense now.
    pub fn apply(&mut self, action: CampaignAction, now_ms: i64) -> Result<bool, String> {
        use CampaignState::*;
        let state = self.state;
        if state.is_final() && !(state == Cancelled && action == CampaignAction::Cancel) {
            return Err(format!("the campaign is {}", state.as_str()));
        }
        let next = match (action, state) {
            (CampaignAction::Start, Draft | Scheduled) => Sending,
            (CampaignAction::Start, Sending) => return Ok(false),
            (CampaignAction::Start, Paused) => {
                return Err("the campaign is paused; resume it".into());
            }
            (CampaignAction::Pause, Sending | Scheduled) => Paused,
            (CampaignAction::Pause, Paused) => return Ok(false),
            (CampaignAction::Pause, Draft) => return Err("the campaign has not started".into()),
            (CampaignAction::Resume, Paused) => {
                let due = self.send_at.is_none_or(|at| at <= now_ms);
                if self.started_at.is_some() || due {
                    Sending
                } else {
                    Scheduled
                }
            }
            (CampaignAction::Resume, Sending | Scheduled) => return Ok(false),
            (CampaignAction::Resume, Draft) => {
                return Err("the campaign has not started; start it".into());
            }
            (CampaignAction::Cancel, Cancelled) => return Ok(false),
            (CampaignAction::Cancel, _) => Cancelled,
            (_, Completed | Cancelled) => unreachable!("final states are handled above"),
        };
        self.state = next;
        match next {
            Sending if self.started_at.is_none() => self.started_at = Some(now_ms),
            Cancelled => self.finished_at = Some(now_ms),
            _ => {}
        }
        Ok(true)
    }
}

impl CampaignState {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Draft => "draft",
            CampaignState::Scheduled => "scheduled",
            CampaignState::Sending => "sending",
            CampaignState::Paused => "paused",
            CampaignState::Completed => "completed",
            CampaignState::Cancelled => "cancelled",
        }
    }
}

/// Unix milliseconds of an RFC 3339 timestamp.
pub fn parse_rfc3339_ms(text: &str) -> Result<i64, String> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("{text:?} is not an RFC 3339 time, e.g. 2026-12-01T18:30:00Z"))?;
    Ok((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// One line of an uploaded audience, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudienceLine {
    User(String),
    /// Nothing to read (an empty line, or a CSV header).
    Skip,
    Malformed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> CampaignRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_scheduled_campaign_and_a_draft() {
        let now = 1_800_000_000_000;
        let scheduled = request(
            r#"{"name":"Superb Owl","message":{"title":"Now!"},"send_at":"2027-02-07T23:30:00Z"}"#,
        );
        scheduled.validate(&Limits::default(), now).unwrap();
        let c = scheduled.into_campaign("c1".into(), now);
        assert_eq!(c.state, CampaignState::Scheduled);
        assert_eq!(
            c.send_at,
            Some(parse_rfc3339_ms("2027-02-07T23:30:00Z").unwrap())
        );
        assert_eq!(c.audience, Audience::List);
        let draft = request(r#"{"name":"d","message":{"title":"t"},"audience":{"topic":"news"}}"#)
            .into_campaign("c2".into(), now);
        assert_eq!(draft.state, CampaignState::Draft);
        assert_eq!(draft.audience, Audience::Topic("news".into()));
        let all: CampaignRequest =
            serde_json::from_str(r#"{"name":"a","message":{"title":"t"},"audience":"all"}"#)
                .unwrap();
        assert_eq!(all.audience, Audience::All);
    }

    #[test]
    fn actions_move_campaigns_once_and_refuse_what_makes_no_sense() {
        use CampaignAction::*;
        let now = 1_800_000_000_000;
        let mut c =
            request(r#"{"name":"n","message":{"title":"t"}}"#).into_campaign("c".into(), now);
        assert!(c.apply(Pause, now).is_err(), "a draft cannot pause");
        assert_eq!(c.apply(Start, now + 1), Ok(true));
        assert_eq!(
            (c.state, c.started_at),
            (CampaignState::Sending, Some(now + 1))
        );
        assert_eq!(
            c.apply(Start, now + 2),
            Ok(false),
            "start twice, start once"
        );
        assert_eq!(c.apply(Pause, now + 3), Ok(true));
        assert!(c.apply(Start, now + 4).is_err());
        assert_eq!(c.apply(Resume, now + 5), Ok(true));
        assert_eq!(
            (c.state, c.started_at),
            (CampaignState::Sending, Some(now + 1))
        );
        assert_eq!(c.apply(Cancel, now + 6), Ok(true));
        assert_eq!(c.apply(Cancel, now + 7), Ok(false));
        assert!(c.apply(Resume, now + 8).is_err());

        let mut later =
            request(r#"{"name":"n","message":{"title":"t"},"send_at":"2027-06-01T00:00:00Z"}"#)
                .into_campaign("d".into(), now);
        assert_eq!(later.apply(Pause, now), Ok(true));
        assert_eq!(later.apply(Resume, now), Ok(true));
        assert_eq!(
            later.state,
            CampaignState::Scheduled,
            "still waits for its time"
        );
    }

    #[test]
    fn every_broken_rule_is_reported_with_its_field() {
        let now = parse_rfc3339_ms("2026-11-29T12:00:00Z").unwrap();
        let bad = request(
            r#"{"name":" ","message":{"title":"","ttl_seconds":0},"audience":{"topic":"a b"},
                "send_at":"2020-01-01T00:00:00Z","rate_per_second":0}"#,
        );
        let err = bad.validate(&Limits::default(), now).unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "audience.topic",
                "send_at",
                "rate_per_second",
                "message.title",
                "message.ttl_seconds"
            ]
        );
        let garbled = request(r#"{"name":"n","message":{"title":"t"},"send_at":"tomorrow"}"#);
        assert!(garbled.validate(&Limits::default(), now).is_err());
    }
}
