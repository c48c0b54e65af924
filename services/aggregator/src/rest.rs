//! The REST/JSON facade, on the same port as gRPC:
//!
//! - `GET /api/movies?q=&genre=&min_year=&max_year=&order=title|year|rating|id&desc=true&page_size=&page_token=`
//! - `GET /api/movies/{id}`
//! - `GET /api/movies/export?q=&genre=&min_year=&max_year=&order=&desc=`: every matching film as
//!   one JSON array, streamed from the catalogue batch by batch (the aggregator holds one batch
//!   at a time, whatever the size of the catalogue). A failure after the first byte cuts the
//!   response short, so a client never mistakes a partial array for the whole.
//!
//! Errors come back as `{"error": {"code": "NOT_FOUND", "message": "…"}}` with the matching HTTP
//! status.

use std::time::Duration;

use axum::body::Bytes;
use axum::{
    Json, Router,
    extract::{Path, Query, State, rejection::QueryRejection},
    response::{IntoResponse, Response},
    routing::get,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use videostore_display::{order, rating};
use videostore_kit::error::Invalid;
use videostore_proto::{aggregator as pb, catalogue, stock};

use crate::{error::Error, json_export, storefront::Storefront};

#[derive(Clone)]
struct Rest {
    storefront: Storefront,
    deadline: Duration,
}

/// The REST routes.
pub(crate) fn router(storefront: Storefront, deadline: Duration) -> Router {
    Router::new()
        .route("/api/movies", get(list_movies))
        .route("/api/movies/export", get(export_movies))
        .route("/api/movies/{id}", get(get_movie))
        // A span per request, continuing the caller's `traceparent`.
        .route_layer(axum::middleware::from_fn(videostore_kit::trace::http_requests))
        .with_state(Rest { storefront, deadline })
}

/// Query parameters of `GET /api/movies`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListParams {
    q: String,
    genre: String,
    min_year: i32,
    max_year: i32,
    order: String,
    desc: bool,
    page_size: i32,
    page_token: String,
}

/// Query parameters of `GET /api/movies/export`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ExportParams {
    q: String,
    genre: String,
    min_year: i32,
    max_year: i32,
    order: String,
    desc: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PageParams {
    related: i32,
}

/// A price.
#[derive(Debug, Serialize)]
pub(crate) struct MoneyJson {
    currency: String,
    minor_units: i64,
}

/// A film's stock.
#[derive(Debug, Serialize)]
pub(crate) struct AvailabilityJson {
    known: bool,
    stocked: bool,
    copies_owned: i32,
    copies_available: i32,
    rental_price_per_day: Option<MoneyJson>,
    purchase_price: Option<MoneyJson>,
}

/// A film.
#[derive(Debug, Serialize)]
pub(crate) struct MovieJson {
    id: i64,
    title: String,
    release_year: i32,
    genres: Vec<String>,
    runtime_minutes: i32,
    director: String,
    rating: &'static str,
    synopsis: String,
    audience_rating: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    availability: Option<AvailabilityJson>,
}

#[derive(Debug, Serialize)]
struct ListJson {
    movies: Vec<MovieJson>,
    next_page_token: String,
    total_size: i64,
}

#[derive(Debug, Serialize)]
struct PageJson {
    #[serde(flatten)]
    movie: MovieJson,
    related: Vec<MovieJson>,
}

fn money_json(money: Option<stock::Money>) -> Option<MoneyJson> {
    money.map(|m| MoneyJson { currency: m.currency_code, minor_units: m.minor_units })
}

fn availability_json(info: Option<pb::StockInfo>) -> AvailabilityJson {
    match info.and_then(|info| info.availability) {
        Some(a) => AvailabilityJson {
            known: true,
            stocked: a.stocked,
            copies_owned: a.copies_owned,
            copies_available: a.copies_available,
            rental_price_per_day: money_json(a.rental_price_per_day),
            purchase_price: money_json(a.purchase_price),
        },
        None => AvailabilityJson {
            known: false,
            stocked: false,
            copies_owned: 0,
            copies_available: 0,
            rental_price_per_day: None,
            purchase_price: None,
        },
    }
}

pub(crate) fn movie_json(movie: catalogue::Movie, stock: Option<AvailabilityJson>) -> MovieJson {
    MovieJson {
        id: movie.id,
        title: movie.title,
        release_year: movie.release_year,
        genres: movie.genres,
        runtime_minutes: movie.runtime_minutes,
        director: movie.director,
        rating: rating::label(movie.rating),
        synopsis: movie.synopsis,
        audience_rating: movie.audience_rating,
        availability: stock,
    }
}

/// The listing order named by `order=`: title (the default), year, rating or id.
fn order_by(name: &str) -> Result<i32, Invalid> {
    order::parse(name)
        .map(|order| order as i32)
        .ok_or_else(|| Invalid(format!("order {name:?} is not one of {}", order::NAMES.join(", "))))
}

