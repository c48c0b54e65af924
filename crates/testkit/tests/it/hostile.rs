//! The hostile-request corpus. Every RPC of every service, read from the contracts themselves
//! (so a new RPC or field is covered without editing this file), is called over real gRPC with
//! requests made to hurt: empty; each field, at any depth, oversized, extreme, oddly written
//! (bidirectional overrides, NUL, piles of combining marks, astral characters, blank), unknown
//! enum values, lists of 100,000; bytes that are not a message at all; and every kind of bad
//! credentials (none, garbage, expired, `alg: none`, HS256 made with the public key, another
//! key under the store's key id, a refresh token, a customer's token on staff calls).
//!
//! Every answer must be a specific status code (never UNKNOWN, INTERNAL, UNIMPLEMENTED or
//! UNAVAILABLE) with a message, within seconds; calls that need a signed-in caller refuse every
//! bad token; staff calls refuse a customer whatever the request holds; afterwards every
//! service is healthy, and the shop — every film, all stock, a customer's rentals — is exactly
//! as it was, since not one hostile write may succeed, even in part.

use std::{collections::BTreeSet, str::FromStr, time::Duration};

use bytes::{Buf, BufMut, Bytes};
use futures::stream;
use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, Kind, MessageDescriptor, MethodDescriptor, ServiceDescriptor,
    Value,
};
use testkit::{TestStore, authed};
use tonic::{
    Code, Request, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    metadata::MetadataValue,
    transport::Channel,
};
use videostore_kit::auth::{Caller, KeyPairPem, Role, TokenSigner};
use videostore_proto::{catalogue as cat, stock};

/// Answers a hostile request may get: each says what was wrong.
const SPECIFIC: &[Code] = &[
    Code::Ok,
    Code::InvalidArgument,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
    Code::OutOfRange,
    Code::Unauthenticated,
];

/// Longest a hostile call may take to be answered (the first answer of a stream).
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Calls that change the shop and answer OK only when they did: with a hostile request, none
/// may. (ImportMovies and RentalDesk answer each row or command inside an OK call; that they
/// wrote nothing is checked by comparing the shop before and after.)
fn writes(method: &str) -> bool {
    const WRITES: &[&str] = &[
        "CreateMovie",
        "UpdateMovie",
        "DeleteMovie",
        "SetInventory",
        "Rent",
        "Return",
        "Purchase",
        "Register",
        "ConfirmEmail",
        "SignOut",
    ];
    WRITES.contains(&method)
}

/// Request and answer bodies as they are on the wire: the corpus sends bytes, not types.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Values of a scalar field meant to hurt, by name.
fn hostile_values(kind: &Kind) -> Vec<(&'static str, Value)> {
    let text = |name, text: String| (name, Value::String(text));
    match kind {
        Kind::String => vec![
            text("1 MiB", "a".repeat(1 << 20)),
            text("bidi override", "\u{202E}fdp.exe".into()),
            text("NUL", "a\0b".into()),
            text("combining pile", format!("a{}", "\u{0301}".repeat(5_000))),
            text("astral", "𝕳".repeat(5_000)),
            text("blank", " \t\u{3000}\u{200B}\u{FEFF} ".into()),
            text("U+FDFA", "\u{FDFA}".repeat(300)),
        ],
        Kind::Bytes => vec![("1 MiB", Value::Bytes(Bytes::from(vec![0xff; 1 << 20])))],
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            vec![
                ("min", Value::I32(i32::MIN)),
                ("max", Value::I32(i32::MAX)),
                ("-1", Value::I32(-1)),
            ]
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            vec![
                ("min", Value::I64(i64::MIN)),
                ("max", Value::I64(i64::MAX)),
                ("-1", Value::I64(-1)),
            ]
        }
        Kind::Uint32 | Kind::Fixed32 => vec![("max", Value::U32(u32::MAX))],
        Kind::Uint64 | Kind::Fixed64 => vec![("max", Value::U64(u64::MAX))],
        Kind::Float => vec![
            ("NaN", Value::F32(f32::NAN)),
            ("infinity", Value::F32(f32::INFINITY)),
            ("-max", Value::F32(f32::MIN)),
        ],
        Kind::Double => vec![
            ("NaN", Value::F64(f64::NAN)),
            ("infinity", Value::F64(f64::INFINITY)),
            ("-max", Value::F64(f64::MIN)),
        ],
        Kind::Bool => vec![("true", Value::Bool(true))],
        Kind::Enum(_) => {
            vec![("unknown enum", Value::EnumNumber(i32::MAX)), ("-1", Value::EnumNumber(-1))]
        }
        Kind::Message(_) => Vec::new(),
    }
}

