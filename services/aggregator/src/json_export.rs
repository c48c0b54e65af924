//! The REST export's JSON, written straight from the catalogue's protobuf bytes.
//!
//! Decoding every film into a `Movie` (a `String` per text field) only to serialise it again
//! was most of the aggregator's CPU in a bulk export. Here each `StreamMoviesResponse` is read
//! in place: a film's text fields are slices of the message, checked to be UTF-8 and escaped
//! into the output. The JSON is byte for byte what `serde_json` writes for the REST facade's
//! film (`MovieJson` without availability; tested against it), so the endpoint's answer did not
//! change, only its cost.

use std::fmt;

use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

use videostore_display::rating;

/// The field numbers of `Movie` (videostore.catalogue.v1) this writer reads; a test checks them
/// against the compiled descriptor, so a field added to `Movie` must be shown or left out here.
mod field {
    pub(super) const ID: u32 = 1;
    pub(super) const TITLE: u32 = 2;
    pub(super) const RELEASE_YEAR: u32 = 3;
    pub(super) const GENRES: u32 = 4;
    pub(super) const RUNTIME_MINUTES: u32 = 5;
    pub(super) const DIRECTOR: u32 = 6;
    pub(super) const RATING: u32 = 7;
    pub(super) const SYNOPSIS: u32 = 8;
    pub(super) const AUDIENCE_RATING: u32 = 9;
}

/// The fields of `Movie` the REST facade's film shows, with their names in `Movie` and in the
/// JSON object (the same).
#[cfg(test)]
const SHOWN: [(u32, &str); 9] = [
    (field::ID, "id"),
    (field::TITLE, "title"),
    (field::RELEASE_YEAR, "release_year"),
    (field::GENRES, "genres"),
    (field::RUNTIME_MINUTES, "runtime_minutes"),
    (field::DIRECTOR, "director"),
    (field::RATING, "rating"),
    (field::SYNOPSIS, "synopsis"),
    (field::AUDIENCE_RATING, "audience_rating"),
];

/// The fields of `Movie` left out on purpose: an importer's key and the time of the last edit
/// are not part of the store front's film. Skipped like unknown fields.
#[cfg(test)]
const LEFT_OUT: [(u32, &str); 2] = [(10, "external_key"), (11, "update_time")];

/// The catalogue sent something that is not a `StreamMoviesResponse`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed(&'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed StreamMoviesResponse: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

/// Appends the films of one encoded `StreamMoviesResponse` to a JSON array being written, each
/// preceded by `[` (the very first film of the array) or `,`. Returns how many films it wrote.
pub(crate) fn films_to_json(
    message: &[u8],
    first: &mut bool,
    out: &mut Vec<u8>,
) -> Result<usize, Malformed> {
    let mut reader = Reader(message);
    let mut genres = Vec::new();
    let mut films = 0;
    while !reader.0.is_empty() {
        let (field, wire_type) = reader.key()?;
        if field != 1 {
            reader.skip(field, wire_type)?;
            continue;
        }
        expect(wire_type, WireType::LengthDelimited)?;
        let film = Film::read(reader.bytes()?, &mut genres)?;
        out.push(if std::mem::take(first) { b'[' } else { b',' });
        film.write(out);
        films += 1;
    }
    Ok(films)
}

/// The fields of a `Movie` the JSON shows, borrowed from the message.
#[derive(Default)]
struct Film<'a, 'g> {
    id: i64,
    title: &'a str,
    release_year: i32,
    genres: &'g [&'a str],
    runtime_minutes: i32,
    director: &'a str,
    rating: i32,
    synopsis: &'a str,
    audience_rating: f32,
}

