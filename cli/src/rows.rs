//! Reading films from a JSON array or a CSV file for `movies import`.
//!
//! A row that cannot even be read (a year that is not a number) is rejected here with its row
//! number; the service judges the rest.

use std::path::Path;

use anyhow::Context;
use serde_json::Value;
use videostore_proto::catalogue::{Movie, MpaaRating};

/// One row of the file: its 1-based number and either a film or why it could not be read.
pub type Row = (usize, Result<Movie, String>);

/// Reads every row of `path`: `.csv` files as CSV with a header row, anything else as JSON.
pub fn read(path: &Path) -> anyhow::Result<Vec<Row>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let is_csv = path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("csv"));
    parse(&text, is_csv)
}

/// Reads every row of a file's text: CSV with a header row when `is_csv`, else a JSON array.
pub fn parse(text: &str, is_csv: bool) -> anyhow::Result<Vec<Row>> {
    if is_csv { read_csv(text) } else { read_json(text) }
}

fn read_json(text: &str) -> anyhow::Result<Vec<Row>> {
    let value: Value = serde_json::from_str(text).context("the file is not valid JSON")?;
    let Value::Array(items) = value else {
        anyhow::bail!("the JSON file must hold an array of films");
    };
    Ok(items.iter().enumerate().map(|(index, item)| (index + 1, movie_from_json(item))).collect())
}

fn read_csv(text: &str) -> anyhow::Result<Vec<Row>> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
    let headers = reader.headers().context("reading the CSV header")?.clone();
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let row = match record {
            Ok(record) => {
                let mut object = serde_json::Map::new();
                for (name, value) in headers.iter().zip(record.iter()) {
                    object.insert(name.trim().to_owned(), Value::String(value.to_owned()));
                }
                movie_from_json(&Value::Object(object))
            }
            Err(error) => Err(format!("unreadable CSV row: {error}")),
        };
        rows.push((index + 1, row));
    }
    Ok(rows)
}

fn text(object: &serde_json::Map<String, Value>, field: &str) -> Result<String, String> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(format!("{field} must be text")),
    }
}

fn number(object: &serde_json::Map<String, Value>, field: &str) -> Result<f64, String> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(0.0),
        Some(Value::Number(n)) => n.as_f64().ok_or_else(|| format!("{field} is not a number")),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(0.0),
        Some(Value::String(s)) => {
            s.trim().parse().map_err(|_| format!("{field} {s:?} is not a number"))
        }
        Some(_) => Err(format!("{field} must be a number")),
    }
}

fn integer(object: &serde_json::Map<String, Value>, field: &str) -> Result<i32, String> {
    let value = number(object, field)?;
    if value.fract() != 0.0 || value < f64::from(i32::MIN) || value > f64::from(i32::MAX) {
        return Err(format!("{field} {value} is not a whole number"));
    }
    Ok(value as i32)
}

/// Parses an MPAA label ("PG-13") or its enum number.
pub fn rating(label: &str) -> Result<i32, String> {
    let normalized = label.trim().to_uppercase().replace(['-', '_', ' '], "");
    Ok(match normalized.as_str() {
        "" | "NR" | "NOTRATED" | "UNRATED" | "0" => MpaaRating::Unspecified,
        "G" | "1" => MpaaRating::G,
        "PG" | "2" => MpaaRating::Pg,
        "PG13" | "3" => MpaaRating::Pg13,
        "R" | "4" => MpaaRating::R,
        "NC17" | "5" => MpaaRating::Nc17,
        _ => {
            return Err(format!("rating {label:?} is not one of G, PG, PG-13, R, NC-17"));
        }
    } as i32)
}

fn movie_from_json(item: &Value) -> Result<Movie, String> {
    let Value::Object(object) = item else {
        return Err("each film must be a JSON object".into());
    };
    let genres = match object.get("genres") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|g| g.as_str().map(str::to_owned).ok_or_else(|| "genres must be text".to_owned()))
            .collect::<Result<_, _>>()?,
        Some(Value::String(joined)) => joined
            .split(['|', ';'])
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(_) => return Err("genres must be a list or text separated by |".into()),
    };
    Ok(Movie {
        title: text(object, "title")?,
        release_year: integer(object, "release_year")?,
        genres,
        runtime_minutes: integer(object, "runtime_minutes")?,
        director: text(object, "director")?,
        rating: rating(&text(object, "rating")?)?,
        synopsis: text(object, "synopsis")?,
        audience_rating: number(object, "audience_rating")? as f32,
        external_key: text(object, "external_key")?,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_csv_rows_read_the_same_film() {
        let json = r#"[{"title":"Heat","release_year":1995,"genres":["Crime","Drama"],"rating":"R","audience_rating":8.3,"external_key":"k1"},
                       {"title":"Bad","release_year":"soon"}]"#;
        let rows = read_json(json).unwrap();
        let heat = rows[0].1.as_ref().unwrap();
        assert_eq!(
            (heat.title.as_str(), heat.release_year, heat.rating),
            ("Heat", 1995, MpaaRating::R as i32)
        );
        assert_eq!(heat.genres, ["Crime", "Drama"]);
        assert!(rows[1].1.as_ref().unwrap_err().contains("release_year"));

        let csv = "title,release_year,genres,rating,audience_rating,external_key\nHeat,1995,Crime|Drama,R,8.3,k1\n";
        let rows = read_csv(csv).unwrap();
        assert_eq!(rows[0].1.as_ref().unwrap(), heat);
    }

    #[test]
    fn ratings_parse_from_labels() {
        assert_eq!(rating("pg-13"), Ok(MpaaRating::Pg13 as i32));
        assert_eq!(rating(""), Ok(0));
        // The label's own name, as public film datasets spell it, reads as unrated like NR.
        assert_eq!(rating("Not Rated"), Ok(0));
        assert_eq!(rating("NR"), Ok(0));
        assert!(rating("X").is_err());
    }
}
