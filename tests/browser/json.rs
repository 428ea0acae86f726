//! JSON for the browser driver: serde_json's value type, plus the few helpers the driver
//! and the report test share.

pub use serde_json::Value as Json;

/// Parses JSON text.
pub fn parse(text: &str) -> Result<Json, String> {
    serde_json::from_str(text).map_err(|err| err.to_string())
}

/// `text` as a JSON string literal, which is also a JavaScript one.
pub fn quote(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serializes")
}

/// The elements of a JSON array: an empty slice for anything else.
pub trait Items {
    /// The elements, or none.
    fn items(&self) -> &[Json];
}

impl Items for Json {
    fn items(&self) -> &[Json] {
        self.as_array().map_or(&[], Vec::as_slice)
    }
}
