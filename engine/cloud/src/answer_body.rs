//! Reading an HTTP answer's body with a ceiling.
//!
//! A cloud's answer is normally a few KiB, a console log a few MiB at most. A proxy gone wrong,
//! or a console that a runaway guest floods, must not grow the driver without bound: past
//! [`ANSWER_LIMIT`] the answer is refused with an error that says so.

use reqwest::Response;

/// Far above any answer we ask for: lists are paged and console logs are a few MiB.
pub const ANSWER_LIMIT: usize = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("the answer was cut short: {0}")]
    Cut(String),
    #[error("the answer is larger than {} MiB, which no request of ours asks for", .0 / (1024 * 1024))]
    TooLarge(usize),
}

/// The body as text (lossy UTF-8), at most `limit` bytes.
pub async fn bounded_text(response: Response, limit: usize) -> Result<String, AnswerError> {
    let mut response = response;
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(AnswerError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| AnswerError::Cut(super::transport::describe_reqwest_error(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(AnswerError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}
