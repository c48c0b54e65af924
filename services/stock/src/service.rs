//! The stock service's operations in domain terms: what each call does once its request has
//! been read and its caller checked. The gRPC layer (`grpc`) only translates.
//!
//! Every write that changes a film's stock publishes the availability its transaction committed,
//! after the commit, through [`Stock::published`]: no write can forget to.

use std::{collections::HashMap, sync::Arc, time::Duration};
use videostore_kit::trace::InSpan as _;

use futures::TryStreamExt;
use tokio::sync::broadcast;
use videostore_kit::auth::{Caller, IssuedToken, TokenKeys, TokenSigner};

use crate::{
    clock::Clock,
    domain::{
        self, Account, AccountId, Availability, Inventory, MovieId, Purchase, Rental, RentalId,
    },
    error::Error,
    events::AvailabilityEvents,
    feed::Feed,
    mail::{CONFIRM_WITHIN, Code, Mailer},
    passwords::Passwords,
    store::{NewPurchase, NewRegistration, NewRental, Outcome, RentalsAfter, StockStore},
};

/// Rentals read at a time for ListMyRentals.
pub(crate) const RENTALS_PAGE: usize = 100;

/// What a staff member or a customer asks to rent.
#[derive(Debug, Clone)]
pub(crate) struct RentRequest {
    /// The film.
    pub(crate) movie_id: MovieId,
    /// For how many days.
    pub(crate) days: i32,
    /// The client's idempotency key.
    pub(crate) request_id: String,
}

/// How committed changes reach this process's watchers.
pub(crate) enum Publisher {
    /// This process is its database's only writer (SQLite): its own commits are all there is,
    /// published as they commit, and the latest committed stock it has seen is the latest there
    /// is, so reads may be answered from memory.
    SoleWriter,
    /// Replicas share the database (PostgreSQL): the feed publishes every replica's commits in
    /// order, and reads go to the database.
    Feed(Feed),
}

/// The stock service's operations.
pub(crate) struct Stock {
    /// Where stock, rentals and accounts live.
    store: Arc<dyn StockStore>,
    /// Committed changes, for watchers, and the latest of each for reads.
    events: AvailabilityEvents,
    /// How this process's commits reach its watchers.
    publisher: Publisher,
    /// Now, for due dates and fees.
    clock: Arc<dyn Clock>,
    /// Signs the tokens sign-in hands out.
    signer: TokenSigner,
    /// Verifies refresh tokens.
    keys: TokenKeys,
    /// How long an access token lives.
    token_ttl: Duration,
    /// How long a refresh token lives.
    refresh_ttl: Duration,
    /// Argon2, on threads of its own behind a bounded queue.
    passwords: Passwords,
    /// Writes registration mails and wakes their postman.
    mailer: Mailer,
}

/// How tokens are made and checked.
pub(crate) struct Tokens {
    /// Signs access and refresh tokens.
    pub(crate) signer: TokenSigner,
    /// Verifies refresh tokens.
    pub(crate) keys: TokenKeys,
    /// How long an access token lives.
    pub(crate) token_ttl: Duration,
    /// How long a refresh token lives.
    pub(crate) refresh_ttl: Duration,
}

/// A signed-in session: its tokens and account.
#[derive(Debug)]
pub(crate) struct Signed {
    /// The bearer token, minutes long.
    pub(crate) access: IssuedToken,
    /// The token that gets the next access token.
    pub(crate) refresh: IssuedToken,
    /// Whose.
    pub(crate) account: Account,
}

impl Stock {
    /// Operations over `store`.
    pub(crate) fn new(
        store: Arc<dyn StockStore>,
        events: AvailabilityEvents,
        publisher: Publisher,
        clock: Arc<dyn Clock>,
        tokens: Tokens,
        passwords: Passwords,
        mailer: Mailer,
    ) -> Self {
        let Tokens { signer, keys, token_ttl, refresh_ttl } = tokens;
        Self {
            store,
            events,
            publisher,
            clock,
            signer,
            keys,
            token_ttl,
            refresh_ttl,
            passwords,
            mailer,
        }
    }

    fn sole_writer(&self) -> bool {
        matches!(self.publisher, Publisher::SoleWriter)
    }

    /// The value of a committed write, after publishing the stock it changed (if it did).
    fn published<T>(&self, outcome: Outcome<T>) -> (T, Option<Availability>) {
        if let Some(changed) = &outcome.changed {
            match &self.publisher {
                Publisher::SoleWriter => self.events.publish(changed.clone()),
                Publisher::Feed(feed) => feed.committed(changed.clone()),
            }
        }
        (outcome.value, outcome.changed)
    }

