//! Campaigns (API key): create one, stream its audience in, start, pause, resume or cancel it,
//! and watch it go. The campaign worker ([`crate::workers::campaigns`]) does the sending.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use futures_util::StreamExt;
use herald_core::audience::{AudienceFormat, AudienceReader};
use herald_core::campaign::{
    AudienceLine, CampaignAction, CampaignMessage, CampaignRequest, MAX_MALFORMED_KEPT,
    MalformedLine,
};
use herald_core::{Audience, Campaign, CampaignState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{JsonBody, Publisher, QueryParams};
use super::publish::ChannelReport;
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;

/// Users appended per store call while an audience streams in.
const UPLOAD_BATCH: usize = 10_000;
/// Longest audience line; a longer one is reported as malformed and skipped.
const MAX_LINE_BYTES: usize = 1024;
/// Attempts at a compare-and-set change before giving up (only under heavy contention).
const CHANGE_ATTEMPTS: usize = 20;

/// A campaign and how it is going.
#[derive(Serialize, ToSchema)]
pub struct CampaignView {
    pub id: String,
    pub name: String,
    pub state: CampaignState,
    pub audience: Audience,
    pub message: CampaignMessage,
    pub dry_run: bool,
    /// RFC 3339, UTC.
    pub send_at: Option<String>,
    pub rate_per_second: Option<u32>,
    /// The notification every recipient gets, once sending began.
    pub notification: Option<String>,
    /// Distinct users listed (list audiences).
    pub recipients: u64,
    /// The uploaded list was deleted after the campaign ended
    /// (`workers.campaign_recipients_keep_seconds`); `recipients` keeps its count.
    pub recipients_dropped: bool,
    /// Recipients handled so far.
    pub done: u64,
    /// Recipients whose push sends were resolved before `send_at` (preferences judged, devices
    /// looked up), so that at `send_at` they are only sent.
    pub push_staged: u64,
    /// The push stages were deleted, within a minute of the campaign's end.
    pub stages_dropped: bool,
    /// Audience lines that were not user ids, in all uploads, and the first of them.
    pub malformed: u64,
    pub malformed_lines: Vec<MalformedLine>,
    /// Audience entries listed more than once (sent once).
    pub duplicates: u64,
    /// Per channel: sends and the policy's decisions (`muted`, `capped`, ... count users
    /// filtered by policy).
    pub channels: BTreeMap<String, ChannelReport>,
    /// Recipients handled per second lately (between two reads of this campaign).
    pub recipients_per_second: f64,
    /// Push and webhook sends finished per second lately.
    pub sends_per_second: f64,
    /// Seconds until every recipient is handled at the current rate.
    pub eta_seconds: Option<f64>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CampaignList {
    /// Newest first.
    pub campaigns: Vec<CampaignView>,
    /// Pass as `before` for the next page; absent on the last.
    pub next: Option<String>,
}

#[derive(Deserialize, IntoParams)]
pub struct ListQuery {
    /// Campaigns created before this one (an id from `next`).
    pub before: Option<String>,
    /// 1 to 100 (default 20).
    pub limit: Option<usize>,
}

#[derive(Deserialize, IntoParams)]
pub struct UploadQuery {
    /// CSV: the id column's name (default: `user_id`, `user` or `id`).
    pub column: Option<String>,
}

/// What one audience upload did.
#[derive(Serialize, ToSchema)]
pub struct UploadReport {
    /// Users appended to the list.
    pub added: u64,
    /// Users already listed (before, or earlier in this upload).
    pub duplicates: u64,
    /// Lines that were not user ids, and the first of them with their line numbers.
    pub malformed: u64,
    pub malformed_lines: Vec<MalformedLine>,
    /// Distinct users listed now.
    pub recipients: u64,
}

/// The last sample of each campaign's progress, for its current rate.
struct Sample {
    at: Instant,
    done: u64,
    sent: u64,
    recipients_per_second: f64,
    sends_per_second: f64,
}

fn samples() -> &'static Mutex<HashMap<String, Sample>> {
    static SAMPLES: OnceLock<Mutex<HashMap<String, Sample>>> = OnceLock::new();
    SAMPLES.get_or_init(Default::default)
}

async fn view(state: &AppState, c: Campaign) -> ApiResult<CampaignView> {
    let recipients = match c.audience {
        Audience::List => state.store.recipient_count(&c.id).await?,
        _ => c.done,
    };
    let report = match &c.notification {
        Some(id) => state.store.delivery_report(id).await?,
        None => Default::default(),
    };
    let finished: u64 = report.values().map(|r| r.queued - r.pending()).sum();
    let (recipients_per_second, sends_per_second) = rates(&c, finished);
    let remaining = recipients.saturating_sub(c.done);
    let eta_seconds = match (c.state, recipients_per_second) {
        (CampaignState::Sending, rate) if rate > 0.0 => Some(remaining as f64 / rate),
        _ => None,
    };
    let time = herald_core::time::rfc3339_ms;
    Ok(CampaignView {
        channels: report
            .iter()
            .map(|(channel, counts)| (channel.clone(), ChannelReport::from(counts)))
            .collect(),
        recipients,
        recipients_per_second,
        sends_per_second,
        eta_seconds,
        send_at: c.send_at.map(time),
        created_at: time(c.created_at),
        started_at: c.started_at.map(time),
        finished_at: c.finished_at.map(time),
        recipients_dropped: c.recipients_dropped,
        id: c.id,
        name: c.name,
        state: c.state,
        audience: c.audience,
        message: c.message,
        dry_run: c.dry_run,
        rate_per_second: c.rate_per_second,
        notification: c.notification,
        done: c.done,
        push_staged: c.push_staged,
        stages_dropped: c.stages_dropped,
        malformed: c.malformed,
        malformed_lines: c.malformed_lines,
        duplicates: c.duplicates,
    })
}

/// Rates since the previous read at least half a second ago (else that read's rates).
fn rates(c: &Campaign, sent: u64) -> (f64, f64) {
    let mut samples = samples().lock().expect("samples lock");
    if c.state.is_final() {
        // Nothing moves any more: forget it, so the samples stay as many as the live campaigns.
        samples.remove(&c.id);
        return (0.0, 0.0);
    }
    let now = Instant::now();
    let sample = samples.entry(c.id.clone()).or_insert(Sample {
        at: now,
        done: c.done,
        sent,
        recipients_per_second: 0.0,
        sends_per_second: 0.0,
    });
    let elapsed = now.duration_since(sample.at).as_secs_f64();
    if elapsed >= 0.5 {
        sample.recipients_per_second = c.done.saturating_sub(sample.done) as f64 / elapsed;
        sample.sends_per_second = sent.saturating_sub(sample.sent) as f64 / elapsed;
        sample.at = now;
        sample.done = c.done;
        sample.sent = sent;
    }
    if c.state != CampaignState::Sending {
        return (0.0, 0.0);
    }
    (sample.recipients_per_second, sample.sends_per_second)
}

async fn load(state: &AppState, id: &str) -> ApiResult<Campaign> {
    state
        .store
        .campaign(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no campaign with id {id:?}")))
}

fn conflict(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::CONFLICT, "campaign-state", detail)
}

/// Applies `change` by compare-and-set, reloading and retrying when another writer (a node's
/// campaign worker, a second request) changed the campaign first.
pub async fn change(
    state: &AppState,
    id: &str,
    change: impl Fn(&mut Campaign) -> Result<bool, Problem>,
) -> ApiResult<Campaign> {
    for _ in 0..CHANGE_ATTEMPTS {
        let mut c = load(state, id).await?;
        if !change(&mut c)? {
            return Ok(c);
        }
        if state.store.update_campaign(&c).await? {
            c.version += 1;
            state.campaigns_wake.notify_waiters();
            return Ok(c);
        }
    }
    Err(Problem::unavailable(
        "the campaign is changing too often; try again",
    ))
}

/// Create a campaign.
///
/// With `send_at` it starts by itself then; without, it waits for `start`. A `list` audience is
/// uploaded with `PUT /v1/campaigns/{id}/recipients` (any number of times, to append).
#[utoipa::path(
    post, path = "/v1/campaigns", tag = "campaigns", request_body = CampaignRequest,
    responses((status = 201, body = CampaignView), (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    _publisher: Publisher,
    JsonBody(request): JsonBody<CampaignRequest>,
) -> ApiResult<(StatusCode, Json<CampaignView>)> {
    let now = herald_core::time::now_ms();
    request.validate(&state.config.limits, now)?;
    let campaign = request.into_campaign(state.next_id(), now);
    state.store.create_campaign(&campaign).await?;
    state.campaigns_wake.notify_waiters();
    Ok((StatusCode::CREATED, Json(view(&state, campaign).await?)))
}

/// Campaigns, newest first.
#[utoipa::path(
    get, path = "/v1/campaigns", tag = "campaigns", params(ListQuery),
    responses((status = 200, body = CampaignList)),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    _publisher: Publisher,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Json<CampaignList>> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Problem::bad_request("limit must be between 1 and 100"));
    }
    let found = state.store.campaigns(q.before.as_deref(), limit).await?;
    let next = (found.len() == limit)
        .then(|| found.last().map(|c| c.id.clone()))
        .flatten();
    let mut campaigns = Vec::with_capacity(found.len());
    for c in found {
        campaigns.push(view(&state, c).await?);
    }
    Ok(Json(CampaignList { campaigns, next }))
}