impl<'a, 'g> Film<'a, 'g> {
    /// Reads one encoded `Movie`; `genres` is scratch space, reused from film to film. As in
    /// protobuf, a field given twice keeps its last value, and unknown fields are skipped.
    fn read(bytes: &'a [u8], genres: &'g mut Vec<&'a str>) -> Result<Self, Malformed> {
        genres.clear();
        let mut film = Film::default();
        let mut reader = Reader(bytes);
        while !reader.0.is_empty() {
            let (field, wire_type) = reader.key()?;
            // int32 and enum values are sign-extended varints; truncating is protobuf's rule.
            match field {
                field::ID => film.id = reader.varint_field(wire_type)? as i64,
                field::TITLE => film.title = reader.text_field(wire_type)?,
                field::RELEASE_YEAR => film.release_year = reader.varint_field(wire_type)? as i32,
                field::GENRES => genres.push(reader.text_field(wire_type)?),
                field::RUNTIME_MINUTES => {
                    film.runtime_minutes = reader.varint_field(wire_type)? as i32;
                }
                field::DIRECTOR => film.director = reader.text_field(wire_type)?,
                field::RATING => film.rating = reader.varint_field(wire_type)? as i32,
                field::SYNOPSIS => film.synopsis = reader.text_field(wire_type)?,
                field::AUDIENCE_RATING => {
                    expect(wire_type, WireType::ThirtyTwoBit)?;
                    film.audience_rating = f32::from_le_bytes(reader.take()?);
                }
                _ => reader.skip(field, wire_type)?,
            }
        }
        film.genres = genres;
        Ok(film)
    }

    /// The film as the REST facade's JSON object.
    fn write(&self, out: &mut Vec<u8>) {
        let mut numbers = itoa::Buffer::new();
        out.extend_from_slice(b"{\"id\":");
        out.extend_from_slice(numbers.format(self.id).as_bytes());
        out.extend_from_slice(b",\"title\":");
        string(self.title, out);
        out.extend_from_slice(b",\"release_year\":");
        out.extend_from_slice(numbers.format(self.release_year).as_bytes());
        out.extend_from_slice(b",\"genres\":[");
        for (index, genre) in self.genres.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            string(genre, out);
        }
        out.extend_from_slice(b"],\"runtime_minutes\":");
        out.extend_from_slice(numbers.format(self.runtime_minutes).as_bytes());
        out.extend_from_slice(b",\"director\":");
        string(self.director, out);
        out.extend_from_slice(b",\"rating\":");
        string(rating::label(self.rating), out);
        out.extend_from_slice(b",\"synopsis\":");
        string(self.synopsis, out);
        out.extend_from_slice(b",\"audience_rating\":");
        // serde_json's rule: the shortest round-tripping form, `null` when not finite.
        if self.audience_rating.is_finite() {
            out.extend_from_slice(
                ryu::Buffer::new().format_finite(self.audience_rating).as_bytes(),
            );
        } else {
            out.extend_from_slice(b"null");
        }
        out.push(b'}');
    }
}

/// A JSON string, escaped as serde_json escapes it: `"` and `\`, and control characters as
/// `\b \t \n \f \r` or `\u00XX`; everything else (all of Unicode) as it is.
fn string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = text.as_bytes();
    // Nearly every film's text needs no escape: one pass without branches (the compiler makes
    // it a vector loop) decides, and the text is copied whole.
    let plain = !bytes
        .iter()
        .fold(false, |any, &byte| any | (byte < 0x20) | (byte == b'"') | (byte == b'\\'));
    if plain {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..at]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
                start = at + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..at]);
        out.extend_from_slice(escape);
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn expect(wire_type: WireType, expected: WireType) -> Result<(), Malformed> {
    if wire_type == expected { Ok(()) } else { Err(Malformed("a field has the wrong wire type")) }
}