    /// The current stock of each of `ids`, in the order asked (`None` where not stocked).
    /// As the only writer, films whose latest committed stock is known here are answered from
    /// memory; otherwise every film is read from the database.
    pub(crate) async fn availability(
        &self,
        ids: &[MovieId],
    ) -> Result<Vec<(MovieId, Option<Arc<Availability>>)>, Error> {
        let mut known =
            if self.sole_writer() { self.events.latest(ids) } else { vec![None; ids.len()] };
        let missing: Vec<MovieId> =
            ids.iter().zip(&known).filter(|(_, k)| k.is_none()).map(|(id, _)| *id).collect();
        let mut read: HashMap<MovieId, Arc<Availability>> = HashMap::new();
        if !missing.is_empty() {
            for availability in self.store.availability(&missing).store_span("read stock").await? {
                let availability = Arc::new(availability);
                if self.sole_writer() {
                    self.events.remember(Arc::clone(&availability));
                }
                read.insert(availability.movie_id, availability);
            }
        }
        Ok(ids
            .iter()
            .zip(known.iter_mut())
            .map(|(id, known)| (*id, known.take().or_else(|| read.get(id).cloned())))
            .collect())
    }

    /// The stock of every stocked film, by id.
    pub(crate) async fn all_availability(&self) -> Result<Vec<Availability>, Error> {
        self.store.all_availability().store_span("read all stock").await
    }

    /// The changes of `movie_id` after version `after`, in order, as far back as they are kept.
    pub(crate) async fn changes_after(
        &self,
        movie_id: MovieId,
        after: i64,
    ) -> Result<Vec<Availability>, Error> {
        self.store.changes(movie_id, after, None).store_span("read stock changes").await
    }

    /// How many stock changes have been published to watchers so far (see
    /// [`AvailabilityEvents::published`]).
    pub(crate) fn changes_published(&self) -> u64 {
        self.events.published()
    }