/// One campaign: state, recipients, per channel sent / failed / pruned / pending and the
/// policy's decisions, the current rate and an ETA.
#[utoipa::path(
    get, path = "/v1/campaigns/{id}", tag = "campaigns", params(("id" = String, Path)),
    responses((status = 200, body = CampaignView), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(id): Path<String>,
) -> ApiResult<Json<CampaignView>> {
    let c = load(&state, &id).await?;
    Ok(Json(view(&state, c).await?))
}

/// Stream in (part of) the audience: one user id a line (`text/plain`), CSV with a header
/// naming the id column (`text/csv`, `?column=`), or NDJSON (`application/x-ndjson`).
///
/// Read in constant memory and appended in batches; each user is listed once, however often
/// uploaded, so sending the same file again (after a broken connection, say) adds only what
/// was missing. Malformed lines are counted and reported with their line numbers and do not
/// stop the upload. An upload over `limits.max_upload_bytes` stops there with 413 (what came
/// before it stays listed).
#[utoipa::path(
    put, path = "/v1/campaigns/{id}/recipients", tag = "campaigns",
    params(("id" = String, Path), UploadQuery),
    request_body(content = String, content_type = "text/plain"),
    responses(
        (status = 200, body = UploadReport),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn upload(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<UploadReport>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = AudienceFormat::from_content_type(content_type).ok_or_else(|| {
        Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send text/plain (one user id a line), text/csv or application/x-ndjson",
        )
    })?;
    let c = load(&state, &id).await?;
    if c.audience != Audience::List {
        return Err(conflict("this campaign's audience is not an uploaded list"));
    }
    if c.state.is_final() {
        return Err(conflict(format!("the campaign is {}", c.state.as_str())));
    }
    let mut upload = Upload {
        reader: AudienceReader::new(format, q.column),
        line: 0,
        batch: Vec::with_capacity(UPLOAD_BATCH),
        report: UploadReport {
            added: 0,
            duplicates: 0,
            malformed: 0,
            malformed_lines: Vec::new(),
            recipients: 0,
        },
    };
    let limit = state.config.limits.max_upload_bytes;
    let mut received: u64 = 0;
    let mut pending: Vec<u8> = Vec::new();
    let mut too_long = false;
    let mut stream = body.into_data_stream();
    let mut outcome = Ok(());
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                outcome = Err(Problem::bad_request(format!("the upload broke off: {e}")));
                break;
            }
        };
        received += chunk.len() as u64;
        if received > limit {
            outcome = Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                format!(
                    "the upload is larger than limits.max_upload_bytes ({limit}); \
                     what came before the limit is listed"
                ),
            ));
            break;
        }
        let mut rest = &chunk[..];
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            if too_long {
                upload.too_long();
                too_long = false;
            } else {
                pending.extend_from_slice(&rest[..end]);
                upload.line(&pending);
            }
            pending.clear();
            rest = &rest[end + 1..];
            if upload.batch.len() >= UPLOAD_BATCH {
                upload.flush(&state, &id).await?;
            }
        }
        if !too_long {
            pending.extend_from_slice(rest);
            if pending.len() > MAX_LINE_BYTES {
                too_long = true;
                pending.clear();
            }
        }
    }
    if outcome.is_ok() {
        // The last line may lack its line break.
        if too_long {
            upload.too_long();
        } else if !pending.is_empty() {
            upload.line(&pending);
        }
    }
    upload.flush(&state, &id).await?;
    let report = upload.report;
    change(&state, &id, |c| {
        c.malformed += report.malformed;
        c.duplicates += report.duplicates;
        let room = MAX_MALFORMED_KEPT.saturating_sub(c.malformed_lines.len());
        c.malformed_lines
            .extend(report.malformed_lines.iter().take(room).cloned());
        Ok(report.malformed + report.duplicates > 0)
    })
    .await?;
    outcome?;
    Ok(Json(UploadReport {
        recipients: state.store.recipient_count(&id).await?,
        ..report
    }))
}

