//! The welcome mail: what it says, and handing it to the SMTP server.

use std::time::Duration;

use lettre::{
    Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
};
use shippy_proto::events::v1::UserCreated;
use shippy_service::{settings::SecretUrl, text};

/// How long one SMTP operation (connect, a command, a reply) may take.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long handing one mail to the SMTP server may take in all. Well under
/// the JetStream ack wait, so a slow server cannot make the event come back
/// (and the mail go out twice) while it is still being sent.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// SMTP answers that are permanent (5xx) but say our own side is wrong (the
/// credentials, TLS), not the recipient: every mail would get them, so they
/// are retried (and reported by the stuck-consumer health) rather than
/// giving every event up: 530 authentication required, 534 mechanism too
/// weak, 535 credentials invalid, 538 encryption required.
const OUR_SETUP_IS_WRONG: [u16; 4] = [530, 534, 535, 538];

/// Why a mail was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The event's address or name cannot make a mail: retrying will not help.
    #[error("cannot address a mail: {0}")]
    Invalid(String),
    /// The SMTP server refused the mail for good (a 5xx answer): retrying
    /// will not help.
    #[error("the SMTP server refused the mail for good")]
    Refused(#[source] lettre::transport::smtp::Error),
    /// The address needs an SMTP extension the server does not offer
    /// (SMTPUTF8 for a non-ASCII address): retrying will not help.
    #[error(
        "the address {0} is not ASCII and the SMTP server does not offer SMTPUTF8, which it needs"
    )]
    Unsupported(String, #[source] lettre::transport::smtp::Error),
    /// The SMTP server did not take it: retrying later may.
    #[error("the SMTP server did not accept the mail")]
    Smtp(#[from] lettre::transport::smtp::Error),
    /// The SMTP server took longer than [`SEND_TIMEOUT`]: retrying later may work.
    #[error("the SMTP server did not accept the mail within {SEND_TIMEOUT:?}")]
    Timeout,
}

impl MailError {
    /// Whether retrying cannot help: the event is to be given up and kept
    /// in the dead-mail stream.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::Invalid(_) | Self::Refused(_) | Self::Unsupported(..)
        )
    }

    /// Sorts what the SMTP transport said about the mail to `to`.
    fn classify(error: lettre::transport::smtp::Error, to: &Address) -> Self {
        let ours = error
            .status()
            .is_some_and(|code| OUR_SETUP_IS_WRONG.contains(&u16::from(code)));
        if error.is_permanent() && !ours {
            return Self::Refused(error);
        }
        // lettre refuses, before saying anything to the server, to send to
        // a non-ASCII address when the server lacks SMTPUTF8 (a client
        // error; the others are about TLS and authentication, which an
        // ASCII address would meet as well).
        let address: &str = to.as_ref();
        if error.is_client() && !address.is_ascii() {
            return Self::Unsupported(text::excerpt(address), error);
        }
        Self::Smtp(error)
    }
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `MAIL_FROM` is not an address.
    #[error("MAIL_FROM `{0}` is not a mail address (expected e.g. Shippy <no-reply@example.com>)")]
    From(String),
    /// `SMTP_URL` is not usable.
    #[error("SMTP_URL is not a valid SMTP URL (expected e.g. smtp://127.0.0.1:2525)")]
    Url(#[source] lettre::transport::smtp::Error),
}

/// Where mails go: an SMTP server, or the log (the development default).
#[derive(Debug, Clone)]
pub enum Mailer {
    /// Sent through SMTP.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// Logged, not sent.
    Log,
}

impl Mailer {
    /// A mailer for `url`, or one that logs when there is none.
    pub fn new(url: Option<&SecretUrl>) -> Result<Self, ConfigError> {
        match url {
            None => {
                tracing::warn!("SMTP_URL is not set: welcome mails are logged, not sent");
                Ok(Self::Log)
            }
            Some(url) => AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                .map(|builder| Self::Smtp(builder.timeout(Some(SMTP_TIMEOUT)).build()))
                .map_err(ConfigError::Url),
        }
    }

    /// Hands `mail` to the SMTP server (returns once it accepted it), or logs it.
    #[tracing::instrument(name = "smtp send", skip_all, fields(otel.kind = "client"), err(Display, level = "debug"))]
    pub async fn send(&self, mail: WelcomeMail) -> Result<(), MailError> {
        match self {
            Self::Smtp(transport) => {
                tokio::time::timeout(SEND_TIMEOUT, transport.send(mail.message))
                    .await
                    .map_err(|_| MailError::Timeout)?
                    .map_err(|error| MailError::classify(error, &mail.to.email))?;
                Ok(())
            }
            Self::Log => {
                tracing::info!(to = %mail.to, subject = %mail.subject, body = %mail.text, "would send mail");
                Ok(())
            }
        }
    }
}

