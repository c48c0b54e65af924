//! The storage seam. The service talks to [`StockStore`] only: [`SqliteStore`] is the embedded
//! default (one process per database), [`PostgresStore`] serves any number of replicas. Both
//! pass the same store test suite (`tests/store/`).
//!
//! Every write that changes stock returns the film's new [`Availability`] as committed, so the
//! caller can publish exactly what the database holds.

mod copy;
mod postgres;
mod sqlite;

use std::time::SystemTime;

use async_trait::async_trait;

pub use self::{copy::Copied, postgres::PostgresStore, sqlite::SqliteStore};
use crate::{
    domain::{
        Account, AccountId, Availability, Inventory, MovieId, Purchase, Rental, RentalId, Role,
    },
    error::Error,
};

/// Where a page of a customer's rentals starts: just after this rental in the listing's order
/// (open ones by due date, then returned ones, latest return first; ties by id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RentalsAfter {
    /// Whether the rental was returned (returned ones come after every open one).
    pub returned: bool,
    /// Its due time (open), or its return time negated (returned), in Unix milliseconds.
    pub key: i64,
    /// Its id.
    pub id: RentalId,
}

impl RentalsAfter {
    /// The position just after `rental`.
    pub fn after(rental: &Rental) -> Self {
        let millis = |time: SystemTime| {
            time.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
        };
        match rental.returned_at {
            Some(returned_at) => Self { returned: true, key: -millis(returned_at), id: rental.id },
            None => Self { returned: false, key: millis(rental.due_at), id: rental.id },
        }
    }
}

/// A rental to make.
#[derive(Debug, Clone)]
pub struct NewRental {
    /// The customer.
    pub customer_id: AccountId,
    /// The film.
    pub movie_id: MovieId,
    /// Days.
    pub days: i32,
    /// Idempotency key, unique per customer.
    pub request_id: String,
    /// When.
    pub now: SystemTime,
}

/// A purchase to make.
#[derive(Debug, Clone)]
pub struct NewPurchase {
    /// The buyer.
    pub customer_id: AccountId,
    /// The film.
    pub movie_id: MovieId,
    /// Idempotency key, unique per customer.
    pub request_id: String,
    /// When.
    pub now: SystemTime,
}

/// The result of a write that may have been a retry.
#[derive(Debug, Clone)]
pub struct Outcome<T> {
    /// The rental, purchase or return.
    pub value: T,
    /// The film's stock after this call's commit; `None` when the call was a retry that changed
    /// nothing.
    pub changed: Option<Availability>,
}

/// What one customer may hold, so that one account cannot empty the shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomerCaps {
    /// Rentals open at once.
    pub max_open_rentals: u32,
    /// Purchases in any 24 hours.
    pub max_purchases_per_day: u32,
}

/// An account to create.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Role.
    pub role: Role,
    /// When.
    pub now: SystemTime,
}

/// A registration to keep until its address is confirmed.
#[derive(Debug, Clone)]
pub struct NewRegistration {
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// SHA-256 of the confirmation code that is mailed.
    pub token_hash: [u8; 32],
    /// When the code stops working.
    pub expires_at: SystemTime,
}

/// A mail to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The address.
    pub to: String,
    /// One line.
    pub subject: String,
    /// Plain text.
    pub body: String,
}

/// A mail claimed from the outbox to deliver.
#[derive(Debug, Clone)]
pub struct OutboxMail {
    /// Its row, for [`StockStore::mail_sent`].
    pub id: i64,
    /// When it was queued.
    pub queued_at: SystemTime,
    /// The mail.
    pub mail: Mail,
}

