//! Row types the store returns and takes. Times are Unix milliseconds; JSON columns are parsed
//! into `serde_json` values. These derive `Serialize` so management commands can print them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub is_default: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Editor,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "editor" => Some(Role::Editor),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub id: String,
    pub email: String,
    #[serde(skip)]
    pub password_hash: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Membership {
    pub organization_id: String,
    pub user_id: String,
    pub email: String,
    pub role: Role,
}

/// Per-bot settings (the `settings` JSON column). Unknown keys are kept in `extra`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BotSettings {
    /// Web chat may be started without an embed key (OCS keyless chat start).
    #[serde(default)]
    pub web_chat_public: bool,
    /// Data TTL in days for conversations, messages and memories (none = keep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_days: Option<u32>,
    /// Do not store the transcript (usage counters are still kept).
    #[serde(default)]
    pub low_data_mode: bool,
    /// Step limit per turn (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_limit: Option<u32>,
    /// Wall-clock deadline of a turn in milliseconds (default: the server's, 5 s; capped by
    /// the server's maximum, 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_timeout_ms: Option<u32>,
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bot {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub description: Option<String>,
    /// Flow id of the default flow.
    pub default_flow_id: Option<String>,
    pub env: Map<String, Json>,
    pub settings: BotSettings,
    pub custom_components: Map<String, Json>,
    /// The build serving traffic; `None` = the working flows serve.
    pub live_version_id: Option<String>,
    /// Incremented on every change of the bot or its flows.
    pub rev: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Flow {
    pub id: String,
    pub organization_id: String,
    pub bot_id: String,
    pub name: String,
    pub description: Option<String>,
    pub content: String,
    pub commands: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A flow to create. `commands` are the user's; the automatic `/<name>` is added by the store.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NewFlow {
    pub name: String,
    pub content: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub commands: Vec<String>,
}

/// A partial flow update: `None` = unchanged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowPatch {
    pub name: Option<String>,
    pub content: Option<String>,
    pub description: Option<Option<String>>,
    pub commands: Option<Vec<String>>,
}

/// A bot to create.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewBot {
    pub name: String,
    pub description: Option<String>,
    pub flows: Vec<NewFlow>,
    /// Name of the default flow; defaults to the first flow.
    pub default_flow: Option<String>,
    pub env: Map<String, Json>,
    pub settings: BotSettings,
    pub custom_components: Map<String, Json>,
}

/// A partial bot update: `None` = unchanged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BotPatch {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    /// Flow id or name (case-insensitive) of an existing flow.
    pub default_flow: Option<String>,
    /// Replaces the whole env.
    pub env: Option<Map<String, Json>>,
    pub settings: Option<BotSettings>,
    pub custom_components: Option<Map<String, Json>>,
    /// `airules` (studio-api §2.4): `(flow name, user commands)` pairs. When set, every flow
    /// of the bot gets the commands of the rules naming it (case-insensitive) and flows not
    /// named keep only their automatic command; a rule naming an unknown flow is a
    /// `NotFound` and nothing changes. Applied in the same transaction as the rest.
    pub flow_commands: Option<Vec<(String, Vec<String>)>>,
}

/// A flow as frozen in a build.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotFlow {
    pub id: String,
    pub name: String,
    pub commands: Vec<String>,
    pub content: String,
}

/// The immutable content of a build.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub name: String,
    /// Flow id.
    pub default_flow: String,
    pub flows: Vec<SnapshotFlow>,
    #[serde(default)]
    pub custom_components: Map<String, Json>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BotVersion {
    pub id: String,
    pub organization_id: String,
    pub bot_id: String,
    pub seq: i64,
    pub snapshot: Snapshot,
    pub engine_version: String,
    pub created_at: i64,
}

/// Channel kind of the Studio API channel.
pub const KIND_API: &str = "api";

/// Channel kind of a bot's admin "try it" channel.
pub const ADMIN_CHANNEL_KIND: &str = "admin";