/// One audience upload in progress.
struct Upload {
    reader: AudienceReader,
    line: u64,
    batch: Vec<String>,
    report: UploadReport,
}

impl Upload {
    fn line(&mut self, bytes: &[u8]) {
        self.line += 1;
        match std::str::from_utf8(bytes) {
            Ok(text) => match self.reader.read(text) {
                AudienceLine::User(user) => self.batch.push(user),
                AudienceLine::Skip => {}
                AudienceLine::Malformed(reason) => self.malformed(reason),
            },
            Err(_) => self.malformed("not UTF-8".into()),
        }
    }

    fn too_long(&mut self) {
        self.line += 1;
        self.malformed(format!("longer than {MAX_LINE_BYTES} bytes"));
    }

    fn malformed(&mut self, reason: String) {
        self.report.malformed += 1;
        if self.report.malformed_lines.len() < MAX_MALFORMED_KEPT {
            self.report.malformed_lines.push(MalformedLine {
                line: self.line,
                reason,
            });
        }
    }

    async fn flush(&mut self, state: &AppState, id: &str) -> ApiResult<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let added = state.store.add_recipients(id, &self.batch).await?;
        self.report.added += added.added;
        self.report.duplicates += added.duplicates;
        self.batch.clear();
        state.campaigns_wake.notify_waiters();
        Ok(())
    }
}

