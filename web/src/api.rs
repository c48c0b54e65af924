//! Every call the app makes, over gRPC-Web to the services directly (and the aggregator for
//! combined views). Errors become [`ApiError`], a message a person can act on.

use std::sync::{Arc, Mutex};

use tonic::{
    Code, Request, Status,
    codegen::{Service, http},
};
use tonic_web_wasm_client::Client;
use videostore_display::query::StorefrontQuery;
use videostore_proto::{
    aggregator::{self as agg, storefront_service_client::StorefrontServiceClient},
    catalogue::{self as cat, catalogue_service_client::CatalogueServiceClient},
    stock::{
        self, account_service_client::AccountServiceClient,
        stock_service_client::StockServiceClient,
    },
};

/// Where the services are, from the page's `videostore-config` meta tag.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct Endpoints {
    /// Catalogue base URL.
    pub(crate) catalogue: String,
    /// Stock base URL.
    pub(crate) stock: String,
    /// Aggregator base URL.
    pub(crate) aggregator: String,
}

impl Endpoints {
    /// Reads the meta tag; without one (under `trunk serve`), the default ports on this host.
    pub(crate) fn from_page() -> Self {
        let document = web_sys::window().and_then(|w| w.document());
        let configured = document
            .and_then(|d| d.query_selector("meta[name=videostore-config]").ok().flatten())
            .and_then(|meta| meta.get_attribute("content"))
            .filter(|content| !content.trim().is_empty())
            .and_then(|content| serde_json::from_str(&content).ok());
        let origin = web_sys::window().and_then(|w| w.location().origin().ok()).unwrap_or_default();
        // An empty address, or a path (`/`), means the page's own origin: behind a proxy that
        // routes every service's paths on one host (the Ingress, `cargo xtask up --front`).
        let at_origin = |url: String| {
            if url.is_empty() || url.starts_with('/') { origin.clone() } else { url }
        };
        let configured = configured.map(|endpoints: Self| Self {
            catalogue: at_origin(endpoints.catalogue),
            stock: at_origin(endpoints.stock),
            aggregator: at_origin(endpoints.aggregator),
        });
        configured.unwrap_or_else(|| {
            let location = web_sys::window().map(|w| w.location());
            let protocol =
                location.as_ref().and_then(|l| l.protocol().ok()).unwrap_or("http:".into());
            let host =
                location.as_ref().and_then(|l| l.hostname().ok()).unwrap_or("localhost".into());
            Self {
                catalogue: format!("{protocol}//{host}:50051"),
                stock: format!("{protocol}//{host}:50052"),
                aggregator: format!("{protocol}//{host}:8080"),
            }
        })
    }
}

/// What went wrong, for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// The gRPC code.
    pub(crate) code: Code,
    /// A message to show.
    pub(crate) message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        let message = match status.code() {
            Code::Unavailable | Code::Unknown
                if status.message().is_empty()
                    || status.message().contains("fetch")
                    || status.message().contains("malformed") =>
            {
                "Service unavailable: the shop cannot be reached right now. Try again in a moment."
                    .to_owned()
            }
            Code::Unavailable => format!("Service unavailable: {}", status.message()),
            Code::Unauthenticated => format!("Signed out: {} Please sign in.", status.message()),
            Code::PermissionDenied => format!("Not allowed: {}", status.message()),
            Code::FailedPrecondition if status.message().contains("sold out") => {
                "Sold out: no copy is available right now.".to_owned()
            }
            Code::DeadlineExceeded => "The shop took too long to answer. Try again.".to_owned(),
            Code::Internal => "Something went wrong on our side. Try again.".to_owned(),
            _ if !status.message().is_empty() => status.message().to_owned(),
            Code::NotFound => "Not found.".to_owned(),
            Code::InvalidArgument => "Please check what you entered.".to_owned(),
            Code::AlreadyExists => "That exists already.".to_owned(),
            _ => format!("The request failed ({:?}). Try again.", status.code()),
        };
        Self { code: status.code(), message }
    }
}

/// A signed-in customer or staff member.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Session {
    /// Bearer token: it lives minutes, and is refreshed before it expires.
    pub(crate) token: String,
    /// When the bearer token expires, in milliseconds since 1970 (as `Date.now()`).
    #[serde(default)]
    pub(crate) expires_at_ms: f64,
    /// The token that gets the next bearer token.
    #[serde(default)]
    pub(crate) refresh_token: String,
    /// Display name.
    pub(crate) name: String,
    /// Email.
    pub(crate) email: String,
    /// Whether the account is staff.
    pub(crate) staff: bool,
}