    /// Every stock change committed from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Availability>> {
        self.events.subscribe()
    }

    /// Rents a copy to `customer_id`; a retry with the same request id returns the first rental.
    pub(crate) async fn rent(
        &self,
        customer_id: AccountId,
        rent: RentRequest,
    ) -> Result<(Rental, Option<Availability>), Error> {
        let RentRequest { movie_id, days, request_id } = rent;
        let rental = NewRental { customer_id, movie_id, days, request_id, now: self.clock.now() };
        Ok(self.published(self.store.rent(&rental).store_span("rent").await?))
    }

    /// Closes a rental: a customer's own, or any for staff.
    pub(crate) async fn return_rental(
        &self,
        caller: &Caller,
        rental_id: RentalId,
    ) -> Result<(Rental, Option<Availability>), Error> {
        let only_of = (!caller.is_staff()).then_some(caller.account_id);
        let outcome = self
            .store
            .return_rental(rental_id, only_of, self.clock.now())
            .store_span("return")
            .await?;
        Ok(self.published(outcome))
    }

    /// The rental desk's walk-in: rents to the customer with this email.
    pub(crate) async fn rent_to(
        &self,
        email: &str,
        rent: RentRequest,
    ) -> Result<(Rental, Option<Availability>), Error> {
        let (customer, _) = self
            .store
            .account_by_email(email)
            .await?
            .ok_or_else(|| Error::NoSuchCustomer(email.to_owned()))?;
        self.rent(customer.id, rent).await
    }

    /// Buys a copy; a retry with the same request id returns the first purchase.
    pub(crate) async fn purchase(
        &self,
        customer_id: AccountId,
        movie_id: MovieId,
        request_id: String,
    ) -> Result<Purchase, Error> {
        let purchase = NewPurchase { customer_id, movie_id, request_id, now: self.clock.now() };
        Ok(self.published(self.store.purchase(&purchase).store_span("purchase").await?).0)
    }

    /// Sets a film's copies and prices.
    pub(crate) async fn set_inventory(
        &self,
        staff: &Caller,
        inventory: &Inventory,
    ) -> Result<Availability, Error> {
        let availability = self.store.set_inventory(inventory).store_span("set inventory").await?;
        tracing::info!(
            staff = %staff.email,
            movie_id = %inventory.movie_id,
            copies = inventory.copies_owned,
            "stock set"
        );
        let outcome = Outcome { changed: Some(availability.clone()), value: availability };
        Ok(self.published(outcome).0)
    }

    /// A customer's rentals: open ones by due date, then (if asked) returned ones, latest first,
    /// read [`RENTALS_PAGE`] at a time as the stream is taken, so that a long history is never
    /// held whole. Each page is read on its own: a rental returned while the list is being read
    /// can be listed both as open and as returned.
    pub(crate) fn rentals_of(
        self: &Arc<Self>,
        customer_id: AccountId,
        include_returned: bool,
    ) -> impl futures::Stream<Item = Result<Rental, Error>> + Send + 'static {
        enum Next {
            From(Option<RentalsAfter>),
            Done,
        }
        let service = Arc::clone(self);
        futures::stream::try_unfold(Next::From(None), move |next| {
            let service = Arc::clone(&service);
            async move {
                let Next::From(after) = next else { return Ok::<_, Error>(None) };
                let page = service
                    .store
                    .rentals_of(customer_id, include_returned, after, RENTALS_PAGE)
                    .await?;
                let next = match page.last() {
                    Some(last) if page.len() == RENTALS_PAGE => {
                        Next::From(Some(RentalsAfter::after(last)))
                    }
                    _ => Next::Done,
                };
                Ok(Some((futures::stream::iter(page.into_iter().map(Ok)), next)))
            }
        })
        .try_flatten()
    }

    /// Starts a registration (email, name and password checked, and the password normalized,
    /// already) and queues its mail: a confirmation code for a free address, a note to the
    /// owner for a taken one. Both take an Argon2 run and one transaction, so neither the
    /// answer nor its time tells them apart. Until when the code works.
    pub(crate) async fn register(
        &self,
        email: String,
        name: String,
        password: String,
    ) -> Result<std::time::SystemTime, Error> {
        let password_hash = self.passwords.hash(password).await?;
        // Codes live in wall-clock time, as tokens do, not the business clock.
        let now = std::time::SystemTime::now();
        let expires_at = now + CONFIRM_WITHIN;
        let code = Code::new();
        let confirm = self.mailer.confirmation(&email, &code, expires_at);
        let taken = self.mailer.already_registered(&email);
        let registration =
            NewRegistration { email, name, password_hash, token_hash: code.hash, expires_at };
        self.store.register(&registration, &confirm, &taken, now).store_span("register").await?;
        self.mailer.queued();
        Ok(expires_at)
    }

    /// Makes the account of the registration `code` was mailed for, and signs it in, when
    /// `password` is the one chosen at registration: whoever reads the mail cannot be tricked
    /// into confirming an account someone else holds the password of.
    pub(crate) async fn confirm_email(
        &self,
        code: &str,
        password: String,
    ) -> Result<Signed, Error> {
        let token_hash = Code::hash_of_sent(code).ok_or(Error::NoSuchRegistration)?;
        let now = std::time::SystemTime::now();
        let stored = self
            .store
            .registration(&token_hash, now)
            .store_span("read registration")
            .await?
            .ok_or(Error::NoSuchRegistration)?;
        if password.chars().count() > domain::MAX_PASSWORD_CHARS
            || !self.passwords.verify(password, Some(stored)).await?
        {
            return Err(Error::NotTheRegisteredPassword);
        }
        let confirmed = self
            .store
            .confirm_registration(&token_hash, now)
            .store_span("confirm registration")
            .await;
        let account = match confirmed {
            Ok(Some(account)) => account,
            Ok(None) => return Err(Error::NoSuchRegistration),
            Err(Error::EmailTaken(email)) => return Err(Error::RegisteredAlready(email)),
            Err(other) => return Err(other),
        };
        tracing::info!(account = %account.id, "customer registered");
        self.tokens_for(account)
    }

    /// A session for the account with this email and password.
    pub(crate) async fn sign_in(&self, email: &str, password: String) -> Result<Signed, Error> {
        // Longer than any account's: not worth an Argon2 run.
        if email.len() > domain::MAX_EMAIL_BYTES
            || password.chars().count() > domain::MAX_PASSWORD_CHARS
        {
            return Err(Error::WrongCredentials);
        }
        let (account, stored) =
            match self.store.account_by_email(email.trim()).store_span("read account").await? {
                Some((account, hash)) => (Some(account), Some(hash)),
                None => (None, None),
            };
        // An unknown email costs the same verifications, so timing does not tell it apart.
        let matches = self.passwords.verify(password, stored).await?;
        let account = match account {
            Some(account) if matches => account,
            _ => return Err(Error::WrongCredentials),
        };
        self.tokens_for(account)
    }

    /// A new access token (with the account's role as it is now) and refresh token for a
    /// current refresh token.
    pub(crate) async fn refresh(&self, refresh_token: &str) -> Result<Signed, Error> {
        let grant = self.keys.verify_refresh(refresh_token)?;
        let account = self
            .store
            .account(grant.account_id)
            .store_span("read account")
            .await?
            .ok_or(Error::AccountGone)?;
        if account.session_version != grant.session_version {
            return Err(Error::SessionEnded);
        }
        self.tokens_for(account)
    }

    /// Ends every session of the refresh token's account.
    pub(crate) async fn sign_out(&self, refresh_token: &str) -> Result<(), Error> {
        let grant = self.keys.verify_refresh(refresh_token)?;
        self.store.end_sessions(grant.account_id).store_span("end sessions").await?;
        tracing::info!(account = %grant.account_id, "signed out everywhere");
        Ok(())
    }

    fn tokens_for(&self, account: Account) -> Result<Signed, Error> {
        let caller =
            Caller { account_id: account.id, email: account.email.clone(), role: account.role };
        // Token lifetimes are wall-clock time, not the business clock.
        let now = std::time::SystemTime::now();
        let access = self.signer.issue(&caller, now, self.token_ttl)?;
        let refresh = self.signer.issue_refresh(
            account.id,
            account.session_version,
            now,
            self.refresh_ttl,
        )?;
        Ok(Signed { access, refresh, account })
    }

    /// The caller's account.
    pub(crate) async fn me(&self, caller: &Caller) -> Result<Account, Error> {
        self.store.account(caller.account_id).await?.ok_or(Error::AccountGone)
    }
}
