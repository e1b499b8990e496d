//! Page tokens for list RPCs: opaque to callers, a position in a
//! (creation time, id) order to the service. [`Cursor`] is the one type for
//! that position, in the API and in the stores alike; its id is whatever the
//! list's ids are (`String` for consignments, `Uuid` for users).

use std::{fmt::Display, str::FromStr};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};

use crate::ApiError;

/// A position in a list ordered by creation time, then id: after the item
/// with these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor<Id = String> {
    /// The last item's creation time (microsecond precision).
    pub created_at: DateTime<Utc>,
    /// The last item's id.
    pub id: Id,
}

/// The longest page token accepted (ours are well under 100 bytes).
pub const MAX_TOKEN_LEN: usize = 512;

/// How many items a page holds: `requested`, or `default` for 0, at most `max`.
pub fn page_size(requested: u32, default: u32, max: u32) -> u32 {
    match requested {
        0 => default,
        size => size.min(max),
    }
}

/// The token that resumes after `cursor`.
pub fn encode<Id: Display>(cursor: &Cursor<Id>) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{}.{}",
        cursor.created_at.timestamp_micros(),
        cursor.id
    ))
}

/// The cursor in a caller's token; `None` (the first page) for an empty one.
/// A token this service did not give out (its id not an `Id`, too) is
/// `INVALID_ARGUMENT`.
pub fn decode<Id: FromStr>(token: &str) -> Result<Option<Cursor<Id>>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(ApiError::InvalidArgument(format!(
            "page_token is longer than any this service gives out ({MAX_TOKEN_LEN} bytes); \
             start again with an empty one"
        )));
    }
    let invalid = || {
        ApiError::InvalidArgument(
            "page_token is not one this service gave out; start again with an empty one".into(),
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (micros, id) = text.split_once('.').ok_or_else(invalid)?;
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    if id.is_empty() || id.chars().any(char::is_control) {
        return Err(invalid());
    }
    Ok(Some(Cursor {
        created_at: DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?,
        id: id.parse().map_err(|_| invalid())?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let cursor: Cursor = Cursor {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: "0a988d8d-13ac-47d7-b204-7716afe3ffe6".into(),
        };
        assert_eq!(decode(&encode(&cursor)).unwrap(), Some(cursor.clone()));
        assert_eq!(decode::<String>("").unwrap(), None);
        let nul_id = URL_SAFE_NO_PAD.encode("123.a\0b");
        let huge = "A".repeat(10_000);
        for bad in ["!!!", "Zm9v", "MTIzLg", "eC55", &nul_id, &huge] {
            assert!(decode::<String>(bad).is_err(), "{bad}");
        }
        // Typed ids: the same token, read as a number, or refused as one.
        let numbered = Cursor {
            created_at: cursor.created_at,
            id: 42_u64,
        };
        assert_eq!(decode(&encode(&numbered)).unwrap(), Some(numbered));
        assert!(decode::<u64>(&encode(&cursor)).is_err());
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(page_size(0, 50, 100), 50);
        assert_eq!(page_size(7, 50, 100), 7);
        assert_eq!(page_size(10_000, 50, 100), 100);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any page token is a cursor or INVALID_ARGUMENT, never a panic.
        #[test]
        fn arbitrary_page_tokens_are_cursors_or_invalid(token in any::<String>(), raw in any::<Vec<u8>>()) {
            let encoded = URL_SAFE_NO_PAD.encode(&raw);
            for token in [token, encoded] {
                match decode::<String>(&token) {
                    Ok(Some(cursor)) => prop_assert!(!cursor.id.chars().any(char::is_control)),
                    Ok(None) => prop_assert!(token.is_empty()),
                    Err(error) => prop_assert!(matches!(error, ApiError::InvalidArgument(_))),
                }
            }
        }

        /// What we give out comes back.
        #[test]
        fn cursors_round_trip(micros in -1_000_000_000_000_000i64..4_000_000_000_000_000, id in "[a-zA-Z0-9-]{1,64}") {
            let cursor = Cursor { created_at: DateTime::from_timestamp_micros(micros).unwrap_or_default(), id };
            prop_assert_eq!(decode(&encode(&cursor)).unwrap(), Some(cursor));
        }
    }
}