const SESSION_KEY: &str = "videostore.session";

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

impl Session {
    /// The session a sign-in or refresh answered with.
    fn from_response(response: stock::SignInResponse) -> Self {
        let account = response.account.unwrap_or_default();
        let expires_at_ms = response
            .expire_time
            .map_or(0.0, |time| time.seconds as f64 * 1000.0 + f64::from(time.nanos) / 1e6);
        Self {
            token: response.token,
            expires_at_ms,
            refresh_token: response.refresh_token,
            name: account.name,
            email: account.email,
            staff: account.role == stock::Role::Staff as i32,
        }
    }

    /// The session kept in this browser tab, if any.
    pub(crate) fn load() -> Option<Self> {
        let text = storage()?.get_item(SESSION_KEY).ok()??;
        serde_json::from_str(&text).ok()
    }

    /// Keeps the session for this browser tab.
    pub(crate) fn save(&self) {
        if let (Some(storage), Ok(text)) = (storage(), serde_json::to_string(self)) {
            let _ = storage.set_item(SESSION_KEY, &text);
        }
    }

    /// Forgets it.
    pub(crate) fn clear() {
        if let Some(storage) = storage() {
            let _ = storage.remove_item(SESSION_KEY);
        }
    }
}

/// A gRPC-Web client that starts a trace with each call: a W3C `traceparent` naming a new
/// trace, the call as its first span and sampled, so the services' spans of what this click
/// caused form one trace (when they export traces).
#[derive(Clone)]
pub(crate) struct Traced(Client);

impl Traced {
    fn to(base: &str) -> Self {
        Self(Client::new(base.to_owned()))
    }
}

/// A new trace's `traceparent`: random trace and span ids (from the browser's
/// `crypto.getRandomValues`, through uuid), sampled.
fn traceparent() -> String {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = uuid::Uuid::new_v4().simple().to_string();
    format!("00-{trace}-{}-01", &span[..16])
}

impl Service<http::Request<tonic::body::Body>> for Traced {
    type Response = <Client as Service<http::Request<tonic::body::Body>>>::Response;
    type Error = <Client as Service<http::Request<tonic::body::Body>>>::Error;
    type Future = <Client as Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        if let Ok(value) = http::HeaderValue::from_str(&traceparent()) {
            request.headers_mut().insert("traceparent", value);
        }
        self.0.call(request)
    }
}

/// The gRPC-Web clients.
#[derive(Clone)]
pub(crate) struct Api {
    endpoints: Endpoints,
    session: Arc<Mutex<Option<Session>>>,
    /// The page's view of the session, told when a refresh changes or ends it.
    watcher: Arc<Mutex<Option<leptos::prelude::RwSignal<Option<Session>>>>>,
}

/// How long before its expiry a bearer token is refreshed.
const REFRESH_AHEAD_MS: f64 = 60_000.0;

