//! Stock's abuse limits: sign-ins and registrations per client, writes per account, and a
//! back-off on an email after repeated failed sign-ins.
//!
//! They live in each process: with N replicas a client gets N times the rate at most, which is
//! still a rate. The back-off is per email, so it cannot tell an owner from a guesser: it starts
//! after five failures and never waits more than five minutes, which makes guessing hopeless
//! and keeps a locked-out owner's wait short.

use std::{
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use videostore_kit::{
    ids::AccountId,
    limits::{RateLimit, TrustedProxies, client_ip, client_key},
    streams::{StreamCaps, StreamPlace, StreamPlaces},
};

use crate::error::Error;

/// Registration mails one address gets in an hour at most.
pub(crate) const MAILS_PER_ADDRESS_HOUR: u32 = 5;
/// Failed sign-ins an email gets before it must wait.
const FREE_FAILURES: u32 = 5;
/// The longest wait.
const MAX_WAIT: Duration = Duration::from_secs(300);
/// An email's failures are forgotten this long after the last one.
const FORGET_AFTER: Duration = Duration::from_secs(900);
/// Most emails remembered at once. Past this, the ones seen once and longest ago are forgotten
/// first (quick_cache's S3-FIFO), so a flood of made-up emails costs neither memory nor a scan,
/// and cannot easily push out an email under a real attack, which is seen again and again.
const MAX_EMAILS: usize = 100_000;

/// The limits of one stock process.
#[derive(Debug)]
pub(crate) struct Limits {
    sign_ins: RateLimit<IpAddr>,
    /// Registration mails per address, so nobody can flood someone's inbox through Register.
    mails: RateLimit<String>,
    writes: RateLimit<AccountId>,
    trusted: TrustedProxies,
    failures: Mutex<quick_cache::unsync::Cache<String, Failures>>,
    /// Places for live streams (WatchAvailability) in this process.
    watches: StreamPlaces,
}

/// How many live streams one process and one client may hold.
pub(crate) type WatchCaps = StreamCaps;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// When the email may try again: after the free failures, a second, then twice as long
    /// after each further failure.
    fn blocked_until(&self) -> Option<Instant> {
        let over = self.count.checked_sub(FREE_FAILURES)?;
        let wait = Duration::from_secs(1u64 << over.min(16)).min(MAX_WAIT);
        Some(self.last + wait)
    }
}

impl Limits {
    /// `sign_ins_per_minute` per client (sign-ins and registrations together) and
    /// `writes_per_minute` per account (rentals, returns, purchases, stock changes); 0 turns a
    /// limit off. `trusted` proxies' `X-Forwarded-For` names the client.
    pub(crate) fn new(
        sign_ins_per_minute: u32,
        writes_per_minute: u32,
        watches: WatchCaps,
        trusted: TrustedProxies,
    ) -> Self {
        Self {
            sign_ins: RateLimit::per_minute(sign_ins_per_minute),
            mails: RateLimit::per_hour(MAILS_PER_ADDRESS_HOUR),
            writes: RateLimit::per_minute(writes_per_minute),
            watches: StreamPlaces::new(watches, trusted.clone()),
            trusted,
            failures: Mutex::new(quick_cache::unsync::Cache::new(MAX_EMAILS)),
        }
    }

    /// A place for a live stream of the request's client, or RESOURCE_EXHAUSTED when this
    /// process or this client holds as many as it may.
    pub(crate) fn watch_place<T>(&self, request: &tonic::Request<T>) -> Result<StreamPlace, Error> {
        self.watches.take(request).map_err(|full| Error::TooManyWatches { whose: full.whose() })
    }

    /// Shows the open live streams at `/metrics`.
    pub(crate) fn register_metrics(&self, metrics: &videostore_kit::metrics::Metrics) {
        let help = "WatchAvailability streams open";
        metrics.register("videostore_watch_streams", help, self.watches.open());
    }

