//! The OCS family's domain error: what went wrong, in the shapes the contract names
//! (ocs-api §4.1), without any HTTP type. `http::ocs` turns it into a response in one place
//! (`http::ocs::render_error`); services and handlers use it with `?`.

use crate::engine::EngineError;

/// An OCS answer that is not a success. Each variant is one JSON body shape of the contract.
#[derive(Debug, Clone, PartialEq)]
pub enum OcsError {
    /// `{"detail": message}` with `status` (DRF's shape: 404s, 403s, 401s).
    Detail { status: u16, message: String },
    /// `{"error": message}` (and `"code"` when given) with `status`.
    Error {
        status: u16,
        message: String,
        code: Option<&'static str>,
    },
    /// 400 `{field: [message]}`: one invalid field.
    Field { field: String, message: String },
    /// 400 `{"non_field_errors": [message]}`.
    NonField(String),
    /// 400 in the OpenAI error shape `{"error": {"message", "type", "param", "code"}}`.
    OpenAi(String),
    /// 503 `{"error": message}` with `Retry-After`: the organization's share of the workers
    /// stayed full.
    Busy {
        message: String,
        retry_after_secs: u64,
    },
    /// 401 `{"detail": message}` with `WWW-Authenticate: Bearer realm="api"`: no valid
    /// credentials.
    Unauthenticated(String),
    /// 429 `{"detail": "Rate limit exceeded.", "available_in": secs}` with `Retry-After`.
    Throttled { available_in: i64 },
    /// `status` with a nested validation body of the contract (e.g. `{"data": [{"experiment":
    /// [...]}]}`), which no flat variant can say.
    Body {
        status: u16,
        body: serde_json::Value,
    },
    /// 500 `{"detail": "A server error occurred."}`; the cause goes to the log only.
    Internal(String),
}

impl OcsError {
    pub fn detail(status: u16, message: impl Into<String>) -> OcsError {
        OcsError::Detail {
            status,
            message: message.into(),
        }
    }
    pub fn error(status: u16, message: impl Into<String>) -> OcsError {
        OcsError::Error {
            status,
            message: message.into(),
            code: None,
        }
    }
    pub fn field(field: &str, message: impl Into<String>) -> OcsError {
        OcsError::Field {
            field: field.to_string(),
            message: message.into(),
        }
    }
    pub fn error_code(status: u16, message: impl Into<String>, code: &'static str) -> OcsError {
        OcsError::Error {
            status,
            message: message.into(),
            code: Some(code),
        }
    }
    pub fn body(status: u16, body: serde_json::Value) -> OcsError {
        OcsError::Body { status, body }
    }
    /// The chatbot named by the request is not one of the caller's organization.
    pub fn bot_not_found() -> OcsError {
        OcsError::detail(404, "No Experiment matches the given query.")
    }
}

impl From<crate::store::Error> for OcsError {
    fn from(e: crate::store::Error) -> OcsError {
        OcsError::Internal(e.to_string())
    }
}

/// An engine failure in this family's `{"error": ...}` shape: the caller's or the bot's fault
/// (a bot whose flows do not compile is a 409, as on the Studio API) said as such; an
/// organization past its share of the workers is a 503 with `Retry-After`; the rest is ours.
impl From<EngineError> for OcsError {
    fn from(e: EngineError) -> OcsError {
        match e {
            EngineError::Busy {
                message,
                retry_after_secs,
            } => OcsError::Busy {
                message,
                retry_after_secs,
            },
            e if (400..500).contains(&e.status()) => OcsError::error(e.status(), e.message()),
            e => OcsError::Internal(e.to_string()),
        }
    }
}