fn authed<T>(message: T, session: &Option<Session>) -> Result<Request<T>, ApiError> {
    let Some(session) = session else {
        return Err(ApiError {
            code: Code::Unauthenticated,
            message: "Signed out: please sign in first.".into(),
        });
    };
    let mut request = Request::new(message);
    let value = format!("Bearer {}", session.token).parse().map_err(|_| ApiError {
        code: Code::Unauthenticated,
        message: "Signed out: please sign in again.".into(),
    })?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

impl Api {
    /// Clients for `endpoints`.
    pub(crate) fn new(endpoints: Endpoints) -> Self {
        Self {
            endpoints,
            session: Arc::new(Mutex::new(Session::load())),
            watcher: Arc::new(Mutex::new(None)),
        }
    }

    /// Tells `signal` whenever a refresh changes the session or ends it.
    pub(crate) fn watch_session(&self, signal: leptos::prelude::RwSignal<Option<Session>>) {
        *self.watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(signal);
    }

    /// The session for a call: its bearer token refreshed first if it expires within a minute.
    /// A session that cannot be refreshed any more (signed out elsewhere, or too old) ends.
    async fn session_for_call(&self) -> Option<Session> {
        let session = self.current_session()?;
        if session.expires_at_ms - js_sys::Date::now() > REFRESH_AHEAD_MS {
            return Some(session);
        }
        let refreshed = self
            .accounts()
            .refresh(stock::RefreshRequest { refresh_token: session.refresh_token.clone() })
            .await;
        let next = match refreshed {
            Ok(response) => Some(Session::from_response(response.into_inner())),
            // Not now (the service is down): the call goes with the token it has.
            Err(status) if status.code() != Code::Unauthenticated => return Some(session),
            Err(_) => None,
        };
        match &next {
            Some(session) => session.save(),
            None => Session::clear(),
        }
        self.set_session(next.clone());
        if let Some(signal) = *self.watcher.lock().unwrap_or_else(|e| e.into_inner()) {
            use leptos::prelude::Set;
            signal.set(next.clone());
        }
        next
    }

    /// Ends the session everywhere (best effort: the tab forgets it whatever the answer).
    pub(crate) async fn sign_out(&self) {
        if let Some(session) = self.current_session() {
            let request = stock::SignOutRequest { refresh_token: session.refresh_token };
            let _ = self.accounts().sign_out(request).await;
        }
    }

    /// Uses `session` for the calls that need one.
    pub(crate) fn set_session(&self, session: Option<Session>) {
        *self.session.lock().unwrap_or_else(|e| e.into_inner()) = session;
    }

    /// The session in use.
    pub(crate) fn current_session(&self) -> Option<Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn catalogue(&self) -> CatalogueServiceClient<Traced> {
        CatalogueServiceClient::new(Traced::to(&self.endpoints.catalogue))
    }

    fn stock(&self) -> StockServiceClient<Traced> {
        StockServiceClient::new(Traced::to(&self.endpoints.stock))
    }

    fn accounts(&self) -> AccountServiceClient<Traced> {
        AccountServiceClient::new(Traced::to(&self.endpoints.stock))
    }

    fn storefront(&self) -> StorefrontServiceClient<Traced> {
        StorefrontServiceClient::new(Traced::to(&self.endpoints.aggregator))
    }

    /// A page of the store front, films with their stock.
    pub(crate) async fn list_storefront(
        &self,
        query: &StorefrontQuery,
        page_size: i32,
    ) -> Result<agg::ListStorefrontResponse, ApiError> {
        // The URL's order was checked when it was read; anything else is by title.
        let order =
            videostore_display::order::parse(&query.order).unwrap_or(cat::MovieOrder::Title);
        let request = agg::ListStorefrontRequest {
            filter: Some(cat::MovieFilter {
                query: query.text.clone(),
                genre: query.genre.clone(),
                min_year: query.from,
                max_year: query.to,
            }),
            order_by: order as i32,
            descending: query.descending,
            page_size,
            page_token: query.page.clone(),
        };
        Ok(self.storefront().list_storefront(request).await?.into_inner())
    }

    /// A film page.
    pub(crate) async fn movie_page(&self, movie_id: i64) -> Result<agg::MoviePage, ApiError> {
        let request = agg::GetMoviePageRequest { movie_id, related_limit: 6 };
        Ok(self.storefront().get_movie_page(request).await?.into_inner())
    }

    /// Films by id (for titles in lists of rentals).
    pub(crate) async fn movies(&self, ids: Vec<i64>) -> Result<Vec<cat::Movie>, ApiError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .catalogue()
            .batch_get_movies(cat::BatchGetMoviesRequest { ids })
            .await?
            .into_inner()
            .movies)
    }

    /// Every genre.
    pub(crate) async fn genres(&self) -> Result<Vec<cat::Genre>, ApiError> {
        Ok(self.catalogue().list_genres(cat::ListGenresRequest {}).await?.into_inner().genres)
    }

    /// Starts a customer account: a link to finish it is mailed to the address.
    pub(crate) async fn register(
        &self,
        email: String,
        name: String,
        password: String,
    ) -> Result<stock::RegisterResponse, ApiError> {
        Ok(self
            .accounts()
            .register(stock::RegisterRequest { email, name, password })
            .await?
            .into_inner())
    }

    /// Finishes a registration with the mailed code; the new account is signed in.
    pub(crate) async fn confirm_email(
        &self,
        code: String,
        password: String,
    ) -> Result<Session, ApiError> {
        let request = stock::ConfirmEmailRequest { code, password };
        let response = self.accounts().confirm_email(request).await?.into_inner();
        Ok(Session::from_response(response))
    }

    /// Signs in.
    pub(crate) async fn sign_in(
        &self,
        email: String,
        password: String,
    ) -> Result<Session, ApiError> {
        let response =
            self.accounts().sign_in(stock::SignInRequest { email, password }).await?.into_inner();
        Ok(Session::from_response(response))
    }

    /// Rents a copy.
    pub(crate) async fn rent(
        &self,
        movie_id: i64,
        days: i32,
        request_id: String,
    ) -> Result<stock::Rental, ApiError> {
        let request = authed(
            stock::RentRequest { movie_id, days, request_id },
            &self.session_for_call().await,
        )?;
        Ok(self.stock().rent(request).await?.into_inner())
    }

    /// Buys a copy.
    pub(crate) async fn buy(
        &self,
        movie_id: i64,
        request_id: String,
    ) -> Result<stock::Purchase, ApiError> {
        let request = authed(
            stock::PurchaseRequest { movie_id, request_id },
            &self.session_for_call().await,
        )?;
        Ok(self.stock().purchase(request).await?.into_inner())
    }

    /// Returns a rental.
    pub(crate) async fn return_rental(&self, rental_id: i64) -> Result<stock::Rental, ApiError> {
        let request = authed(stock::ReturnRequest { rental_id }, &self.session_for_call().await)?;
        Ok(self.stock().r#return(request).await?.into_inner())
    }

    /// The signed-in customer's rentals (streamed; collected here).
    pub(crate) async fn my_rentals(&self) -> Result<Vec<stock::Rental>, ApiError> {
        let request = authed(
            stock::ListMyRentalsRequest { include_returned: true },
            &self.session_for_call().await,
        )?;
        let mut stream = self.stock().list_my_rentals(request).await?.into_inner();
        let mut rentals = Vec::new();
        while let Some(rental) = stream.message().await? {
            rentals.push(rental);
        }
        Ok(rentals)
    }

    /// Staff: adds a film.
    pub(crate) async fn create_movie(&self, movie: cat::Movie) -> Result<cat::Movie, ApiError> {
        let request = authed(
            cat::CreateMovieRequest {
                movie: Some(movie),
                request_id: uuid::Uuid::new_v4().to_string(),
            },
            &self.session_for_call().await,
        )?;
        Ok(self.catalogue().create_movie(request).await?.into_inner())
    }

    /// One film.
    pub(crate) async fn movie(&self, id: i64) -> Result<cat::Movie, ApiError> {
        Ok(self.catalogue().get_movie(cat::GetMovieRequest { id }).await?.into_inner())
    }

    /// Staff: changes the named fields of a film (others, like its external key, stay).
    pub(crate) async fn update_movie(
        &self,
        movie: cat::Movie,
        fields: &[&str],
    ) -> Result<cat::Movie, ApiError> {
        let paths = fields.iter().map(|field| (*field).to_owned()).collect();
        let update_mask = Some(prost_types::FieldMask { paths });
        let request = authed(
            cat::UpdateMovieRequest { movie: Some(movie), update_mask },
            &self.session_for_call().await,
        )?;
        Ok(self.catalogue().update_movie(request).await?.into_inner())
    }

    /// Staff: sets copies owned and prices.
    pub(crate) async fn set_inventory(
        &self,
        request: stock::SetInventoryRequest,
    ) -> Result<stock::Availability, ApiError> {
        let request = authed(request, &self.session_for_call().await)?;
        Ok(self.stock().set_inventory(request).await?.into_inner())
    }

    /// The stock of one film.
    pub(crate) async fn availability(
        &self,
        movie_id: i64,
    ) -> Result<stock::Availability, ApiError> {
        Ok(self
            .stock()
            .get_availability(stock::GetAvailabilityRequest { movie_id })
            .await?
            .into_inner())
    }

    /// Opens the live availability stream for `movie_ids`, resuming from the versions already
    /// known of some of them (the server then sends what changed since, not the current state).
    pub(crate) async fn watch(
        &self,
        movie_ids: Vec<i64>,
        resume_from: Vec<stock::FilmVersion>,
    ) -> Result<tonic::Streaming<stock::WatchAvailabilityResponse>, ApiError> {
        Ok(self
            .stock()
            .watch_availability(stock::WatchAvailabilityRequest { movie_ids, resume_from })
            .await?
            .into_inner())
    }
}
