//! Every check of a password goes through here, and so through the login limiter: the login
//! form, the token API's `auth` body and the change-password page. A name longer than any
//! user name is refused before its password is looked at (no hashing, nothing counted); so is
//! a name or client address that failed too often, even with the right password. Failures
//! are counted and answered a little later; a success clears the name's count.

use std::net::IpAddr;
use std::time::Duration;

use hubfleet_auth::{name_for_log, overlong_name_problem, Credentials, UserInfo};

use crate::{AppState, HubError};

/// Why a password was not even looked at.
#[derive(Debug)]
pub enum Refusal {
    /// The name is longer than any user name; the message says so.
    NameTooLong(String),
    /// Too many failures for this name or address: try again after this long.
    LockedOut(Duration),
}

/// Whole seconds to wait, rounded up, at least 1 (for messages and `Retry-After`).
pub fn retry_seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// What a locked-out client is told.
pub fn lockout_message(wait: Duration) -> String {
    format!(
        "Too many failed logins. Try again in {} seconds.",
        retry_seconds(wait)
    )
}

impl Refusal {
    pub fn message(&self) -> String {
        match self {
            Refusal::NameTooLong(message) => message.clone(),
            Refusal::LockedOut(wait) => lockout_message(*wait),
        }
    }
}

impl From<Refusal> for HubError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NameTooLong(message) => HubError::BadRequest(message),
            Refusal::LockedOut(wait) => HubError::LockedOut(wait),
        }
    }
}

/// One password check under way, for `name` from `ip`; `via` names the path in the log.
pub struct Attempt<'a> {
    state: &'a AppState,
    name: &'a str,
    ip: Option<IpAddr>,
    via: &'static str,
}

impl<'a> Attempt<'a> {
    /// Refused when the name is too long or locked out; else the password may be checked.
    pub fn begin(
        state: &'a AppState,
        name: &'a str,
        ip: Option<IpAddr>,
        via: &'static str,
    ) -> Result<Self, Refusal> {
        if let Some(problem) = overlong_name_problem(name) {
            tracing::warn!(username = %name_for_log(name), ?ip, via, "login refused: user name too long");
            return Err(Refusal::NameTooLong(problem));
        }
        if let Some(wait) = state
            .started_authenticator
            .limiter()
            .and_then(|l| l.check(name, ip).err())
        {
            tracing::warn!(username = %name_for_log(name), ?ip, via, "login refused: too many failures");
            return Err(Refusal::LockedOut(wait));
        }
        Ok(Attempt {
            state,
            name,
            ip,
            via,
        })
    }

    /// The password was wrong: count it, and answer a little later.
    pub async fn failed(self) {
        tracing::info!(username = %name_for_log(self.name), ip = ?self.ip, via = self.via, "failed login");
        if let Some(limiter) = self.state.started_authenticator.limiter() {
            tokio::time::sleep(limiter.failed(self.name, self.ip)).await;
        }
    }

    /// The password was right: the name's count starts again.
    pub fn succeeded(self) {
        if let Some(limiter) = self.state.started_authenticator.limiter() {
            limiter.succeeded(self.name);
        }
    }
}

/// What came of a login with a user name and password.
pub enum Outcome {
    Accepted(UserInfo),
    /// Wrong password or unknown user (counted as a failure).
    Wrong,
    Refused(Refusal),
    /// The password was right, but the person may not log in (yet): why, for them.
    NotAllowed(String),
}

/// Ask the authenticator about `credentials`, under the limiter.
pub async fn check_password(
    state: &AppState,
    credentials: &Credentials,
    ip: Option<IpAddr>,
    via: &'static str,
) -> Result<Outcome, HubError> {
    let attempt = match Attempt::begin(state, &credentials.username, ip, via) {
        Ok(attempt) => attempt,
        Err(refusal) => return Ok(Outcome::Refused(refusal)),
    };
    match state.authenticator().authenticate(credentials).await {
        Ok(Some(info)) => {
            attempt.succeeded();
            Ok(Outcome::Accepted(info))
        }
        Ok(None) => {
            attempt.failed().await;
            Ok(Outcome::Wrong)
        }
        Err(hubfleet_auth::AuthError::Refused(why)) => {
            tracing::info!(username = %name_for_log(&credentials.username), ?ip, via, %why, "login refused");
            Ok(Outcome::NotAllowed(why))
        }
        Err(e) => Err(e.into()),
    }
}
