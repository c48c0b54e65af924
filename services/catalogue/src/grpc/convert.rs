//! Between the wire's messages and the catalogue's domain types, checking what comes in.

use videostore_proto::catalogue as pb;

use crate::domain::{Filter, Invalid, Movie, MovieFields, Order, RawMovie};

/// Film fields as sent, not yet checked. (A trait impl, so other crates, the fuzz checks
/// among them, convert as the service does.)
impl From<&pb::Movie> for RawMovie {
    fn from(movie: &pb::Movie) -> Self {
        RawMovie {
            title: movie.title.clone(),
            release_year: movie.release_year,
            genres: movie.genres.clone(),
            runtime_minutes: movie.runtime_minutes,
            director: movie.director.clone(),
            rating: movie.rating,
            synopsis: movie.synopsis.clone(),
            audience_rating: movie.audience_rating,
            external_key: movie.external_key.clone(),
        }
    }
}

/// A film's current fields, as if sent again (for merging an update into).
impl From<&MovieFields> for RawMovie {
    fn from(fields: &MovieFields) -> Self {
        RawMovie {
            title: fields.title.clone(),
            release_year: fields.release_year,
            genres: fields.genres.clone(),
            runtime_minutes: fields.runtime_minutes,
            director: fields.director.clone(),
            rating: fields.rating.0,
            synopsis: fields.synopsis.clone(),
            audience_rating: fields.audience_rating,
            external_key: fields.external_key.clone().unwrap_or_default(),
        }
    }
}

/// A stored film, as the wire carries it.
pub(crate) fn movie_to_proto(movie: Movie) -> pb::Movie {
    let Movie { id, fields, update_time } = movie;
    pb::Movie {
        id: id.get(),
        title: fields.title,
        release_year: fields.release_year,
        genres: fields.genres,
        runtime_minutes: fields.runtime_minutes,
        director: fields.director,
        rating: fields.rating.0,
        synopsis: fields.synopsis,
        audience_rating: fields.audience_rating,
        external_key: fields.external_key.unwrap_or_default(),
        update_time: Some(update_time.into()),
    }
}

/// A listing's order; unspecified is by title.
pub(crate) fn order_from_proto(order: i32) -> Result<Order, Invalid> {
    match pb::MovieOrder::try_from(order) {
        Ok(pb::MovieOrder::Unspecified | pb::MovieOrder::Title) => Ok(Order::Title),
        Ok(pb::MovieOrder::Year) => Ok(Order::Year),
        Ok(pb::MovieOrder::Rating) => Ok(Order::Rating),
        Ok(pb::MovieOrder::Id) => Ok(Order::Id),
        Err(_) => Err(Invalid(format!("order_by {order} is not a known order"))),
    }
}

/// A listing's filter; none is every film.
pub(crate) fn filter_from_proto(filter: Option<&pb::MovieFilter>) -> Result<Filter, Invalid> {
    let default = pb::MovieFilter::default();
    let filter = filter.unwrap_or(&default);
    Filter::new(&filter.query, &filter.genre, filter.min_year, filter.max_year)
}

/// A count from a request: 0 is `default`, more than `max` is refused.
pub(crate) fn bounded(
    value: i32,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, Invalid> {
    match value {
        0 => Ok(default),
        v if v < 0 => Err(Invalid(format!("{name} must not be negative"))),
        v if v as usize > max => Err(Invalid(format!("{name} {v} is over the limit of {max}"))),
        v => Ok(v as usize),
    }
}

/// Checks an update mask: each path must name a writable field of `Movie`.
pub(crate) fn check_mask(paths: &[String]) -> Result<(), Invalid> {
    apply_mask(RawMovie::default(), &pb::Movie::default(), paths).map(drop)
}

/// The fields of `current` with the masked fields of `patch` in their place (every field when
/// the mask is empty).
pub(crate) fn merge(
    current: &MovieFields,
    patch: &pb::Movie,
    paths: &[String],
) -> Result<RawMovie, Invalid> {
    apply_mask(RawMovie::from(current), patch, paths)
}

fn apply_mask(current: RawMovie, patch: &pb::Movie, paths: &[String]) -> Result<RawMovie, Invalid> {
    let incoming = RawMovie::from(patch);
    if paths.is_empty() {
        return Ok(incoming);
    }
    let mut merged = current;
    for path in paths {
        match path.as_str() {
            "title" => merged.title = incoming.title.clone(),
            "release_year" => merged.release_year = incoming.release_year,
            "genres" => merged.genres = incoming.genres.clone(),
            "runtime_minutes" => merged.runtime_minutes = incoming.runtime_minutes,
            "director" => merged.director = incoming.director.clone(),
            "rating" => merged.rating = incoming.rating,
            "synopsis" => merged.synopsis = incoming.synopsis.clone(),
            "audience_rating" => merged.audience_rating = incoming.audience_rating,
            "external_key" => merged.external_key = incoming.external_key.clone(),
            "id" | "update_time" => {
                return Err(Invalid(format!("update_mask path {path:?} is output only")));
            }
            other => {
                return Err(Invalid(format!("update_mask path {other:?} is not a field of Movie")));
            }
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Rating;

    #[test]
    fn update_mask_replaces_only_masked_fields_and_rejects_unknown_and_output_only_paths() {
        let patch = pb::Movie { title: "New".into(), ..Default::default() };
        let current = MovieFields {
            title: "Old".into(),
            release_year: 1999,
            genres: vec![],
            runtime_minutes: 0,
            director: String::new(),
            rating: Rating(0),
            synopsis: String::new(),
            audience_rating: 0.0,
            external_key: None,
        };
        let merged = merge(&current, &patch, &["title".into()]).unwrap();
        assert_eq!((merged.title.as_str(), merged.release_year), ("New", 1999));
        assert!(check_mask(&["id".into()]).is_err());
        assert!(check_mask(&["colour".into()]).is_err());
        assert!(check_mask(&["title".into(), "genres".into()]).is_ok());
    }
}