/// The query string, or INVALID_ARGUMENT saying what is wrong with it (a value that does not
/// parse is refused, never taken as its default).
fn query_string<T>(params: Result<Query<T>, QueryRejection>) -> Result<T, Invalid> {
    let Query(params) = params
        .map_err(|rejection| Invalid(format!("bad query string: {}", rejection.body_text())))?;
    Ok(params)
}

/// The catalogue filter the `q`, `genre`, `min_year` and `max_year` parameters ask for.
fn filter(
    q: String,
    genre: String,
    min_year: i32,
    max_year: i32,
) -> Option<catalogue::MovieFilter> {
    Some(catalogue::MovieFilter { query: q, genre, min_year, max_year })
}

async fn list_movies(
    State(rest): State<Rest>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<ListJson>, Error> {
    let params = query_string(params)?;
    let request = pb::ListStorefrontRequest {
        filter: filter(params.q, params.genre, params.min_year, params.max_year),
        order_by: order_by(&params.order)?,
        descending: params.desc,
        page_size: params.page_size,
        page_token: params.page_token,
    };
    let page = rest.storefront.list(request, rest.deadline).await?;
    Ok(Json(ListJson {
        movies: page
            .items
            .into_iter()
            .filter_map(|item| {
                let stock = availability_json(item.stock);
                item.movie.map(|movie| movie_json(movie, Some(stock)))
            })
            .collect(),
        next_page_token: page.next_page_token,
        total_size: page.total_size,
    }))
}

async fn export_movies(
    State(rest): State<Rest>,
    params: Result<Query<ExportParams>, QueryRejection>,
) -> Result<Response, Error> {
    let params = query_string(params)?;
    let place = rest.storefront.export_place()?;
    let request = catalogue::StreamMoviesRequest {
        filter: filter(params.q, params.genre, params.min_year, params.max_year),
        order_by: order_by(&params.order)?,
        descending: params.desc,
        batch_size: 5000,
    };
    let mut batches = rest.storefront.stream_movie_bytes(request).await?;
    // The first batch decides the status: a bad filter or a catalogue that is down is an error
    // response, not a broken body.
    let first_batch = batches.message().await.map_err(Error::upstream("catalogue"))?;
    // The body is written by a task of its own, a batch or two ahead of the client: one that
    // takes nothing for `EXPORT_STALL` is cut off, and its stream to the catalogue and its
    // place among the exports are let go.
    let (sender, body) = videostore_kit::paced::channel(2, videostore_kit::paced::EXPORT_STALL);
    tokio::spawn(async move {
        let _place = place;
        let chunks = json_array_body(first_batch, batches);
        futures::pin_mut!(chunks);
        while let Some(chunk) = chunks.next().await {
            if !sender.send(chunk).await {
                return; // The client has gone, or stalled.
            }
        }
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(body)),
    )
        .into_response())
}

/// The JSON array, batch by batch, each written from the catalogue's bytes; an error mid-way
/// ends the body with an error, which cuts the HTTP response short.
fn json_array_body(
    first_batch: Option<Bytes>,
    batches: tonic::Streaming<Bytes>,
) -> impl futures::Stream<Item = Result<Bytes, Error>> + Send + 'static {
    let state = (first_batch, Some(batches), true);
    futures::stream::unfold(state, |(pending, batches, mut first)| async move {
        let mut batches = batches?;
        let batch = match pending {
            Some(batch) => Some(batch),
            None => match batches.message().await {
                Ok(batch) => batch,
                Err(status) => {
                    tracing::warn!(%status, "film export broke off");
                    return Some((Err(Error::upstream("catalogue")(status)), (None, None, first)));
                }
            },
        };
        match batch {
            Some(batch) => {
                // JSON is about 1.4 times the protobuf of a film.
                let mut chunk = Vec::with_capacity(batch.len() * 3 / 2);
                match json_export::films_to_json(&batch, &mut first, &mut chunk) {
                    Ok(_) => Some((Ok(chunk.into()), (None, Some(batches), first))),
                    Err(malformed) => {
                        tracing::error!(%malformed, "the catalogue's film stream does not decode");
                        Some((Err(Error::internal(malformed)), (None, None, first)))
                    }
                }
            }
            // The end: close the array (an empty export is `[]`).
            None => {
                let close: &'static [u8] = if first { b"[]" } else { b"]" };
                Some((Ok(Bytes::from_static(close)), (None, None, false)))
            }
        }
    })
}

async fn get_movie(
    State(rest): State<Rest>,
    Path(id): Path<String>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<PageJson>, Error> {
    let id: i64 =
        id.parse().map_err(|_| Invalid(format!("{id:?} is not a film id (a positive number)")))?;
    let related = query_string(params)?.related;
    let request = pb::GetMoviePageRequest { movie_id: id, related_limit: related };
    let page = rest.storefront.movie_page(request, rest.deadline).await?;
    let movie =
        page.movie.ok_or_else(|| Error::internal("the catalogue answered without the film"))?;
    Ok(Json(PageJson {
        movie: movie_json(movie, Some(availability_json(page.stock))),
        related: page.related.into_iter().map(|movie| movie_json(movie, None)).collect(),
    }))
}