/// A small valid value of a scalar kind, for long lists.
fn small_value(kind: &Kind) -> Option<Value> {
    Some(match kind {
        Kind::String => Value::String("x".into()),
        Kind::Bytes => Value::Bytes(Bytes::from_static(b"x")),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(1),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(1),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(1),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(1),
        Kind::Float => Value::F32(1.0),
        Kind::Double => Value::F64(1.0),
        Kind::Bool => Value::Bool(true),
        Kind::Enum(_) => Value::EnumNumber(1),
        Kind::Message(_) => return None,
    })
}

/// Messages of type `message`, each with one field (at any depth up to 3) set to hurt.
fn variants(message: &MessageDescriptor, depth: usize) -> Vec<(String, DynamicMessage)> {
    let mut out = Vec::new();
    for field in message.fields().filter(|f| !f.is_map()) {
        let mut with = |name: String, value: Value| {
            let mut built = DynamicMessage::new(message.clone());
            let value = if field.is_list() { Value::List(vec![value]) } else { value };
            built.set_field(&field, value);
            out.push((format!("{}: {name}", field.name()), built));
        };
        match field.kind() {
            Kind::Message(inner) if depth < 3 => {
                for (name, nested) in variants(&inner, depth + 1) {
                    with(format!("{{{name}}}"), Value::Message(nested));
                }
            }
            Kind::Message(_) => {}
            kind => {
                for (name, value) in hostile_values(&kind) {
                    with(name.into(), value);
                }
            }
        }
        if field.is_list() {
            let one = match field.kind() {
                Kind::Message(inner) => Value::Message(DynamicMessage::new(inner)),
                kind => small_value(&kind).expect("a scalar"),
            };
            let mut built = DynamicMessage::new(message.clone());
            built.set_field(&field, Value::List(vec![one; 100_000]));
            out.push((format!("{}: 100,000 of them", field.name()), built));
        }
    }
    out
}

/// Bodies that are not a message of any type: each must be INVALID_ARGUMENT.
fn garbage() -> Vec<(&'static str, Bytes)> {
    vec![
        ("wire type 7", Bytes::from_static(&[0x0f, 0x01])),
        (
            "varint of 11 bytes",
            Bytes::from_static(&[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ]),
        ),
        ("truncated varint", Bytes::from_static(&[0x08, 0xff])),
        ("length past the end", Bytes::from_static(&[0x0a, 0xff, 0xff, 0xff, 0x7f, 0x01])),
        ("field number 0", Bytes::from_static(&[0x00, 0x01])),
    ]
}