/// Stock, rentals, purchases and accounts.
#[async_trait]
pub trait StockStore: Send + Sync + 'static {
    /// The stock of those of `ids` that are stocked.
    async fn availability(&self, ids: &[MovieId]) -> Result<Vec<Availability>, Error>;
    /// The stock of every stocked film, by id.
    async fn all_availability(&self) -> Result<Vec<Availability>, Error>;
    /// Sets copies owned and prices, keeping open rentals out on loan.
    async fn set_inventory(&self, inventory: &Inventory) -> Result<Availability, Error>;
    /// Stocks films that are not stocked yet (sample data); returns how many were added.
    async fn stock_missing(&self, rows: &[Inventory]) -> Result<u64, Error>;
    /// Rents a copy, or returns the earlier rental made with the same request id.
    async fn rent(&self, rental: &NewRental) -> Result<Outcome<Rental>, Error>;
    /// Closes a rental. `customer` limits it to that customer's rentals (staff pass `None`).
    async fn return_rental(
        &self,
        rental_id: RentalId,
        customer: Option<AccountId>,
        now: SystemTime,
    ) -> Result<Outcome<Rental>, Error>;
    /// Buys a copy, or returns the earlier purchase made with the same request id.
    async fn purchase(&self, purchase: &NewPurchase) -> Result<Outcome<Purchase>, Error>;
    /// A page of a customer's rentals: open ones by due date, then returned ones, latest
    /// first; at most `limit`, starting after `after` (from the start if `None`).
    async fn rentals_of(
        &self,
        customer_id: AccountId,
        include_returned: bool,
        after: Option<RentalsAfter>,
        limit: usize,
    ) -> Result<Vec<Rental>, Error>;
    /// Creates an account.
    async fn create_account(&self, account: &NewAccount) -> Result<Account, Error>;
    /// Starts a registration. When no account has its email, keeps it until confirmed and
    /// queues `confirm`; when one has, keeps nothing and queues `taken`. One transaction either
    /// way, so the caller cannot tell the two apart by time. Whether the email was free (for
    /// tests, never for the caller).
    async fn register(
        &self,
        registration: &NewRegistration,
        confirm: &Mail,
        taken: &Mail,
        now: SystemTime,
    ) -> Result<bool, Error>;
    /// The password hash of the registration kept under `token_hash`, unless it has expired.
    async fn registration(
        &self,
        token_hash: &[u8; 32],
        now: SystemTime,
    ) -> Result<Option<String>, Error>;
    /// Makes the registration kept under `token_hash` a customer account, unless it has
    /// expired. `None` when no such registration waits; `EmailTaken` when the email has an
    /// account by now (then the registration is left to expire).
    async fn confirm_registration(
        &self,
        token_hash: &[u8; 32],
        now: SystemTime,
    ) -> Result<Option<Account>, Error>;
    /// Up to `limit` queued mails that no sender holds, oldest first, held until `until`.
    async fn claim_mail(
        &self,
        now: SystemTime,
        until: SystemTime,
        limit: usize,
    ) -> Result<Vec<OutboxMail>, Error>;
    /// Removes delivered mails from the outbox.
    async fn mail_sent(&self, ids: &[i64]) -> Result<(), Error>;
    /// Forgets registrations that expired before `now`, and queued mail older than `before`
    /// (which carried a code that no longer works). How many of each.
    async fn forget_registrations(
        &self,
        now: SystemTime,
        mail_before: SystemTime,
    ) -> Result<(u64, u64), Error>;
    /// An account and its password hash, by email (case-insensitive).
    async fn account_by_email(&self, email: &str) -> Result<Option<(Account, String)>, Error>;
    /// An account by id.
    async fn account(&self, id: AccountId) -> Result<Option<Account>, Error>;
    /// Makes an existing account staff, ending its sessions (its refresh tokens are refused).
    async fn promote_to_staff(&self, id: AccountId) -> Result<(), Error>;
    /// Ends every session of the account: its refresh tokens are refused from now on.
    async fn end_sessions(&self, id: AccountId) -> Result<(), Error>;
    /// Sets the caps every customer's rentals and purchases are held to (checked in the same
    /// write, on every replica).
    async fn set_customer_caps(&self, caps: CustomerCaps) -> Result<(), Error>;
    /// The changes of `movie_id` after version `after`, up to version `upto` if given, in version
    /// order: what a watcher that has `after` missed. Every change is kept (a trigger writes it
    /// in the change's own transaction) until [`StockStore::forget_changes`].
    async fn changes(
        &self,
        movie_id: MovieId,
        after: i64,
        upto: Option<i64>,
    ) -> Result<Vec<Availability>, Error>;
    /// Forgets the request ids of rentals and purchases made before `before`: a retry with one
    /// of them is then a new call. How many were forgotten.
    async fn expire_request_ids(&self, before: SystemTime) -> Result<u64, Error>;
    /// Forgets the changes committed before `before`, but never a film's latest. How many.
    async fn forget_changes(&self, before: SystemTime) -> Result<u64, Error>;
    /// Every stocked film's current version.
    async fn versions(&self) -> Result<Vec<(MovieId, i64)>, Error>;
    /// Checks the invariant for every film: copies available = copies owned − open rentals.
    /// Returns the films where it does not hold (always empty unless there is a bug).
    async fn invariant_violations(&self) -> Result<Vec<MovieId>, Error>;
}
