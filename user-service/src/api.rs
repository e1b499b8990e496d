//! The `UserService` gRPC handlers: parse the request, do the work, answer.
//! Errors become `tonic::Status` through [`ApiError`] only.

use std::sync::Arc;

use chrono::{SubsecRound, Utc};
use prost::Message;
use shippy_auth::{Claims, TokenError, VerifiedTokens, service::ServiceToken, token_from_metadata};
use shippy_proto::{
    events::v1::UserCreated,
    user::v1::{self as proto, user_service_server::UserService},
};
use shippy_service::{ApiError, pagination, readiness::Ready, telemetry::propagation};
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::{
    domain::{Email, NewUser, Password, User, UserId},
    password::{HashError, PasswordHasher},
    roles::Admins,
    store::{Cursor, OutboxEvent, StoreError, UserStore},
    throttle::LoginThrottle,
    tokens::{KeyError, TokenSigner},
};

/// What a handler answers (as in tonic's examples).
type Reply<T> = Result<Response<T>, Status>;

/// Users per page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// The most users per page; larger requests get this many.
pub const MAX_PAGE_SIZE: u32 = 100;

/// The answer to a non-admin asking for someone else's profile.
const NOT_YOURS: &str = "you may read only your own profile (admins may read any)";

/// The one message for every failed login, whatever failed.
const BAD_CREDENTIALS: &str = "email or password is incorrect";

/// Who may do what: the administrators, and the failed-login throttle.
#[derive(Debug, Clone)]
pub struct Access {
    /// Accounts whose tokens carry the admin role.
    pub admins: Admins,
    /// Failed logins counted per account and address.
    pub throttle: LoginThrottle,
}

/// The handlers and what they share.
#[derive(Debug, Clone)]
pub struct UserApi {
    store: UserStore,
    hasher: PasswordHasher,
    signer: Arc<TokenSigner>,
    ready: Ready,
    /// Wakes the outbox relay after a new event is committed.
    outbox: Arc<Notify>,
    verified: VerifiedTokens,
    user_created_subject: String,
    admins: Admins,
    throttle: LoginThrottle,
}

impl UserApi {
    /// Handlers that answer `UNAVAILABLE` until `ready` is set.
    pub fn new(
        store: UserStore,
        hasher: PasswordHasher,
        signer: Arc<TokenSigner>,
        ready: Ready,
        outbox: Arc<Notify>,
        user_created_subject: String,
        access: Access,
    ) -> Self {
        let Access { admins, throttle } = access;
        Self {
            store,
            hasher,
            signer,
            ready,
            outbox,
            user_created_subject,
            admins,
            throttle,
            verified: VerifiedTokens::new(),
        }
    }

    fn store(&self) -> Result<&UserStore, ApiError> {
        self.ready.gate(&self.store, "user store")
    }

    /// The caller's verified claims, from `authorization: Bearer` or `token`,
    /// recorded as the span's `caller`.
    fn caller<T>(&self, request: &Request<T>) -> Result<Claims, ApiError> {
        let token = token_from_metadata(request.metadata()).map_err(unauthenticated)?;
        let claims = self.verify(&token)?;
        tracing::Span::current().record("caller", &claims.sub);
        Ok(claims)
    }

    /// `token`'s claims (remembered for a while once verified).
    fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        self.verified
            .verify(&self.signer.verifier(), token)
            .map_err(unauthenticated)
    }
}

fn unauthenticated(error: TokenError) -> ApiError {
    ApiError::Unauthenticated(error.to_string())
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::EmailTaken => ApiError::AlreadyExists(error.to_string()),
            StoreError::Unavailable(_) => {
                ApiError::unavailable("the user database is unreachable; retry shortly", error)
            }
            StoreError::Corrupt(_) | StoreError::Database(_) => ApiError::internal(error),
        }
    }
}

impl From<HashError> for ApiError {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Busy => {
                ApiError::unavailable("too many logins at once; retry shortly", error)
            }
            HashError::Bcrypt(_) | HashError::Stopped => ApiError::internal(error),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(error: KeyError) -> Self {
        ApiError::internal(error)
    }
}

fn user_created_event(user: &User, subject: &str) -> OutboxEvent {
    let id = uuid::Uuid::new_v4();
    let event = UserCreated {
        event_id: id.to_string(),
        occurred_at: Some(shippy_proto::timestamp(user.created_at)),
        user_id: user.id.to_string(),
        name: user.name.as_str().to_owned(),
        email: user.email.as_str().to_owned(),
        company: user.company.as_str().to_owned(),
    };
    OutboxEvent {
        id,
        subject: subject.to_owned(),
        payload: event.encode_to_vec(),
        trace_context: propagation::current_context_map(),
    }
}

#[tonic::async_trait]
impl UserService for UserApi {
    #[tracing::instrument(skip_all, fields(user.id))]
    async fn create(&self, request: Request<proto::User>) -> Reply<proto::Response> {
        let new = NewUser::try_from(request.into_inner()).map_err(ApiError::from)?;
        let store = self.store()?;
        let hash = self
            .hasher
            .hash(new.password)
            .await
            .map_err(ApiError::from)?;
        let user = User {
            id: UserId::generate(),
            name: new.name,
            company: new.company,
            email: new.email,
            // PostgreSQL keeps microseconds; so does the answer.
            created_at: Utc::now().trunc_subsecs(6),
        };
        tracing::Span::current().record("user.id", tracing::field::display(user.id));
        let event = user_created_event(&user, &self.user_created_subject);
        store
            .insert_user_with_event(&user, &hash, &event)
            .await
            .map_err(ApiError::from)?;
        self.outbox.notify_one();
        tracing::info!(event.id = %event.id, "user created");
        Ok(Response::new(user.into()))
    }

