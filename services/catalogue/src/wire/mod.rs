//! Bulk reads served from the films' stored wire form.
//!
//! Every write keeps each film's protobuf encoding beside its row ([`wire_form`]); StreamMovies
//! and ExportMovies answers are those bytes copied into messages, instead of every film being
//! read column by column, rebuilt and encoded again. The generated server only takes the
//! generated message types, so [`CatalogueRoutes`] routes these two methods itself (`routes`)
//! and hands every other method to the generated server: StreamMovies through tonic's own gRPC
//! machinery with the same limits (`stream`); ExportMovies as a response built here, its one
//! message sent in the chunks the store reads it in (`export`). On the wire nothing changes:
//! both answers are `repeated Movie movies = 1`, byte for byte what the generated types encode.
//!
//! What keeps the stored bytes true:
//! - the version of the wire form is a fingerprint of the `Movie` message's descriptor, so a
//!   change to `Movie` in `proto/` re-encodes every film when the store next opens;
//! - a change to [`encode`] that writes other bytes for the same film fails the golden-bytes
//!   test below until [`ENCODER_REVISION`] is bumped (which also re-encodes every film).

mod export;
mod routes;
mod stream;

use std::{sync::OnceLock, time::SystemTime};

use prost::{
    DecodeError, Message,
    bytes::{Buf, BufMut, Bytes},
    encoding::{DecodeContext, WireType},
};

pub(crate) use self::routes::CatalogueRoutes;
use crate::{
    domain::{Movie, MovieFields, MovieId},
    grpc::movie_to_proto,
    store::WireForm,
};

/// Bumped when [`encode`] writes other bytes for the same film while `Movie` stays the same.
const ENCODER_REVISION: u64 = 1;

/// How films are kept in wire form: each as a `Movie` in field 1 of its message (tag, length,
/// encoding), under a version that changes whenever those bytes would.
pub(crate) fn wire_form() -> WireForm {
    static VERSION: OnceLock<i64> = OnceLock::new();
    let version = *VERSION.get_or_init(|| version(ENCODER_REVISION));
    WireForm { version, encode }
}

/// A fingerprint (FNV-1a) of the `Movie` message's descriptor and the encoder's revision.
fn version(revision: u64) -> i64 {
    let descriptors = prost_types::FileDescriptorSet::decode(videostore_proto::FILE_DESCRIPTOR_SET)
        .expect("the compiled descriptors decode");
    let movie = descriptors
        .file
        .iter()
        .filter(|file| file.package() == "videostore.catalogue.v1")
        .flat_map(|file| &file.message_type)
        .find(|message| message.name() == "Movie")
        .expect("videostore.catalogue.v1 defines Movie");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in movie.encode_to_vec().into_iter().chain(revision.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // Positive, so it reads as what it is in the database.
    (hash >> 1) as i64
}

fn encode(id: MovieId, fields: &MovieFields, update_time: SystemTime, out: &mut Vec<u8>) {
    let movie = movie_to_proto(Movie { id, fields: fields.clone(), update_time });
    prost::encoding::message::encode(1, &movie, out);
}

/// Films in wire form: the body of a StreamMoviesResponse or an ExportMoviesResponse. It is
/// only ever encoded; decoding into it skips every field.
#[derive(Debug, Clone, Default)]
pub(crate) struct EncodedMovies {
    bytes: Bytes,
}

impl EncodedMovies {
    /// Films in wire form, one after another.
    pub(crate) fn new(bytes: Bytes) -> Self {
        Self { bytes }
    }
}

impl Message for EncodedMovies {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.bytes);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use videostore_proto::catalogue as pb;

    use super::*;
    use crate::domain::Rating;

    fn amelie() -> MovieFields {
        MovieFields {
            title: "Amélie".into(),
            release_year: 2001,
            genres: vec!["Comedy".into(), "Romance".into()],
            runtime_minutes: 122,
            director: "Jean-Pierre Jeunet".into(),
            rating: Rating(4),
            synopsis: "A shy waitress decides to change the lives of those around her.".into(),
            audience_rating: 8.3,
            external_key: Some("tt0211915".into()),
        }
    }

    fn when() -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123)
    }

    #[test]
    fn stored_films_encode_exactly_as_the_generated_types_do() {
        let mut stored = Vec::new();
        for id in [7, 8] {
            (wire_form().encode)(MovieId::new(id), &amelie(), when(), &mut stored);
        }
        let expected = pb::StreamMoviesResponse {
            movies: [7, 8]
                .map(|id| {
                    movie_to_proto(Movie {
                        id: MovieId::new(id),
                        fields: amelie(),
                        update_time: when(),
                    })
                })
                .into(),
        };
        let answer = EncodedMovies::new(stored.into());
        assert_eq!(answer.encode_to_vec(), expected.encode_to_vec());
    }

    /// The bytes stored for one film, as they were when [`ENCODER_REVISION`] was last set. If
    /// this fails, the stored wire form of every film is out of date: bump the revision (the
    /// store re-encodes every film when it opens with the new version), then update the bytes.
    #[test]
    fn the_stored_bytes_change_only_with_the_version() {
        let mut stored = Vec::new();
        (wire_form().encode)(MovieId::new(7), &amelie(), when(), &mut stored);
        let hex: String = stored.iter().map(|byte| format!("{byte:02x}")).collect();
        let (revision, golden) = GOLDEN;
        assert_eq!(revision, ENCODER_REVISION, "GOLDEN was recorded for another revision");
        assert_eq!(hex, golden, "the encoding changed: bump ENCODER_REVISION, then GOLDEN");
    }

    /// The encoder's revision and the bytes it stored for film 7, Amélie.
    const GOLDEN: (u64, &str) = (
        1,
        "0a950108071207416dc3a96c696518d10f2206436f6d6564792207526f6d616e6365287a32124a65616e2d50\
         6965727265204a65756e65743804423f4120736879207761697472657373206465636964657320746f206368\
         616e676520746865206c69766573206f662074686f73652061726f756e64206865722e4dcdcc044152097474\
         303231313931355a0b0880e2cfaa0610c0a9d33a",
    );

    #[test]
    fn the_version_follows_the_movie_descriptor_and_the_revision() {
        assert_eq!(wire_form().version, version(ENCODER_REVISION));
        assert_ne!(version(ENCODER_REVISION), version(ENCODER_REVISION + 1));
        assert!(wire_form().version > 0);
    }
}