/// Whether channels of `kind` are served by botyard itself (Studio API, the OCS engine
/// channel, the admin "try it" channel) rather than by a connector plugin of that name.
pub fn is_builtin_kind(kind: &str) -> bool {
    matches!(kind, KIND_API | OCS_CHANNEL_KIND | ADMIN_CHANNEL_KIND)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Channel {
    pub id: String,
    pub organization_id: String,
    pub bot_id: String,
    pub kind: String,
    pub name: String,
    pub api_key: String,
    pub webhook_url: Option<String>,
    pub token: Option<String>,
    pub plugin_id: Option<String>,
    pub config: Json,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewChannel {
    /// `api` for a Studio API channel.
    pub kind: String,
    pub name: String,
    pub webhook_url: Option<String>,
    pub config: Json,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelPatch {
    pub name: Option<String>,
    pub webhook_url: Option<Option<String>>,
    pub config: Option<Json>,
    pub status: Option<String>,
}

/// A channel with its decrypted HMAC secret: what request authentication needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelAuth {
    pub channel: Channel,
    pub secret: String,
}

/// A key pair shown once, at creation or rotation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Credentials {
    pub channel_id: String,
    pub api_key: String,
    pub api_secret: String,
}

/// An OCS API key (the key itself is never stored).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiKey {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    /// The first characters of the key, for recognizing it in lists.
    pub prefix: String,
    pub read_only: bool,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub created_at: i64,
}

/// Kind of a bot's engine channel for Open Chat Studio sessions: its clients' user ids are
/// OCS session ids, and their participant is the session's (see `conversations`).
pub const OCS_CHANNEL_KIND: &str = "ocs";

/// The identity of one end user on one channel of one bot (spec §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClientKey {
    pub organization_id: String,
    pub bot_id: String,
    pub channel_id: String,
    pub user_id: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConversationStatus {
    Open,
    Closed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Conversation {
    pub id: String,
    pub organization_id: String,
    pub bot_id: String,
    pub channel_id: String,
    pub user_id: String,
    pub participant_id: Option<String>,
    /// Flow name.
    pub flow: String,
    pub step: String,
    pub status: ConversationStatus,
    /// The interpreter's saved hold (`csml::Hold` as JSON).
    pub hold: Option<Json>,
    /// The previous position (`csml::Position` as JSON).
    pub previous: Option<Json>,
    pub metadata: Json,
    pub version_id: Option<String>,
    pub tags: Json,
    pub state: Json,
    pub last_interaction_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub ended_at: Option<i64>,
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Direction {
    #[serde(rename = "SEND")]
    Send,
    #[serde(rename = "RECEIVE")]
    Receive,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Send => "SEND",
            Direction::Receive => "RECEIVE",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredMessage {
    pub id: i64,
    pub conversation_id: String,
    pub turn_id: String,
    pub direction: Direction,
    pub flow: String,
    pub step: String,
    pub content_type: String,
    /// `{content_type, content}`.
    pub payload: Json,
    pub message_order: i64,
    pub interaction_order: i64,
    pub created_at: i64,
}

/// Filter of [`crate::store::Store::list_conversations`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConversationFilter {
    pub bot_id: Option<String>,
    pub channel_id: Option<String>,
    pub user_id: Option<String>,
    pub status: Option<ConversationStatus>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Conversations created before this id (paging; ids are time-ordered).
    pub before_id: Option<String>,
    pub limit: u32,
}

/// One window of `GET /bot/usage`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsageWindow {
    pub messages: i64,
    pub clients: i64,
}

/// `GET /bot/usage` (studio-api §2.9).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsageReport {
    pub currentmonth: UsageWindow,
    pub last30d: UsageWindow,
    pub lastmonth: UsageWindow,
}

/// Messages and active clients of one UTC day (admin UI charts).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsageDay {
    /// Days since the Unix epoch.
    pub day: i64,
    pub messages: i64,
    pub clients: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueuedBroadcast {
    pub id: String,
    pub organization_id: String,
    pub bot_id: String,
    pub channel_id: String,
    /// The normalised broadcast request (see `crate::engine::BroadcastRequest`).
    pub request: Json,
    pub attempts: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Participant {
    pub id: String,
    pub organization_id: String,
    pub platform: String,
    pub identifier: String,
    pub name: Option<String>,
    pub data: Json,
    pub created_at: i64,
    pub updated_at: i64,
}
