//! A Kafka error as weir's actors report it to the protocol front end: the wire error code
//! plus the human message that newer response versions carry (`error_message` fields).

use kafka_protocol::error::ResponseError;

/// A Kafka error code with an optional message; `code` is never 0 (success is `Ok`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiError {
    pub code: i16,
    pub message: Option<String>,
}

impl ApiError {
    pub fn new(error: ResponseError) -> Self {
        Self {
            code: error.code(),
            message: None,
        }
    }

    pub fn with_message(error: ResponseError, message: impl Into<String>) -> Self {
        Self {
            code: error.code(),
            message: Some(message.into()),
        }
    }

    pub fn from_code(code: i16, message: Option<String>) -> Self {
        Self { code, message }
    }

    /// The message, or Kafka's default text for the code.
    pub fn message_or_default(&self) -> String {
        match &self.message {
            Some(m) => m.clone(),
            None => ResponseError::try_from_code(self.code)
                .map(|e| e.to_string())
                .unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(m) => write!(f, "error {}: {m}", self.code),
            None => write!(f, "error {}", self.code),
        }
    }
}

impl std::error::Error for ApiError {}

/// The error code of a result, 0 for success.
pub fn code_of<T>(result: &Result<T, ApiError>) -> i16 {
    match result {
        Ok(_) => 0,
        Err(e) => e.code,
    }
}
