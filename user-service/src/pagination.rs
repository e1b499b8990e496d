//! Page tokens for `GetAll`: opaque to callers, a position in creation order to us.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::DateTime;
use uuid::Uuid;

use crate::{domain::InvalidInput, store::Cursor};

/// Users per page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// The most users per page; larger requests get this many.
pub const MAX_PAGE_SIZE: u32 = 100;

/// The page size to use for a requested `page_size` (0 = default).
pub fn page_size(requested: u32) -> u32 {
    match requested {
        0 => DEFAULT_PAGE_SIZE,
        size => size.min(MAX_PAGE_SIZE),
    }
}

/// The token that resumes after `cursor`.
pub fn encode(cursor: Cursor) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{}.{}",
        cursor.created_at.timestamp_micros(),
        cursor.id
    ))
}

/// The cursor in a caller's token; `None` for the first page.
pub fn decode(token: &str) -> Result<Option<Cursor>, InvalidInput> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        InvalidInput(
            "page_token is not one this service gave out; start again with an empty one".into(),
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (micros, id) = text.split_once('.').ok_or_else(invalid)?;
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    Ok(Some(Cursor {
        created_at: DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?,
        id: Uuid::parse_str(id).map_err(|_| invalid())?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        assert_eq!(decode(&encode(cursor)).unwrap(), Some(cursor));
        assert_eq!(decode("").unwrap(), None);
        for bad in ["!!!", "Zm9v", "MTIzLm5vdC1hLXV1aWQ"] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(page_size(0), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(7), 7);
        assert_eq!(page_size(10_000), MAX_PAGE_SIZE);
    }
}