/// A welcome mail, ready to send.
#[derive(Debug, Clone)]
pub struct WelcomeMail {
    to: Mailbox,
    subject: String,
    text: String,
    message: Message,
}

/// The parts of a welcome mail that are configured, not per user.
#[derive(Debug, Clone)]
pub struct Template {
    from: Mailbox,
    subject: String,
}

impl Template {
    /// A template sending from `from` with `subject`.
    pub fn new(from: &str, subject: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            from: from
                .parse()
                .map_err(|_| ConfigError::From(from.to_owned()))?,
            subject: subject.to_owned(),
        })
    }

    /// The welcome mail for the user `event` announces, or
    /// [`MailError::Invalid`] when its address or name cannot make one
    /// (control characters would forge headers). Never panics, whatever
    /// the event holds.
    pub fn welcome(&self, event: &UserCreated) -> Result<WelcomeMail, MailError> {
        let name = event.name.trim();
        text::check_line("the name", name)
            .map_err(|error| MailError::Invalid(error.to_string()))?;
        text::check_line("the email", &event.email)
            .map_err(|error| MailError::Invalid(error.to_string()))?;
        let address = event.email.parse().map_err(|_| {
            MailError::Invalid(format!(
                "{} is not a mail address",
                text::excerpt(&event.email)
            ))
        })?;
        // lettre panics on some header values it cannot encode; one such
        // event must not stop the worker, so a panic here is a bad event.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.build(name, &event.email, address, &event.event_id)
        }))
        .unwrap_or_else(|_| {
            Err(MailError::Invalid(format!(
                "the mail library cannot encode the name {}",
                text::excerpt(name)
            )))
        })
    }

    /// The mail's `Message-ID`: the event's id at the sender's domain, so
    /// the one mail a crash between the SMTP server's acceptance and the
    /// sent-mail record sends twice is the same message both times (which
    /// mail stores and readers recognise), never two different ones. `None`
    /// (no header) for an id that is not a plain token.
    fn message_id(&self, event_id: &str) -> Option<String> {
        let plain = !event_id.is_empty()
            && event_id.len() <= 64
            && event_id
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-');
        plain.then(|| format!("<{event_id}@{}>", self.from.email.domain()))
    }

    fn build(
        &self,
        name: &str,
        email: &str,
        address: Address,
        event_id: &str,
    ) -> Result<WelcomeMail, MailError> {
        let to = Mailbox::new((!name.is_empty()).then(|| name.to_owned()), address);
        let greeting = if name.is_empty() { "Hello" } else { name };
        let text = format!(
            "Hi {greeting},\n\nwelcome to Shippy! Your account for {email} is ready: log in with \
             `user-cli login --email {email}` and ship your first consignment with \
             `consignment-cli create`.\n\nThe Shippy team\n",
        );
        let html = format!(
            "<!doctype html><html><body><p>Hi {greeting},</p><p>welcome to Shippy! Your account \
             for <b>{email}</b> is ready: log in with <code>user-cli login --email {email}</code> \
             and ship your first consignment with <code>consignment-cli create</code>.</p>\
             <p>The Shippy team</p></body></html>",
            greeting = escape(greeting),
            email = escape(email)
        );
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to.clone())
            .subject(&self.subject);
        if let Some(id) = self.message_id(event_id) {
            builder = builder.message_id(Some(id));
        }
        let message = builder
            .multipart(MultiPart::alternative_plain_html(text.clone(), html))
            .map_err(|error| MailError::Invalid(text::excerpt(&error.to_string())))?;
        // Encoding happens here too, so a panic in it is caught above.
        let _ = message.formatted();
        Ok(WelcomeMail {
            to,
            subject: self.subject.clone(),
            text,
            message,
        })
    }
}