    #[tracing::instrument(skip_all, fields(caller))]
    async fn get(&self, request: Request<proto::User>) -> Reply<proto::Response> {
        let claims = self.caller(&request)?;
        let admin = claims.is_admin();
        let wanted = request.into_inner();
        let user = if !wanted.id.trim().is_empty() {
            let id = UserId::parse(&wanted.id).map_err(ApiError::from)?;
            if !admin && id.to_string() != claims.sub {
                return Err(ApiError::PermissionDenied(NOT_YOURS.into()).into());
            }
            self.store()?.get(id).await.map_err(ApiError::from)?
        } else if !wanted.email.trim().is_empty() {
            let email = Email::parse(&wanted.email).map_err(ApiError::from)?;
            let found = self
                .store()?
                .credentials(&email)
                .await
                .map_err(ApiError::from)?
                .map(|(user, _hash)| user);
            // A non-admin learns nothing of other accounts, not even whether
            // they exist.
            if !admin
                && found
                    .as_ref()
                    .is_none_or(|user| user.id.to_string() != claims.sub)
            {
                return Err(ApiError::PermissionDenied(NOT_YOURS.into()).into());
            }
            found
        } else {
            return Err(ApiError::InvalidArgument("give the user's id or email".into()).into());
        };
        let user = user.ok_or_else(|| ApiError::NotFound("no such user".into()))?;
        Ok(Response::new(user.into()))
    }

    #[tracing::instrument(skip_all, fields(caller))]
    async fn get_all(&self, request: Request<proto::Request>) -> Reply<proto::Response> {
        let claims = self.caller(&request)?;
        if !claims.is_admin() {
            return Err(ApiError::PermissionDenied(
                "listing users is for admins (see ADMIN_EMAILS)".into(),
            )
            .into());
        }
        let wanted = request.into_inner();
        let after: Option<Cursor> = pagination::decode(&wanted.page_token)?;
        let size = pagination::page_size(wanted.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
        let page = self
            .store()?
            .list(after, size)
            .await
            .map_err(ApiError::from)?;
        let next = page.next.map(|cursor| pagination::encode(&cursor));
        Ok(Response::new(proto::Response {
            users: page.users.into_iter().map(Into::into).collect(),
            next_page_token: next.unwrap_or_default(),
            ..Default::default()
        }))
    }

    #[tracing::instrument(skip_all, fields(user.id))]
    async fn auth(&self, request: Request<proto::User>) -> Reply<proto::Token> {
        let address = ServiceToken::client_of(self.throttle.service_token(), &request);
        let given = request.into_inner();
        let email = Email::parse(&given.email).map_err(ApiError::from)?;
        let password = Password::parse_given(&given.password).map_err(ApiError::from)?;
        // Refused before any bcrypt time is spent.
        self.throttle
            .check(&email, address)
            .map_err(ApiError::from)?;
        // Counted as failed until it succeeds, so guesses sent all at once
        // count at once too.
        self.throttle.failed(&email, address);
        let found = self
            .store()?
            .credentials(&email)
            .await
            .map_err(ApiError::from)?;
        let (user, hash) = match found {
            Some((user, hash)) => (Some(user), Some(hash)),
            None => (None, None),
        };
        // Verified even when no user has this email, so both failures take as long.
        let matches = self
            .hasher
            .verify(password, hash)
            .await
            .map_err(ApiError::from)?;
        let user = match user {
            Some(user) if matches => user,
            _ => return Err(ApiError::Unauthenticated(BAD_CREDENTIALS.into()).into()),
        };
        self.throttle.succeeded(&email, address);
        tracing::Span::current().record("user.id", tracing::field::display(user.id));
        let signed = self
            .signer
            .sign(user.id, self.admins.roles_of(&user.email))
            .map_err(ApiError::from)?;
        tracing::info!("token issued");
        Ok(Response::new(proto::Token {
            token: signed.token,
            valid: true,
            user_id: user.id.to_string(),
            expires_at: Some(shippy_proto::Timestamp {
                seconds: i64::try_from(signed.expires_at).unwrap_or(i64::MAX),
                nanos: 0,
            }),
            ..Default::default()
        }))
    }

    #[tracing::instrument(skip_all, fields(user.id))]
    async fn validate_token(&self, request: Request<proto::Token>) -> Reply<proto::Token> {
        let token = request.into_inner().token;
        if token.trim().is_empty() {
            return Err(unauthenticated(TokenError::Missing).into());
        }
        let claims = self.verify(&token)?;
        tracing::Span::current().record("user.id", &claims.sub);
        Ok(Response::new(proto::Token {
            token,
            valid: true,
            user_id: claims.sub,
            expires_at: Some(shippy_proto::Timestamp {
                seconds: i64::try_from(claims.exp).unwrap_or(i64::MAX),
                nanos: 0,
            }),
            ..Default::default()
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_public_keys(
        &self,
        _request: Request<proto::GetPublicKeysRequest>,
    ) -> Reply<proto::PublicKeys> {
        Ok(Response::new(proto::PublicKeys {
            keys: self.signer.public_keys().iter().map(Into::into).collect(),
        }))
    }
}
