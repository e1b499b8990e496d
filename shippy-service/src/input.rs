//! Input from outside, checked at the handler edge: the one error a refused
//! field becomes ([`InvalidInput`], `INVALID_ARGUMENT`), the rules a text
//! field is checked by ([`TextRule`]: trimmed or not, empty or not, how
//! long, which characters), and [`text_newtype!`](crate::text_newtype) for
//! the newtypes that hold such text.

use crate::{ApiError, text};

/// Why a request's field is not acceptable; the message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

impl From<InvalidInput> for ApiError {
    fn from(error: InvalidInput) -> Self {
        ApiError::InvalidArgument(error.0)
    }
}

impl From<text::ControlCharacters> for InvalidInput {
    fn from(error: text::ControlCharacters) -> Self {
        Self(error.to_string())
    }
}

/// Which characters a text field may hold, and how a refusal says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// One line of text: a control character is refused with
    /// [`text::check_line`]'s message, which quotes an excerpt.
    Line,
    /// Printable text: a control character is refused with the length
    /// message ("… at most N bytes of printable text").
    Printable,
    /// Printable text without spaces (an id a caller chose).
    Token,
    /// Any characters (a password): only emptiness and length are checked.
    Any,
}

/// What an empty value is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Empty {
    /// Nothing: empty is a value like any other.
    Allowed,
    /// "`field` must not be empty".
    Refused,
    /// "`field` is required: `why`" (what the field is for).
    Required(&'static str),
}

/// How one text field from outside is checked, in this order: trimmed (if
/// `trim`), control characters ([`Form::Line`]), emptiness, then length and
/// the other characters. Written as a table of cases:
/// `TextRule { trim: false, ..TextRule::line("owner_id", 200) }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRule {
    /// The field as messages name it: `name`, `vessel id`, `owner_id`.
    pub field: &'static str,
    /// The most bytes accepted (after trimming, if trimmed).
    pub max_bytes: usize,
    /// Whether surrounding whitespace is cut off before anything is checked.
    pub trim: bool,
    /// What an empty value is told.
    pub empty: Empty,
    /// Which characters it may hold.
    pub form: Form,
}

impl TextRule {
    /// A one-line field: trimmed, not empty, at most `max_bytes`.
    pub const fn line(field: &'static str, max_bytes: usize) -> Self {
        Self {
            field,
            max_bytes,
            trim: true,
            empty: Empty::Refused,
            form: Form::Line,
        }
    }

    /// `value` if it keeps the rule (trimmed, if the rule trims); otherwise
    /// why not, naming the field.
    pub fn check<'a>(&self, value: &'a str) -> Result<&'a str, InvalidInput> {
        let field = self.field;
        let value = if self.trim { value.trim() } else { value };
        if self.form == Form::Line {
            text::check_line(field, value)?;
        }
        if value.is_empty() {
            match self.empty {
                Empty::Allowed => {}
                Empty::Refused => {
                    return Err(InvalidInput(format!("{field} must not be empty")));
                }
                Empty::Required(why) => {
                    return Err(InvalidInput(format!("{field} is required: {why}")));
                }
            }
        }
        let (unfit, of) = match self.form {
            Form::Line | Form::Any => (false, ""),
            Form::Printable => (value.chars().any(char::is_control), " of printable text"),
            Form::Token => (
                value.chars().any(|c| c.is_control() || c.is_whitespace()),
                " of printable text without spaces",
            ),
        };
        if value.len() > self.max_bytes || unfit {
            return Err(InvalidInput(format!(
                "{field} must be at most {} bytes{of}",
                self.max_bytes
            )));
        }
        Ok(value)
    }
}

/// A newtype over a `String` that only [`TextRule::check`] makes: the
/// struct (with the attributes given, derives and docs), `parse`, `as_str`
/// and `Display`.
///
/// ```
/// use shippy_service::input::TextRule;
///
/// shippy_service::text_newtype! {
///     /// A vessel's display name: non-empty.
///     #[derive(Debug, Clone, PartialEq, Eq)]
///     pub struct VesselName(TextRule::line("vessel name", 200));
/// }
///
/// assert_eq!(VesselName::parse(" Kestrel ").unwrap().as_str(), "Kestrel");
/// assert!(VesselName::parse("  ").is_err());
/// ```
#[macro_export]
macro_rules! text_newtype {
    ($(#[$attribute:meta])* $vis:vis struct $name:ident($rule:expr);) => {
        $(#[$attribute])*
        $vis struct $name(String);

        impl $name {
            /// Checks a value given by a caller or read from the store.
            pub fn parse(value: &str) -> Result<Self, $crate::input::InvalidInput> {
                $rule.check(value).map(|value| Self(value.to_owned()))
            }

            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_says_what_is_wrong_in_its_own_words() {
        let line = TextRule::line("name", 5);
        let untrimmed = TextRule {
            trim: false,
            ..line
        };
        let optional = TextRule {
            empty: Empty::Allowed,
            ..line
        };
        let printable = TextRule {
            form: Form::Printable,
            ..TextRule::line("vessel id", 3)
        };
        let token = TextRule {
            trim: false,
            form: Form::Token,
            ..TextRule::line("reservation_id", 9)
        };
        let required = TextRule {
            empty: Empty::Required("the account"),
            ..TextRule::line("owner_id", 9)
        };
        let any = TextRule {
            trim: false,
            form: Form::Any,
            ..TextRule::line("password", 4)
        };
        let control = |got: &str| {
            format!(
                "name must not contain control characters such as NUL or line breaks (got {got})"
            )
        };
        let cases = [
            (line, "  Ewan ", Ok("Ewan")),
            (line, "   ", Err("name must not be empty".to_owned())),
            (
                line,
                "Ewan V",
                Err("name must be at most 5 bytes".to_owned()),
            ),
            (line, "a\nb", Err(control("\"a\\nb\""))),
            (optional, "", Ok("")),
            (untrimmed, " a\t", Err(control("\" a\\t\""))),
            (
                printable,
                "a\u{0}",
                Err("vessel id must be at most 3 bytes of printable text".to_owned()),
            ),
            (
                printable,
                "abcd",
                Err("vessel id must be at most 3 bytes of printable text".to_owned()),
            ),
            (
                token,
                "a b",
                Err(
                    "reservation_id must be at most 9 bytes of printable text without spaces"
                        .to_owned(),
                ),
            ),
            (
                token,
                " ab",
                Err(
                    "reservation_id must be at most 9 bytes of printable text without spaces"
                        .to_owned(),
                ),
            ),
            (
                required,
                "",
                Err("owner_id is required: the account".to_owned()),
            ),
            (any, " \n\0x", Ok(" \n\0x")),
            (any, "", Err("password must not be empty".to_owned())),
            (
                any,
                "abcde",
                Err("password must be at most 4 bytes".to_owned()),
            ),
        ];
        for (rule, value, expected) in cases {
            let checked = rule.check(value).map_err(|error| error.0);
            assert_eq!(checked, expected, "{rule:?} {value:?}");
        }
    }

    crate::text_newtype! {
        /// A test newtype.
        #[derive(Debug, Clone, PartialEq, Eq)]
        struct Name(TextRule::line("name", 10));
    }

    #[test]
    fn a_text_newtype_holds_the_checked_value() {
        let name = Name::parse(" Ewan ").unwrap();
        assert_eq!((name.as_str(), name.to_string().as_str()), ("Ewan", "Ewan"));
        let refused = Name::parse("").unwrap_err();
        assert_eq!(refused.0, "name must not be empty");
        let status = tonic::Status::from(ApiError::from(refused));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "name must not be empty");
    }
}
