//! The protobuf codec every generated client and server uses: tonic-prost's, except that a
//! message is decoded from one contiguous slice.
//!
//! tonic hands a decoder the whole message in one buffer, but behind its `DecodeBuf` wrapper;
//! prost decoding through that wrapper pays a bounds check and a `BytesMut` bookkeeping update on
//! every field it reads. Decoding the same bytes as a `&[u8]` costs a client much less CPU per
//! film (the bench report has the A/B figures), and decoding films is what every client of this
//! crate — the CLI, the aggregator, the browser — spends its time on in a bulk read. Encoding is
//! tonic-prost's own. [`RawCodec`] hands a client the messages' bytes.
//!
//! What this relies on in tonic: the `Codec`/`Decoder` traits, `DecodeBuf`, `BufferSettings` and
//! tonic-prost's `ProstEncoder` (a tonic upgrade that changes them fails to compile), and that a
//! decoder is handed each message as one contiguous slice (a test below fails if a message ever
//! takes the slower copying path).

use std::marker::PhantomData;

use prost::{
    Message,
    bytes::{Buf, Bytes},
};
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};
use tonic_prost::ProstEncoder;

/// How the status of a message that does not decode begins. Its code is INTERNAL, as tonic
/// makes it: right for a client (the server sent bad bytes); a server answers it
/// INVALID_ARGUMENT instead (`videostore_kit::serve`), since there the caller sent them.
pub const UNDECODABLE: &str = "the message does not decode: ";

/// `application/grpc+proto` via prost, decoding from a slice.
#[derive(Debug, Clone)]
pub struct ProstCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ProstCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for ProstCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = SliceDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        SliceDecoder::default()
    }
}

/// Decodes a `U` from the message's bytes as one slice.
#[derive(Debug, Clone)]
pub struct SliceDecoder<U>(PhantomData<U>);

impl<U> Default for SliceDecoder<U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<U: Message + Default> Decoder for SliceDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let len = buf.remaining();
        let decoded = if buf.chunk().len() == len {
            let decoded = U::decode(buf.chunk());
            buf.advance(len);
            decoded
        } else {
            // Not reached with tonic's buffers (one contiguous `BytesMut`): correct, but slower.
            #[cfg(test)]
            tests::COPIED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            U::decode(buf.copy_to_bytes(len))
        };
        // As tonic-prost: a message that does not parse is INTERNAL (gRPC's status code guide),
        // told apart by its message (see `UNDECODABLE`).
        decoded.map(Some).map_err(|error| Status::internal(format!("{UNDECODABLE}{error}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// Sends a `T`, receives each answer's bytes undecoded: for a proxy that rewrites messages
/// without building them (the aggregator's JSON export).
#[derive(Debug, Clone)]
pub struct RawCodec<T>(PhantomData<T>);

impl<T> Default for RawCodec<T> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T: Message + Send + 'static> Codec for RawCodec<T> {
    type Encode = T;
    type Decode = Bytes;
    type Encoder = ProstEncoder<T>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

/// A message's bytes, split off tonic's buffer without a copy.
#[derive(Debug, Clone)]
pub struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Messages a [`SliceDecoder`] had to copy because they were not one slice.
    pub(super) static COPIED: AtomicUsize = AtomicUsize::new(0);
    use crate::catalogue::{Movie, StreamMoviesResponse};
    use http_body::Frame;
    use http_body_util::StreamBody;
    use prost::bytes::{BufMut, Bytes, BytesMut};
    use tonic::codec::Streaming;

    fn film(id: i64) -> Movie {
        Movie {
            id,
            title: format!("Film {id} — été"),
            genres: vec!["Drama".into(), "Comedy".into()],
            synopsis: "x".repeat(id as usize % 300),
            ..Default::default()
        }
    }

    /// Messages framed as gRPC puts them on the wire, arriving in uneven pieces, decode to the
    /// messages sent; a message that is not valid protobuf is an error, not a panic.
    #[tokio::test]
    async fn decodes_framed_messages_split_anywhere() {
        let sent: Vec<StreamMoviesResponse> =
            (0..20).map(|n| StreamMoviesResponse { movies: (0..n).map(film).collect() }).collect();
        let mut wire = BytesMut::new();
        for message in &sent {
            wire.put_u8(0);
            wire.put_u32(message.encoded_len() as u32);
            message.encode(&mut wire).unwrap();
        }
        let pieces: Vec<Result<_, Status>> =
            wire.chunks(777).map(|piece| Ok(Frame::data(Bytes::copy_from_slice(piece)))).collect();
        let body = StreamBody::new(futures::stream::iter(pieces));
        let mut stream = Streaming::new_request(
            SliceDecoder::<StreamMoviesResponse>(PhantomData),
            body,
            None,
            None,
        );
        let mut received = Vec::new();
        while let Some(message) = stream.message().await.unwrap() {
            received.push(message);
        }
        assert_eq!(received, sent);
        assert_eq!(
            COPIED.load(Ordering::Relaxed),
            0,
            "tonic handed the decoder a message in pieces: the slice decoder no longer pays"
        );

        // The raw decoder hands over each message's bytes, whole.
        let pieces: Vec<Result<_, Status>> =
            wire.chunks(333).map(|piece| Ok(Frame::data(Bytes::copy_from_slice(piece)))).collect();
        let body = StreamBody::new(futures::stream::iter(pieces));
        let mut stream = Streaming::new_request(RawDecoder, body, None, None);
        let mut raw = Vec::new();
        while let Some(message) = stream.message().await.unwrap() {
            raw.push(message);
        }
        let encoded: Vec<Bytes> = sent.iter().map(|m| m.encode_to_vec().into()).collect();
        assert_eq!(raw, encoded);

        let mut garbage = BytesMut::new();
        garbage.put_u8(0);
        garbage.put_u32(3);
        garbage.put_slice(&[0x0a, 0x05, 0x01]); // a field of 5 bytes with 1 present
        let body = StreamBody::new(futures::stream::iter([Ok::<_, Status>(Frame::data(
            garbage.freeze(),
        ))]));
        let mut stream = Streaming::new_request(
            SliceDecoder::<StreamMoviesResponse>(PhantomData),
            body,
            None,
            None,
        );
        let error = stream.message().await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::Internal);
    }
}