    /// Counts a sign-in or registration from the request's client.
    pub(crate) fn sign_in_attempt<T>(&self, request: &tonic::Request<T>) -> Result<(), Error> {
        let peer = request.remote_addr().map(|addr| addr.ip());
        let Some(client) = client_ip(peer, request.metadata(), &self.trusted) else {
            return Ok(());
        };
        self.sign_ins.check(&client_key(client)).map_err(|retry_after| Error::TooManyCalls {
            what: "sign-ins and registrations from this address",
            retry_after,
        })
    }

    /// Counts a registration mail to `email`. Over the limit the answer is the same whether
    /// the address has an account or not.
    pub(crate) fn mail_to(&self, email: &str) -> Result<(), Error> {
        self.mails.check(&key(email)).map_err(|retry_after| Error::TooManyCalls {
            what: "registrations of this address",
            retry_after,
        })
    }

    /// Counts a write of `account`.
    pub(crate) fn write(&self, account: AccountId) -> Result<(), Error> {
        self.writes
            .check(&account)
            .map_err(|retry_after| Error::TooManyCalls { what: "changes", retry_after })
    }

    /// Whether `email` may try to sign in now.
    pub(crate) fn may_sign_in(&self, email: &str) -> Result<(), Error> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let blocked = failures.peek(&key(email)).and_then(Failures::blocked_until);
        match blocked {
            Some(until) if until > Instant::now() => {
                Err(Error::SignInsPaused(until - Instant::now()))
            }
            _ => Ok(()),
        }
    }

    /// A sign-in of `email` failed.
    pub(crate) fn sign_in_failed(&self, email: &str) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let email = key(email);
        let first = || Ok::<_, std::convert::Infallible>(Failures { count: 0, last: now });
        let Ok(Some(mut entry)) = failures.get_mut_or_insert_with(email.as_str(), first) else {
            return;
        };
        if now.duration_since(entry.last) >= FORGET_AFTER {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
    }

    /// A sign-in of `email` worked: its failures are forgotten.
    pub(crate) fn sign_in_worked(&self, email: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&key(email));
    }
}

/// Emails are compared as sign-in compares them: trimmed, case-insensitively.
fn key(email: &str) -> String {
    email.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_emails_are_forgotten_first_and_an_attacked_email_stays_paused() {
        let caps = WatchCaps { per_process: 10, per_client: 0 };
        let limits = Limits::new(0, 0, caps, TrustedProxies::default());
        for n in 0..2 * MAX_EMAILS {
            limits.sign_in_failed(&format!("made-up-{n}@example.com"));
            if n % 1000 == 0 {
                limits.sign_in_failed("victim@example.com");
            }
        }
        assert!(limits.failures.lock().unwrap().len() <= MAX_EMAILS);
        assert!(matches!(limits.may_sign_in("victim@example.com"), Err(Error::SignInsPaused(_))));
    }

    #[test]
    fn an_email_waits_after_its_free_failures_and_twice_as_long_each_time() {
        let caps = WatchCaps { per_process: 10, per_client: 0 };
        let limits = Limits::new(0, 0, caps, TrustedProxies::default());
        for _ in 0..FREE_FAILURES - 1 {
            limits.sign_in_failed("Ann@Example.com");
            assert!(limits.may_sign_in("ann@example.com").is_ok());
        }
        limits.sign_in_failed("ann@example.com ");
        let Err(Error::SignInsPaused(wait)) = limits.may_sign_in("ANN@example.com") else {
            panic!("the fifth failure must pause sign-ins");
        };
        assert!(wait <= Duration::from_secs(1) && wait > Duration::from_millis(900), "{wait:?}");
        limits.sign_in_failed("ann@example.com");
        let Err(Error::SignInsPaused(wait)) = limits.may_sign_in("ann@example.com") else {
            panic!("still paused");
        };
        assert!(wait > Duration::from_millis(1900), "{wait:?}");
        assert!(limits.may_sign_in("bob@example.com").is_ok(), "other emails are not paused");
        limits.sign_in_worked("ann@example.com");
        assert!(limits.may_sign_in("ann@example.com").is_ok());
        let long = Failures { count: 40, last: Instant::now() };
        assert_eq!(long.blocked_until().unwrap() - long.last, MAX_WAIT);
    }
}
