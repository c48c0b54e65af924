//! A minimal gRPC-Web client, speaking exactly what a browser sends: a POST with
//! `content-type: application/grpc-web+proto`, length-prefixed frames, and trailers in a final
//! frame flagged 0x80. Over HTTP/1.1 to the services; over HTTP/2 through the front door.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// What came back from a gRPC-Web call.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP version the call went over.
    pub version: reqwest::Version,
    /// The HTTP status.
    pub http_status: u16,
    /// Response headers (lower-case names).
    pub headers: HashMap<String, String>,
    /// The data frames, each one message.
    pub messages: Vec<Bytes>,
    /// Trailers, from the trailer frame or (trailers-only responses) the headers.
    pub trailers: HashMap<String, String>,
}

impl Reply {
    /// `grpc-status`, from trailers or headers.
    pub fn grpc_status(&self) -> Option<i32> {
        self.trailers
            .get("grpc-status")
            .or_else(|| self.headers.get("grpc-status"))
            .and_then(|s| s.trim().parse().ok())
    }

    /// `grpc-message`, percent-decoded.
    pub fn grpc_message(&self) -> String {
        let raw = self
            .trailers
            .get("grpc-message")
            .or_else(|| self.headers.get("grpc-message"))
            .cloned()
            .unwrap_or_default();
        percent_decode(&raw)
    }

    /// The messages decoded as `M`.
    pub fn decode<M: prost::Message + Default>(&self) -> Vec<M> {
        self.messages.iter().map(|bytes| M::decode(bytes.clone()).expect("valid message")).collect()
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One gRPC-Web data frame: flag 0, a big-endian length, the encoded message.
pub fn frame(request: &impl prost::Message) -> Bytes {
    let body = request.encode_to_vec();
    let mut framed = BytesMut::with_capacity(body.len() + 5);
    framed.put_u8(0);
    framed.put_u32(body.len() as u32);
    framed.put_slice(&body);
    framed.freeze()
}

/// A gRPC-Web POST of one request message, as a browser sends it.
fn post(
    client: &reqwest::Client,
    base_url: &str,
    path: &str,
    request: &impl prost::Message,
) -> reqwest::RequestBuilder {
    client
        .post(format!("{base_url}{path}"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(frame(request))
}

/// Calls `path` (e.g. `/videostore.catalogue.v1.CatalogueService/GetMovie`) on `base_url` with one
/// request message, over HTTP/1.1, optionally with a bearer token and an `Origin`.
pub async fn call(
    base_url: &str,
    path: &str,
    request: &impl prost::Message,
    token: Option<&str>,
    origin: Option<&str>,
) -> anyhow::Result<Reply> {
    let client = reqwest::Client::builder().http1_only().build()?;
    let reply = call_with(&client, base_url, path, request, token, origin).await?;
    anyhow::ensure!(reply.version == reqwest::Version::HTTP_11, "expected HTTP/1.1");
    Ok(reply)
}

/// [`call`] through `client`, e.g. one trusting a test CA (the reply says which HTTP version).
pub async fn call_with(
    client: &reqwest::Client,
    base_url: &str,
    path: &str,
    request: &impl prost::Message,
    token: Option<&str>,
    origin: Option<&str>,
) -> anyhow::Result<Reply> {
    let mut builder = post(client, base_url, path, request).header("x-user-agent", "grpc-web-test");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    if let Some(origin) = origin {
        builder = builder.header("origin", origin);
    }
    let response = builder.send().await?;
    let version = response.version();
    let http_status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap_or("").to_owned()))
        .collect();
    let mut body = response.bytes().await?;
    let mut messages = Vec::new();
    let mut trailers = HashMap::new();
    while body.remaining() >= 5 {
        let flag = body.get_u8();
        let length = body.get_u32() as usize;
        anyhow::ensure!(body.remaining() >= length, "truncated gRPC-Web frame");
        let frame = body.split_to(length);
        if flag & 0x80 != 0 {
            for line in String::from_utf8_lossy(&frame).split("\r\n") {
                if let Some((name, value)) = line.split_once(':') {
                    trailers.insert(name.trim().to_lowercase(), value.trim().to_owned());
                }
            }
        } else {
            messages.push(frame);
        }
    }
    Ok(Reply { version, http_status, headers, messages, trailers })
}

/// A server-streaming gRPC-Web response read frame by frame as it arrives, as a browser's
/// `fetch` body reader sees it.
pub struct FrameStream {
    /// The HTTP version the stream goes over.
    pub version: reqwest::Version,
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: BytesMut,
    /// Trailers, once the trailer frame has arrived.
    pub trailers: Option<HashMap<String, String>>,
}

impl FrameStream {
    /// The next data frame; `None` once the trailer frame (or the end of the body) arrived.
    pub async fn next_message(&mut self) -> anyhow::Result<Option<Bytes>> {
        use futures::StreamExt;
        loop {
            if self.buffer.len() >= 5 {
                let length =
                    u32::from_be_bytes(self.buffer[1..5].try_into().expect("4 bytes")) as usize;
                if self.buffer.len() >= 5 + length {
                    let flag = self.buffer[0];
                    self.buffer.advance(5);
                    let frame = self.buffer.split_to(length).freeze();
                    if flag & 0x80 != 0 {
                        let mut trailers = HashMap::new();
                        for line in String::from_utf8_lossy(&frame).split("\r\n") {
                            if let Some((name, value)) = line.split_once(':') {
                                trailers
                                    .insert(name.trim().to_lowercase(), value.trim().to_owned());
                            }
                        }
                        self.trailers = Some(trailers);
                        return Ok(None);
                    }
                    return Ok(Some(frame));
                }
            }
            match self.body.next().await {
                Some(chunk) => self.buffer.extend_from_slice(&chunk?),
                None => return Ok(None),
            }
        }
    }
}

/// Opens a server-streaming call over HTTP/1.1 and returns it unread.
pub async fn open_stream(
    base_url: &str,
    path: &str,
    request: &impl prost::Message,
) -> anyhow::Result<FrameStream> {
    let client = reqwest::Client::builder().http1_only().build()?;
    let stream = open_stream_with(&client, base_url, path, request).await?;
    anyhow::ensure!(stream.version == reqwest::Version::HTTP_11, "expected HTTP/1.1");
    Ok(stream)
}

/// [`open_stream`] through `client` (the stream says which HTTP version it went over).
pub async fn open_stream_with(
    client: &reqwest::Client,
    base_url: &str,
    path: &str,
    request: &impl prost::Message,
) -> anyhow::Result<FrameStream> {
    let response = post(client, base_url, path, request).send().await?;
    anyhow::ensure!(response.status().is_success(), "HTTP {}", response.status());
    Ok(FrameStream {
        version: response.version(),
        body: Box::pin(response.bytes_stream()),
        buffer: BytesMut::new(),
        trailers: None,
    })
}