async fn act(state: &AppState, id: &str, action: CampaignAction) -> ApiResult<Json<CampaignView>> {
    let now = herald_core::time::now_ms();
    let c = change(state, id, |c| c.apply(action, now).map_err(conflict)).await?;
    Ok(Json(view(state, c).await?))
}

/// Start now (a draft, or a scheduled campaign ahead of its time). Pressing it twice starts once.
#[utoipa::path(
    post, path = "/v1/campaigns/{id}/start", tag = "campaigns", params(("id" = String, Path)),
    responses((status = 200, body = CampaignView), (status = 409, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn start(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(id): Path<String>,
) -> ApiResult<Json<CampaignView>> {
    act(&state, &id, CampaignAction::Start).await
}

/// Pause: the batch in hand finishes, nothing more is sent until `resume`.
#[utoipa::path(
    post, path = "/v1/campaigns/{id}/pause", tag = "campaigns", params(("id" = String, Path)),
    responses((status = 200, body = CampaignView), (status = 409, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn pause(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(id): Path<String>,
) -> ApiResult<Json<CampaignView>> {
    act(&state, &id, CampaignAction::Pause).await
}

/// Resume a paused campaign where it stopped (or wait for `send_at` if it has not come).
#[utoipa::path(
    post, path = "/v1/campaigns/{id}/resume", tag = "campaigns", params(("id" = String, Path)),
    responses((status = 200, body = CampaignView), (status = 409, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn resume(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(id): Path<String>,
) -> ApiResult<Json<CampaignView>> {
    act(&state, &id, CampaignAction::Resume).await
}

/// Cancel for good. Recipients already handled keep what they got; nobody else gets it.
#[utoipa::path(
    post, path = "/v1/campaigns/{id}/cancel", tag = "campaigns", params(("id" = String, Path)),
    responses((status = 200, body = CampaignView), (status = 409, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(id): Path<String>,
) -> ApiResult<Json<CampaignView>> {
    act(&state, &id, CampaignAction::Cancel).await
}
