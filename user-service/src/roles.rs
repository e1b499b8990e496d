//! Who is an administrator: the accounts whose email is in `ADMIN_EMAILS`.
//! Their tokens carry the `admin` role (see [`shippy_auth::ADMIN_ROLE`]).

use std::{collections::HashSet, sync::Arc};

use shippy_auth::ADMIN_ROLE;

use crate::domain::{Email, InvalidInput};

/// The administrators' emails.
#[derive(Debug, Clone, Default)]
pub struct Admins {
    emails: Arc<HashSet<Email>>,
}

impl Admins {
    /// The emails in `listed` (blank entries are skipped; a malformed one
    /// is an error naming it).
    pub fn parse(listed: &[String]) -> Result<Self, InvalidInput> {
        let emails = listed
            .iter()
            .filter(|email| !email.trim().is_empty())
            .map(|email| {
                Email::parse(email)
                    .map_err(|error| InvalidInput(format!("ADMIN_EMAILS: {}", error.0)))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            emails: Arc::new(emails),
        })
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.emails.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.emails.is_empty()
    }

    /// The roles a token for `email` carries.
    pub fn roles_of(&self, email: &Email) -> &'static [&'static str] {
        if self.emails.contains(email) {
            &[ADMIN_ROLE]
        } else {
            &[]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_emails_are_admins_whatever_their_case() {
        let admins = Admins::parse(&[" Boss@Example.com".into(), String::new()]).unwrap();
        assert_eq!(admins.len(), 1);
        let boss = Email::parse("boss@example.com").unwrap();
        let other = Email::parse("other@example.com").unwrap();
        assert_eq!(admins.roles_of(&boss), &[ADMIN_ROLE]);
        assert!(admins.roles_of(&other).is_empty());
        assert!(Admins::parse(&["not an email".into()]).is_err());
    }
}