/// Protobuf's wire format, read from a slice with prost's own decoding of its parts.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, Malformed> {
        decode_varint(&mut self.0).map_err(|_| Malformed("a varint is cut short or too long"))
    }

    fn key(&mut self) -> Result<(u32, WireType), Malformed> {
        decode_key(&mut self.0).map_err(|_| Malformed("a field key is invalid"))
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let Some((value, rest)) = self.0.split_first_chunk::<N>() else {
            return Err(Malformed("a fixed-size field is cut short"));
        };
        self.0 = rest;
        Ok(*value)
    }

    fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let len = self.varint()?;
        match usize::try_from(len) {
            Ok(len) if len <= self.0.len() => {
                let (value, rest) = self.0.split_at(len);
                self.0 = rest;
                Ok(value)
            }
            _ => Err(Malformed("a length-delimited field is cut short")),
        }
    }

    fn varint_field(&mut self, wire_type: WireType) -> Result<u64, Malformed> {
        expect(wire_type, WireType::Varint)?;
        self.varint()
    }

    fn text_field(&mut self, wire_type: WireType) -> Result<&'a str, Malformed> {
        expect(wire_type, WireType::LengthDelimited)?;
        std::str::from_utf8(self.bytes()?).map_err(|_| Malformed("a string is not UTF-8"))
    }

    fn skip(&mut self, field: u32, wire_type: WireType) -> Result<(), Malformed> {
        skip_field(wire_type, field, &mut self.0, DecodeContext::default())
            .map_err(|_| Malformed("an unknown field does not decode"))
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use videostore_proto::catalogue::{Movie, StreamMoviesResponse};

    use super::*;
    use crate::rest::movie_json;

    /// One batch of films as JSON array elements as serde_json writes them for the REST
    /// facade's film, each preceded by `[` (the very first) or `,`.
    fn export_json_of(movies: Vec<Movie>, first: &mut bool) -> Vec<u8> {
        let mut out = Vec::new();
        for movie in movies {
            out.push(if std::mem::take(first) { b'[' } else { b',' });
            serde_json::to_writer(&mut out, &movie_json(movie, None)).expect("to memory");
        }
        out
    }

    #[test]
    fn every_field_of_movie_is_shown_or_left_out_on_purpose() {
        let descriptors =
            prost_types::FileDescriptorSet::decode(videostore_proto::FILE_DESCRIPTOR_SET).unwrap();
        let movie = descriptors
            .file
            .iter()
            .filter(|file| file.package() == "videostore.catalogue.v1")
            .flat_map(|file| &file.message_type)
            .find(|message| message.name() == "Movie")
            .unwrap();
        let mut in_descriptor: Vec<(u32, &str)> =
            movie.field.iter().map(|f| (f.number() as u32, f.name())).collect();
        in_descriptor.sort_unstable();
        let mut known: Vec<(u32, &str)> = SHOWN.iter().chain(&LEFT_OUT).copied().collect();
        known.sort_unstable();
        assert_eq!(in_descriptor, known, "list each field of Movie in SHOWN or LEFT_OUT");

        // The REST film has exactly the shown fields, under the same names.
        let json = serde_json::to_value(movie_json(Movie::default(), None)).unwrap();
        let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut shown: Vec<&str> = SHOWN.iter().map(|(_, name)| *name).collect();
        shown.sort_unstable();
        assert_eq!(keys, shown);
    }

    fn films() -> Vec<Movie> {
        let mut films = vec![
            Movie {
                id: 1,
                title: "Amélie".into(),
                release_year: 2001,
                genres: vec!["Comedy".into(), "Romance".into()],
                runtime_minutes: 122,
                director: "Jean-Pierre Jeunet".into(),
                rating: 4,
                synopsis: "A shy waitress.".into(),
                audience_rating: 8.3,
                external_key: "tt0211915".into(),
                update_time: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 5 }),
            },
            // Defaults everywhere: fields absent from the wire.
            Movie::default(),
            // Everything JSON must escape, other scripts, extremes.
            Movie {
                id: i64::MAX,
                title: "\"Quoted\" \\ back\\slash \u{1} \u{8}\u{c}\n\r\t \u{1f} \u{7f} 東京物語 🎬"
                    .into(),
                release_year: -5,
                genres: vec![String::new(), "Science Fiction".into()],
                runtime_minutes: i32::MIN,
                director: "</script>".into(),
                rating: 99,
                synopsis: "x".repeat(5000),
                audience_rating: 0.1,
                ..Default::default()
            },
            Movie { id: 7, audience_rating: f32::NAN, rating: -1, ..Default::default() },
            Movie { id: 8, audience_rating: f32::INFINITY, ..Default::default() },
            Movie { id: 9, audience_rating: 1e-7, ..Default::default() },
        ];
        films.extend((10..200).map(|id| Movie {
            id,
            title: format!("Film {id}"),
            audience_rating: id as f32 / 19.0,
            genres: vec!["Drama".into(); (id % 4) as usize],
            ..Default::default()
        }));
        films
    }

    /// What the REST facade wrote before: serde_json over the decoded films.
    fn through_serde(messages: &[StreamMoviesResponse]) -> Vec<u8> {
        let mut first = true;
        let mut out = Vec::new();
        for message in messages {
            out.extend_from_slice(&export_json_of(message.movies.clone(), &mut first));
        }
        out
    }

    #[test]
    fn writes_what_serde_json_writes_for_every_film() {
        let films = films();
        let messages: Vec<StreamMoviesResponse> =
            films.chunks(7).map(|batch| StreamMoviesResponse { movies: batch.to_vec() }).collect();
        let mut first = true;
        let mut out = Vec::new();
        let mut written = 0;
        for message in &messages {
            written += films_to_json(&message.encode_to_vec(), &mut first, &mut out).unwrap();
        }
        assert_eq!(written, films.len());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(through_serde(&messages)).unwrap()
        );
    }

    #[test]
    fn unknown_fields_are_skipped_and_a_repeated_scalar_keeps_its_last_value() {
        let film = Movie { id: 3, title: "Kept".into(), ..Default::default() }.encode_to_vec();
        let mut bytes = film.clone();
        // Field 15 as each wire type, then id given again.
        bytes.extend_from_slice(&[15 << 3, 150, 1]); // varint
        bytes.extend_from_slice(&[(15 << 3) | 1, 1, 2, 3, 4, 5, 6, 7, 8]); // fixed64
        bytes.extend_from_slice(&[(15 << 3) | 2, 2, b'h', b'i']); // length-delimited
        bytes.extend_from_slice(&[(15 << 3) | 5, 1, 2, 3, 4]); // fixed32
        bytes.extend_from_slice(&[1 << 3, 4]); // id = 4
        let mut message = vec![(1 << 3) | 2, bytes.len() as u8];
        message.extend_from_slice(&bytes);
        message.extend_from_slice(&[(2 << 3), 1]); // a field of the response itself
        let mut out = Vec::new();
        assert_eq!(films_to_json(&message, &mut true, &mut out), Ok(1));
        let expected = through_serde(&[StreamMoviesResponse {
            movies: vec![Movie { id: 4, title: "Kept".into(), ..Default::default() }],
        }]);
        assert_eq!(out, expected);
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let film = Movie { id: 3, title: "Cut".into(), ..Default::default() };
        let whole = StreamMoviesResponse { movies: vec![film] }.encode_to_vec();
        // Every truncation of a valid message, and some garbage.
        for end in 1..whole.len() {
            assert!(films_to_json(&whole[..end], &mut true, &mut Vec::new()).is_err(), "{end}");
        }
        let bad: &[&[u8]] = &[
            &[0x0a, 0x02, 0x12, 0x01],       // a title longer than the film
            &[0x0a, 0x03, 0x12, 0x01, 0xff], // a title that is not UTF-8
            &[0x0a, 0x02, 0x0a, 0x00],       // id as a string
            &[0x0a, 0x02, 0x4d, 0x00],       // audience rating cut short
            &[0x0b],                         // a group
            &[0x00],                         // field 0
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // varint too long
        ];
        for bytes in bad {
            assert!(films_to_json(bytes, &mut true, &mut Vec::new()).is_err(), "{bytes:?}");
        }
    }
}
