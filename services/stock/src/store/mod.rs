//! The storage seam. Handlers talk to [`StockStore`] only; SQLite is the embedded default and
//! another backend (PostgreSQL) slots in as another implementation of the same trait.
//!
//! Every write that changes stock returns the film's new [`Availability`] as committed, so the
//! caller can publish exactly what the database holds.

mod sqlite;

use std::time::SystemTime;

use async_trait::async_trait;

pub use self::sqlite::SqliteStore;
use crate::domain::{
    Account, AccountId, Availability, Inventory, MovieId, Purchase, Rental, RentalId, Role,
};

/// What can go wrong in storage, in terms a handler can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The film is not stocked.
    #[error("film {0} is not stocked")]
    NotStocked(MovieId),
    /// No copy is on the shelf.
    #[error("no copy of film {0} is available")]
    SoldOut(MovieId),
    /// No such rental.
    #[error("no rental has id {0}")]
    RentalNotFound(RentalId),
    /// The rental was returned already.
    #[error("rental {0} was already returned")]
    AlreadyReturned(RentalId),
    /// The rental belongs to someone else.
    #[error("rental {0} belongs to another customer")]
    NotYourRental(RentalId),
    /// The request id was used before for a different request.
    #[error("request_id {0:?} was already used for a different request")]
    RequestIdReused(String),
    /// The email is taken.
    #[error("an account with email {0:?} exists already")]
    EmailTaken(String),
    /// Fewer copies than are rented out.
    #[error("film {movie_id} has {rented} copies rented out; it cannot own only {owned}")]
    BelowRented {
        /// The film.
        movie_id: MovieId,
        /// Copies rented out.
        rented: i32,
        /// Copies asked for.
        owned: i32,
    },
    /// The database failed; the cause is logged, not shown.
    #[error("the database failed")]
    Backend(#[from] anyhow::Error),
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

/// Stock, rentals, purchases and accounts.
#[async_trait]
pub trait StockStore: Send + Sync + 'static {
    /// The stock of those of `ids` that are stocked.
    async fn availability(&self, ids: &[MovieId]) -> Result<Vec<Availability>, StoreError>;
    /// The stock of every stocked film, by id.
    async fn all_availability(&self) -> Result<Vec<Availability>, StoreError>;
    /// Sets copies owned and prices, keeping open rentals out on loan.
    async fn set_inventory(&self, inventory: &Inventory) -> Result<Availability, StoreError>;
    /// Stocks films that are not stocked yet (sample data); returns how many were added.
    async fn stock_missing(&self, rows: &[Inventory]) -> Result<u64, StoreError>;
    /// Rents a copy, or returns the earlier rental made with the same request id.
    async fn rent(&self, rental: &NewRental) -> Result<Outcome<Rental>, StoreError>;
    /// Closes a rental. `customer` limits it to that customer's rentals (staff pass `None`).
    async fn return_rental(
        &self,
        rental_id: RentalId,
        customer: Option<AccountId>,
        now: SystemTime,
    ) -> Result<Outcome<Rental>, StoreError>;
    /// Buys a copy, or returns the earlier purchase made with the same request id.
    async fn purchase(&self, purchase: &NewPurchase) -> Result<Outcome<Purchase>, StoreError>;
    /// A customer's rentals: open ones by due date, then returned ones, latest first.
    async fn rentals_of(
        &self,
        customer_id: AccountId,
        include_returned: bool,
    ) -> Result<Vec<Rental>, StoreError>;
    /// Creates an account.
    async fn create_account(&self, account: &NewAccount) -> Result<Account, StoreError>;
    /// An account and its password hash, by email (case-insensitive).
    async fn account_by_email(&self, email: &str) -> Result<Option<(Account, String)>, StoreError>;
    /// An account by id.
    async fn account(&self, id: AccountId) -> Result<Option<Account>, StoreError>;
    /// Makes an existing account staff.
    async fn promote_to_staff(&self, id: AccountId) -> Result<(), StoreError>;
    /// Checks the invariant for every film: copies available = copies owned − open rentals.
    /// Returns the films where it does not hold (always empty unless there is a bug).
    async fn invariant_violations(&self) -> Result<Vec<MovieId>, StoreError>;
}