/// `request` with `token` as its bearer credentials.
fn with_token<T>(mut request: Request<T>, token: Option<&str>) -> Request<T> {
    if let Some(token) = token {
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .unwrap_or_else(|_| MetadataValue::from_static("Bearer not-ascii"));
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// How one call ended: its code and message, or no answer in time.
#[derive(Debug)]
enum Answer {
    Status(Code, String),
    Hung,
}

/// Calls `method` with `body` (as the only message of a request stream) and waits for the
/// answer, or a stream's first message or end.
async fn call(
    channel: &Channel,
    method: &MethodDescriptor,
    body: Bytes,
    token: Option<&str>,
) -> Answer {
    let path = tonic::codegen::http::uri::PathAndQuery::from_str(&format!(
        "/{}/{}",
        method.parent_service().full_name(),
        method.name()
    ))
    .expect("a method path");
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    let answer = async {
        grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let first_of = |mut messages: tonic::Streaming<Bytes>| async move {
            // A live stream that has opened and has nothing to say yet has answered.
            match tokio::time::timeout(Duration::from_secs(1), messages.message()).await {
                Ok(Err(status)) => Err(status),
                _ => Ok(()),
            }
        };
        match (method.is_client_streaming(), method.is_server_streaming()) {
            (false, false) => {
                grpc.unary(with_token(Request::new(body), token), path, Raw).await.map(drop)
            }
            (false, true) => {
                let response =
                    grpc.server_streaming(with_token(Request::new(body), token), path, Raw).await?;
                first_of(response.into_inner()).await
            }
            (true, false) => {
                let messages = stream::iter([body]);
                grpc.client_streaming(with_token(Request::new(messages), token), path, Raw)
                    .await
                    .map(drop)
            }
            (true, true) => {
                let messages = stream::iter([body]);
                let response =
                    grpc.streaming(with_token(Request::new(messages), token), path, Raw).await?;
                first_of(response.into_inner()).await
            }
        }
    };
    match tokio::time::timeout(ANSWER_WITHIN, answer).await {
        Ok(Ok(())) => Answer::Status(Code::Ok, String::new()),
        Ok(Err(status)) => Answer::Status(status.code(), status.message().to_owned()),
        Err(_) => Answer::Hung,
    }
}

/// Every film, all stock and one customer's rentals: what a hostile write must not change.
async fn shop(
    store: &TestStore,
    customer: &str,
) -> (Vec<cat::Movie>, Vec<stock::Availability>, Vec<stock::Rental>) {
    let mut catalogue = store.catalogue_client().await;
    let mut films = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = catalogue
            .list_movies(cat::ListMoviesRequest {
                page_size: 100,
                page_token: page_token.clone(),
                order_by: cat::MovieOrder::Id as i32,
                ..Default::default()
            })
            .await
            .expect("a page of films")
            .into_inner();
        films.extend(page.movies);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let mut stock_client = store.stock_client().await;
    let availability = stock_client
        .batch_get_availability(stock::BatchGetAvailabilityRequest {
            movie_ids: films.iter().map(|f| f.id).collect(),
        })
        .await
        .expect("availability")
        .into_inner()
        .availabilities;
    let mut listed = stock_client
        .list_my_rentals(authed(stock::ListMyRentalsRequest { include_returned: true }, customer))
        .await
        .expect("rentals")
        .into_inner();
    let mut rentals = Vec::new();
    while let Some(rental) = listed.message().await.expect("a rental") {
        rentals.push(rental);
    }
    (films, availability, rentals)
}

/// Fails with the first of `before` that differs in `after`.
fn assert_same<T: PartialEq + std::fmt::Debug>(what: &str, before: &[T], after: &[T]) {
    assert_eq!(before.len(), after.len(), "{what}: as many as before");
    if let Some((was, is)) = before.iter().zip(after).find(|(was, is)| was != is) {
        panic!("{what} changed: {was:?} is now {is:?}");
    }
}

/// The bad credentials, by name, made with the store's own key id where that matters.
fn bad_tokens(keys: &KeyPairPem, refresh_token: &str) -> Vec<(&'static str, String)> {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let signer = TokenSigner::from_pem(&keys.private).expect("the store's key");
    let staff = Caller {
        account_id: videostore_kit::ids::AccountId::new(1),
        email: "staff@videostore.local".into(),
        role: Role::Staff,
    };
    let day = Duration::from_secs(86_400);
    let now = std::time::SystemTime::now();
    let expired =
        signer.issue(&staff, now - 2 * day, Duration::from_secs(60)).expect("a token").token;
    let claims = serde_json::json!({
        "sub": "1", "email": "staff@videostore.local", "role": "staff", "iss": "videostore",
        "aud": "videostore", "iat": now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
        "exp": (now + day).duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
    });
    let part = |json: serde_json::Value| URL_SAFE_NO_PAD.encode(json.to_string());
    let unsigned = format!(
        "{}.{}.",
        part(serde_json::json!({"alg": "none", "typ": "JWT", "kid": signer.kid()})),
        part(claims.clone())
    );
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(signer.kid().to_owned());
    let hs256 = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(keys.public.as_bytes()),
    )
    .expect("an HS256 token");
    // Signed with a key of its own, under the store's key id.
    let other = KeyPairPem::generate().expect("another key");
    let other_key = {
        use ed25519_dalek::{Signer, SigningKey, pkcs8::DecodePrivateKey};
        let key = SigningKey::from_pkcs8_pem(&other.private).expect("its private key");
        let signed = format!(
            "{}.{}",
            part(serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": signer.kid()})),
            part(claims.clone())
        );
        let signature = URL_SAFE_NO_PAD.encode(key.sign(signed.as_bytes()).to_bytes());
        format!("{signed}.{signature}")
    };
    vec![
        ("garbage", "not a token at all".into()),
        ("three dots", "a.b.c".into()),
        ("expired", expired),
        ("alg none", unsigned),
        ("HS256 with the public key", hs256),
        ("another key under the store's kid", other_key),
        ("a refresh token", refresh_token.into()),
    ]
}

#[tokio::test]
async fn every_rpc_answers_every_hostile_request_specifically_and_changes_nothing() {
    let store = TestStore::start().await;
    let staff = store.staff_token().await;
    let (_, customer) = store.customer("Mallory").await;
    let pool = DescriptorPool::decode(videostore_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let catalogue = TestStore::channel(store.catalogue.addr).await;
    let stock_channel = TestStore::channel(store.stock().addr).await;
    let aggregator = TestStore::channel(store.aggregator.addr).await;
    let channel_of = |service: &ServiceDescriptor| match service.name() {
        "CatalogueService" => catalogue.clone(),
        "StockService" | "AccountService" => stock_channel.clone(),
        "StorefrontService" => aggregator.clone(),
        other => panic!("the corpus does not know where {other} is served: add it here"),
    };
    let refresh_token = store
        .account_client()
        .await
        .sign_in(stock::SignInRequest {
            email: testkit::STAFF_EMAIL.into(),
            password: testkit::STAFF_PASSWORD.into(),
        })
        .await
        .expect("sign in")
        .into_inner()
        .refresh_token;
    let tokens = bad_tokens(&store.keys, &refresh_token);
    let before = shop(&store, &customer).await;

    let mut failures = Vec::new();
    let mut calls = 0;
    let mut methods = BTreeSet::new();
    let mut judge = |what: String, answer: Answer, expected: &[Code]| {
        calls += 1;
        match answer {
            Answer::Hung => failures.push(format!("{what}: no answer in {ANSWER_WITHIN:?}")),
            Answer::Status(code, message) => {
                if !expected.contains(&code) {
                    failures.push(format!(
                        "{what}: {code:?} {message:?}, expected one of {expected:?}"
                    ));
                } else if code != Code::Ok && message.trim().is_empty() {
                    failures.push(format!("{what}: {code:?} without a message"));
                } else if writes(what.split(' ').next().unwrap_or_default()) && code == Code::Ok {
                    failures.push(format!("{what}: a hostile write succeeded"));
                }
            }
        }
    };

    for service in pool.services() {
        let channel = channel_of(&service);
        for method in service.methods() {
            let name = method.name().to_owned();
            methods.insert(format!("{}.{name}", service.name()));
            let empty = DynamicMessage::new(method.input()).encode_to_vec();

            // Credentials: find out what the call asks for (a customer is let through what
            // only needs someone signed in), then refuse every bad token.
            let as_customer = call(&channel, &method, empty.clone().into(), Some(&customer)).await;
            let staff_only = matches!(as_customer, Answer::Status(Code::PermissionDenied, _));
            let customer_refused = matches!(as_customer, Answer::Status(Code::Unauthenticated, _));
            judge(format!("{name} as a customer"), as_customer, SPECIFIC);
            let no_token = call(&channel, &method, empty.clone().into(), None).await;
            let needs_sign_in =
                !customer_refused && matches!(no_token, Answer::Status(Code::Unauthenticated, _));
            judge(format!("{name} with no token"), no_token, SPECIFIC);
            for (token_name, token) in &tokens {
                let answer = call(&channel, &method, empty.clone().into(), Some(token)).await;
                let expected: &[Code] =
                    if needs_sign_in { &[Code::Unauthenticated] } else { SPECIFIC };
                judge(format!("{name} with {token_name}"), answer, expected);
            }

            // Bodies: garbage, then every hostile variant, as staff (which reaches every
            // check) and, on staff calls, as a customer (refused before the body is judged).
            for (garbage_name, body) in garbage() {
                let answer = call(&channel, &method, body, Some(&staff)).await;
                judge(format!("{name} garbage ({garbage_name})"), answer, &[Code::InvalidArgument]);
            }
            for (variant, message) in variants(&method.input(), 0) {
                let body = Bytes::from(message.encode_to_vec());
                let answer = call(&channel, &method, body.clone(), Some(&staff)).await;
                judge(format!("{name} {{{variant}}}"), answer, SPECIFIC);
                if staff_only {
                    let answer = call(&channel, &method, body, Some(&customer)).await;
                    // A body over the call's size limit is refused before anyone reads it.
                    judge(
                        format!("{name} {{{variant}}} as a customer"),
                        answer,
                        &[Code::PermissionDenied, Code::OutOfRange],
                    );
                }
            }
        }
    }

    eprintln!("hostile corpus: {calls} calls to {} RPCs", methods.len());
    assert!(methods.len() >= 29, "every RPC is in the corpus: {methods:?}");
    assert!(
        failures.is_empty(),
        "{} of {calls} answers were wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Every service is still serving, and the shop is as it was.
    for channel in [&catalogue, &stock_channel, &aggregator] {
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let status = health
            .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
            .await
            .expect("healthy")
            .into_inner()
            .status;
        assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    }
    let after = shop(&store, &customer).await;
    assert_same("films", &before.0, &after.0);
    assert_same("stock", &before.1, &after.1);
    assert_same("the customer's rentals", &before.2, &after.2);
    assert!(store.stock_store().invariant_violations().await.unwrap().is_empty());

    // Request ids replayed with other parameters are refused, and change nothing.
    let mut stock_client = store.stock_client().await;
    let rent = |movie_id, request_id: &str| {
        authed(stock::RentRequest { movie_id, days: 2, request_id: request_id.into() }, &customer)
    };
    let first = stock_client.rent(rent(1, "hostile-replay")).await.expect("a rental").into_inner();
    let replay = stock_client.rent(rent(1, "hostile-replay")).await.expect("the same rental");
    assert_eq!(replay.into_inner().id, first.id, "a retry answers the first rental");
    let other = stock_client.rent(rent(2, "hostile-replay")).await.expect_err("other parameters");
    assert_eq!(other.code(), Code::InvalidArgument, "{other:?}");
    stock_client
        .r#return(authed(stock::ReturnRequest { rental_id: first.id }, &customer))
        .await
        .expect("the return");
    let (_, someone_else) = store.customer("Trudy").await;
    let not_theirs = stock_client
        .r#return(authed(stock::ReturnRequest { rental_id: first.id }, &someone_else))
        .await
        .expect_err("another customer's rental");
    assert!(matches!(not_theirs.code(), Code::PermissionDenied | Code::NotFound), "{not_theirs:?}");
    store.stop().await;
}