/// `text` safe to put in HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, email: &str) -> UserCreated {
        UserCreated {
            event_id: "e1".into(),
            name: name.into(),
            email: email.into(),
            ..Default::default()
        }
    }

    /// The welcome mail for `event`, from Shippy's usual sender.
    fn welcome(event: &UserCreated) -> Result<WelcomeMail, MailError> {
        Template::new("Shippy <no-reply@shippy.example>", "Welcome")
            .unwrap()
            .welcome(event)
    }

    #[test]
    fn greets_by_name_with_plain_text_and_html() {
        let mail = welcome(&event("Ewan <b>", "ewan@example.com")).unwrap();
        assert!(mail.text.starts_with("Hi Ewan <b>,"));
        let raw = String::from_utf8(mail.message.formatted()).unwrap();
        assert!(raw.contains("Subject: Welcome"));
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
        assert!(
            raw.contains("Hi Ewan &lt;b&gt;,"),
            "HTML is escaped:\n{raw}"
        );
    }

    #[test]
    fn the_message_id_is_the_events_so_a_mail_sent_again_is_the_same_message() {
        let raw = |event_id: &str| {
            let mut event = event("Ewan", "ewan@example.com");
            event.event_id = event_id.into();
            String::from_utf8(welcome(&event).unwrap().message.formatted()).unwrap()
        };
        let id = "8df1841b-2f11-42fc-9ff1-40869f493390";
        let first = raw(id);
        assert!(
            first.contains(&format!("Message-ID: <{id}@shippy.example>\r\n")),
            "{first}"
        );
        // A redelivery of the same event builds the same message again.
        assert_eq!(
            first.lines().find(|line| line.starts_with("Message-ID")),
            raw(id).lines().find(|line| line.starts_with("Message-ID"))
        );
        assert!(
            raw("5e0c3a47-0000-4000-8000-000000000001")
                .contains("<5e0c3a47-0000-4000-8000-000000000001@shippy.example>")
        );
        // An id that is not a plain token makes no header of it.
        assert!(!raw("e1>\r\nBcc: x@y").contains("Bcc"));
    }

    #[test]
    fn an_event_without_a_valid_address_cannot_be_mailed() {
        assert!(matches!(
            welcome(&event("A", "not an address")),
            Err(MailError::Invalid(_))
        ));
        assert!(Template::new("nobody", "x").is_err());
    }

    #[test]
    fn a_quoted_local_part_cannot_be_mailed_and_is_permanent() {
        // lettre parses `"john doe"@example.com` but cannot put it in an
        // envelope: such an event (older than user-service's refusal) is
        // given up, not retried and not dropped silently.
        let error = welcome(&event("John", "\"john doe\"@example.com")).unwrap_err();
        assert!(matches!(error, MailError::Invalid(_)), "{error:?}");
        assert!(error.is_permanent());
        assert!(!MailError::Timeout.is_permanent());
    }

    #[test]
    fn header_injection_in_any_field_is_an_invalid_event_not_a_panic() {
        for (name, email) in [
            ("Eve\r\nBcc: spy@example.com", "eve@example.com"),
            ("Eve\nBcc: spy@example.com", "eve@example.com"),
            ("nul\0", "eve@example.com"),
            ("Eve", "eve@example.com\r\nBcc: spy@example.com"),
            (&"\u{202e}\r".repeat(5000), "eve@example.com"),
        ] {
            match welcome(&event(name, email)) {
                Err(MailError::Invalid(reason)) => {
                    // Refused by the check, not merely a caught panic.
                    assert!(reason.contains("control characters"), "{reason}");
                    assert!(reason.len() < 1000, "short: {reason}");
                    assert!(!reason.contains('\n'), "escaped: {reason}");
                }
                other => panic!("{name:?} / {email:?}: {other:?}"),
            }
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use prost::Message as _;

    use super::*;

    proptest! {
        /// Whatever an event says, the welcome mail is built or refused as
        /// invalid, never a panic (the CR/LF name of issue 13 panicked).
        #[test]
        fn any_event_makes_a_mail_or_an_invalid_event(
            unicode in any::<String>(),
            // Mostly ASCII with line breaks, tabs and NUL: what headers choke on.
            ascii in "[ -~\r\n\t\x00]{0,40}",
            email in any::<String>(),
            local in "[a-z]{1,10}",
        ) {
            let template = Template::new("no-reply@shippy.example", "Welcome").unwrap();
            for (name, email) in [
                (&unicode, email.clone()),
                (&ascii, format!("{local}@example.com")),
                (&unicode, format!("{local}@example.com")),
            ] {
                let event = UserCreated { event_id: "e1".into(), name: name.clone(), email, ..Default::default() };
                match template.welcome(&event) {
                    Ok(_) | Err(MailError::Invalid(_)) => {}
                    Err(other) => prop_assert!(false, "{other:?}"),
                }
            }
        }

        /// Arbitrary bytes on the events subject decode or fail, never panic;
        /// a decoded event is then mailed or refused.
        #[test]
        fn arbitrary_payloads_decode_or_fail(payload in any::<Vec<u8>>()) {
            let template = Template::new("no-reply@shippy.example", "Welcome").unwrap();
            if let Ok(event) = UserCreated::decode(payload.as_slice()) {
                let _ = template.welcome(&event);
            }
        }
    }
}
